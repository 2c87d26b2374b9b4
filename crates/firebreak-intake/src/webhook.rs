//! TODO(helper): webhook adapter.
