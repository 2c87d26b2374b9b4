//! The one JSON error envelope: `{"error": {"code", "message", "details": [{"field", "message"}]}}`.
//! 5xx are logged with their cause; the client sees an opaque message and the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firebreak_app::AppError;
use firebreak_domain::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The offending field, as a path (`source.kind`, `tags[2]`).
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case, for programs.
    pub code: String,
    /// For people.
    pub message: String,
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: vec![],
            retry_after: None,
        }
    }

    pub fn field(status: StatusCode, code: &str, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            code: code.into(),
            message: format!("{field}: {message}"),
            details: vec![ErrorDetail {
                field: field.into(),
                message,
            }],
            retry_after: None,
        }
    }

    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed".into(),
            message,
            details: fields
                .into_iter()
                .map(|f| ErrorDetail {
                    field: f.field,
                    message: f.message,
                })
                .collect(),
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid bearer token (Authorization: Bearer <token>) or sign-in session is required",
        )
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound => ApiError::not_found(),
            AppError::Unauthenticated => ApiError::unauthenticated(),
            AppError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "the username, password or code is not valid",
            ),
            AppError::TooManyAttempts { retry_after } => ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "too many failed sign-ins for this account or address; retry after Retry-After seconds",
                )
            },
            AppError::Integrity(m) => {
                tracing::error!(problem = %m, "integrity check failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "integrity_check_failed",
                    "the stored content does not match its recorded SHA-256; it is not served",
                )
            }
            AppError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            AppError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            AppError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            AppError::Validation(f) => ApiError::validation(f),
            AppError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the database is unavailable; retry later",
                    )
                }
            }
            AppError::Upstream(m) => ApiError {
                retry_after: Some(30),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable", m)
            },
            AppError::StorageFull => ApiError {
                retry_after: Some(60),
                ..ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the storage is full; nothing was written",
                )
            },
            AppError::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "unexpected error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the request id identifies it in the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
