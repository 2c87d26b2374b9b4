//! TODO(helper): observables adapter.
