//! Firebreak's pure model: ids, roles, tickets and their state machine, and audit-chain hashing.
//! Must not do IO, spawn tasks, or know about HTTP or SQL.
#![forbid(unsafe_code)]

pub mod api;
pub mod asset;
pub mod audit;
pub mod error;
pub mod event;
pub mod ids;
pub mod plan;
pub mod response;
pub mod role;
pub mod ticket;
pub mod user;

pub use error::{DomainError, FieldError};
