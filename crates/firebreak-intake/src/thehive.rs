//! TODO(helper): thehive adapter.
