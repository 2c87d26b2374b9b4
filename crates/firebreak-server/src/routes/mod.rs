//! Route modules, one per resource.

pub mod auth;
pub mod automation;
pub mod documents;
pub mod events;
pub mod ingest;
pub mod plan;
pub mod response;
pub mod search;
pub mod system;
pub mod thehive;
pub mod tickets;
pub mod users;
