//! TODO(helper): eml adapter.
