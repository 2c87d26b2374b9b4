//! TODO(helper): cef adapter.
