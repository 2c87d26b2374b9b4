//! `/api/v1/plan`: the response plan, as JSON or YAML, versioned.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::Auth;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use firebreak_domain::api::Page;
use firebreak_domain::plan::{Plan, PlanVersion};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_plan, put_plan))
        .routes(routes!(plan_versions))
}

/// The response plan in force (version 0 is the built-in plan).
#[utoipa::path(get, path = "/plan", tag = "plan", responses((status = 200, body = PlanVersion)))]
pub async fn get_plan(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<PlanVersion>> {
    Ok(Json(s.app.get_plan(&p).await?))
}

/// Parses a plan from JSON or YAML (`application/yaml`), naming the failing field.
pub fn parse_plan(content_type: &str, body: &[u8]) -> Result<Plan, ApiError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        ct.as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml"
    ) {
        let text = std::str::from_utf8(body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_yaml",
                "the YAML is not UTF-8",
            )
        })?;
        firebreak_app::playbook::check_yaml_nesting(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_yaml",
                format!("malformed YAML: {e}"),
            )
        })?;
        let de = yaml_serde::Deserializer::from_str(text);
        return serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            let data_error = [
                "invalid type",
                "invalid value",
                "unknown field",
                "missing field",
                "unknown variant",
                "invalid length",
            ]
            .iter()
            .any(|p| msg.contains(p));
            if let Some(name) = msg
                .split("missing field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
            {
                let field = if path == "." || path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                return ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    &field,
                    format!("missing field `{name}`"),
                );
            }
            if !data_error || path == "." || path.is_empty() {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_yaml",
                    format!("malformed YAML: {msg}"),
                )
            } else {
                ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    &path,
                    msg,
                )
            }
        });
    }
    if ct != "application/json" {
        return Err(ApiError::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "expected application/json or application/yaml",
        ));
    }
    crate::extract::parse_json(body)
}

/// Replace the plan (admins): a new version, kept and audited. Every problem is listed by its
/// path. JSON or YAML (`Content-Type: application/yaml`).
#[utoipa::path(put, path = "/plan", tag = "plan",
    request_body(content = Plan, content_type = "application/json"),
    responses((status = 200, body = PlanVersion), (status = 422, body = ErrorEnvelope)))]
pub async fn put_plan(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PlanVersion>> {
    // who may change the plan is decided before the body is even read
    s.app.may_change_plan(&p).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let plan = parse_plan(ct, &body)?;
    Ok(Json(s.app.put_plan(&p, &plan).await?))
}

/// Every version of the plan, oldest first.
#[utoipa::path(get, path = "/plan/versions", tag = "plan", responses((status = 200, body = Page<Object>)))]
pub async fn plan_versions(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<serde_json::Value>>> {
    Ok(Json(Page {
        items: s.app.plan_versions(&p).await?,
        next_cursor: None,
    }))
}

#[cfg(test)]
mod tests {
    /// Deeply nested flow collections took the YAML scanner quadratic time; refused at once.
    #[test]
    fn deeply_nested_yaml_is_refused_at_once() {
        let deep = format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(super::parse_plan("application/yaml", deep.as_bytes()).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
