//! Route modules, one per resource.

pub mod system;
pub mod tickets;
pub mod users;
