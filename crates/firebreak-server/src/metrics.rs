//! Prometheus metrics: the recorder (installed once per process by `serve`), the `/metrics`
//! page (readable without a token from loopback, with an admin or auditor token from
//! elsewhere), and the HTTP request counters and latencies.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use firebreak_domain::role::Role;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// How often the recorder's histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    if HANDLE.get().is_none() {
        match PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .and_then(PrometheusBuilder::install_recorder)
        {
            Ok(h) => {
                if HANDLE.set(h).is_ok()
                    && let Some(h) = HANDLE.get()
                {
                    // histogram samples pile up in the recorder until an upkeep folds them in;
                    // a server nobody scrapes must not grow by a sample per request
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                h.run_upkeep();
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
        }
    }
    HANDLE.get()
}

/// Counts every request and times it, by route template (never the raw path: no ids or
/// user input in label values).
pub async fn track(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("firebreak_http_requests_total", &labels).increment(1);
    metrics::histogram!("firebreak_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`: Prometheus text format.
pub async fn page(State(s): State<AppState>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let info = crate::web::client_info(&parts, s.web());
    let loopback = info
        .addr
        .as_deref()
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !loopback {
        let auth = <crate::extract::Auth as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &s,
        )
        .await;
        match auth {
            Ok(crate::extract::Auth(p))
                if p.can_read() && p.has_any(&[Role::Admin, Role::Auditor]) => {}
            Ok(_) => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "metrics are for admins and auditors (or from loopback)",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    let Some(h) = HANDLE.get() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not enabled in this process",
        )
        .into_response();
    };
    h.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.render(),
    )
        .into_response()
}
