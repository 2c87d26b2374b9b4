//! TODO(helper): alertmanager adapter.
