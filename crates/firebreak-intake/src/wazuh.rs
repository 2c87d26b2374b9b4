//! TODO(helper): wazuh adapter.
