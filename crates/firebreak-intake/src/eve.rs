//! TODO(helper): eve adapter.
