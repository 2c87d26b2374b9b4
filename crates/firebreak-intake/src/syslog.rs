//! TODO(helper): syslog adapter.
