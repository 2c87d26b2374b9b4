//! Route modules, one per resource.

pub mod auth;
pub mod documents;
pub mod system;
pub mod tickets;
pub mod users;
