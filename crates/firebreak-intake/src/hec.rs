//! TODO(helper): hec adapter.
