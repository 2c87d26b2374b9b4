//! TODO(helper): leef adapter.
