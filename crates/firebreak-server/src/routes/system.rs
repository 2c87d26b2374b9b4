//! Health, readiness and the landing page.

use crate::AppState;
use crate::error::{ApiError, ErrorEnvelope};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub backend: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        backend: s.app.store().backend(),
    })
}

/// Readiness: the database is reachable and accepts writes.
#[utoipa::path(get, path = "/readyz", tag = "system", responses((status = 200, body = Health), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.app.ready().await {
        Ok(()) => Json(Health {
            status: "ready",
            version: env!("CARGO_PKG_VERSION"),
            backend: s.app.store().backend(),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the database is not reachable",
                )
            }
            .into_response()
        }
    }
}

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

const INDEX: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Firebreak</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{margin-bottom:.25rem}code{background:#f1f1f1;padding:.1rem .3rem;border-radius:3px}a{color:#0645ad}</style></head>
<body><h1>Firebreak</h1><p>Security incident management and response.</p>
<ul><li><a href="/api/docs/">API documentation</a> (OpenAPI 3.1, works offline)</li>
<li><a href="/api/v1/openapi.json">OpenAPI document</a></li>
<li><a href="/healthz">Health</a> · <a href="/readyz">Readiness</a></li></ul>
<p>Create a token with <code>firebreak token create --user admin</code> and send it as <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</body></html>"#;
