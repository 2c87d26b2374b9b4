//! Extractors: JSON bodies that name the bad field, query strings, and the bearer principal.
//! Every rejection is the error envelope with a 4xx, never a bare text body.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use firebreak_app::Principal;
use serde::de::DeserializeOwned;

/// Largest JSON body accepted by Firebreak's own endpoints.
pub const JSON_LIMIT: usize = 1024 * 1024;

/// A JSON body, deserialized with the failing field's path in the error.
pub struct ApiJson<T>(pub T);

/// Parses a JSON document into `T`, turning serde's error into a 400 (syntax) or a 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde accepts a struct written as an array; Firebreak's bodies are objects only
    if bytes.trim_ascii() != b"null"
        && bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
    {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "body",
                    "expected a JSON object",
                ),
                Err(e) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("malformed JSON: {e}"),
                ),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(json_error(&e)),
    };
    if let Err(e) = de.end() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {e}"),
        ));
    }
    Ok(value)
}

fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    use serde_json::error::Category;
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {inner}"),
        ),
        Category::Data => {
            let path = e.path().to_string();
            let msg = strip_position(&inner.to_string());
            // "missing field `x`" is reported at the parent: name the field itself
            let field = if let Some(name) = msg
                .strip_prefix("missing field `")
                .and_then(|s| s.split('`').next())
            {
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            } else if path == "." {
                "body".to_string()
            } else {
                path
            };
            ApiError::validation(vec![firebreak_domain::FieldError::new(field, msg)])
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::field(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "content-type",
                format!(
                    "expected application/json, got {}",
                    if ct.is_empty() { "none" } else { ct }
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body exceeds {JSON_LIMIT} bytes"),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("could not read the body: {e}"),
                )
            }
        })?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

/// A body that may be empty (actions without required fields): empty means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // empty: an explicit zero length, or no length, no chunking and no content type; a body
        // without a JSON content type is a 415, never silently ignored
        let h = req.headers();
        let length = h.get(header::CONTENT_LENGTH);
        let empty = length.is_some_and(|v| v == "0")
            || (length.is_none()
                && h.get(header::TRANSFER_ENCODING).is_none()
                && h.get(header::CONTENT_TYPE).is_none());
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        // `null` (an absent optional body written out) means the defaults too
        let ApiJson(v) = ApiJson::<Option<T>>::from_request(req, state).await?;
        Ok(OptionalJson(v.unwrap_or_default()))
    }
}

/// Query strings, rejecting unknown or ill-typed parameters with the parameter named.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let msg = e.inner().to_string();
                let field = msg
                    .strip_prefix("unknown field `")
                    .or_else(|| msg.strip_prefix("missing field `"))
                    .and_then(|s| s.split('`').next())
                    .map(str::to_string)
                    .unwrap_or_else(|| e.path().to_string());
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", &field, msg)
            })
    }
}

/// The authenticated caller: `Authorization: Bearer <token>`, or the session cookie of a
/// signed-in browser (then every state-changing request must pass the CSRF check).
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await {
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                // no or bad credentials: counted per address; beyond the limit, 429
                let addr = crate::web::client_info(parts, state.web())
                    .addr
                    .and_then(|a| a.parse().ok());
                if let Some(ip) = addr
                    && let Err(retry) = state.unauthenticated.hit(ip)
                {
                    return Err(ApiError {
                        retry_after: Some(retry),
                        ..ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too_many_requests",
                            "too many unauthenticated requests from this address; retry after Retry-After seconds",
                        )
                    });
                }
                Err(e)
            }
            other => other,
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Auth, ApiError> {
    if let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthenticated)?;
        let p = state
            .app
            .authenticate(token)
            .await
            .map_err(ApiError::from)?;
        return Ok(Auth(p));
    }
    let Some(secret) = crate::web::session_cookie(&parts.headers) else {
        return Err(ApiError::unauthenticated());
    };
    let (p, session) = state
        .app
        .authenticate_session(&secret, false)
        .await
        .map_err(ApiError::from)?;
    if !crate::web::is_safe_method(&parts.method) {
        crate::web::check_csrf(&parts.headers, state.web(), &session.csrf_token, None)?;
    }
    Ok(Auth(p))
}
