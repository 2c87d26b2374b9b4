//! Application errors: what went wrong in terms a client can act on.

use firebreak_domain::{DomainError, FieldError};
use firebreak_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("authentication required")]
    Unauthenticated,
    /// A sign-in failed: unknown user, wrong password or code, disabled account (one answer).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed sign-ins for this account or address.
    #[error("too many failed attempts")]
    TooManyAttempts { retry_after: u32 },
    /// Stored content no longer matches its hash (tampering or corruption): never served.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A body larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// An outside service (an intel connector, a feed, a webhook target) failed or refused.
    #[error("{0}")]
    Upstream(String),
    #[error("storage full")]
    StorageFull,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound,
            StoreError::Conflict(m) => AppError::Conflict {
                code: "conflict",
                message: m,
            },
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::Full(_) => AppError::StorageFull,
            StoreError::Invalid(m) => AppError::field("body", m),
            StoreError::Other(e) => AppError::Unexpected(e),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(f) => AppError::Validation(f),
            DomainError::InvalidTransition { code, message } => {
                AppError::Conflict { code, message }
            }
        }
    }
}
