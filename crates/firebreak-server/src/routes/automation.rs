//! Automation: `/api/v1/playbooks` (YAML, versioned), `/api/v1/playbook-runs` (durable runs,
//! approvals, cancel, retry), `/api/v1/connectors` (intel services and outbound channels;
//! secrets write-only), `/api/v1/indicators` (the local indicator store: import, list, export)
//! and `/api/v1/lookup`.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, Auth, OptionalJson};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use firebreak_app::automation::{ApprovalDecision, ManualRun, PlaybookView, RunView};
use firebreak_app::intel::{ConnectorInput, ConnectorView, ImportReport, IndicatorView};
use firebreak_domain::api::Page;
use firebreak_store::IndicatorFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_playbooks, create_playbook))
        .routes(routes!(validate_playbook))
        .routes(routes!(get_playbook, put_playbook))
        .routes(routes!(playbook_versions))
        .routes(routes!(enable_playbook))
        .routes(routes!(disable_playbook))
        .routes(routes!(run_playbook))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(decide_approval))
        .routes(routes!(ticket_runs))
        .routes(routes!(list_connectors))
        .routes(routes!(get_connector, put_connector, delete_connector))
        .routes(routes!(lookup))
        .routes(routes!(list_indicators, delete_indicators))
        .routes(routes!(import_indicators))
        .routes(routes!(export_indicators))
}

fn uuid_or_404(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such run"))
}

fn yaml_text(body: &Bytes) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "the playbook is not UTF-8 text",
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "body",
            "send the playbook as YAML (or JSON)",
        ));
    }
    Ok(text)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        ct.as_str(),
        "application/yaml"
            | "application/x-yaml"
            | "text/yaml"
            | "application/json"
            | "text/plain"
            | ""
    ) {
        Ok(())
    } else {
        Err(ApiError::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "send the playbook as application/yaml (or application/json)",
        ))
    }
}

/// Every playbook (the security team and admins).
#[utoipa::path(get, path = "/playbooks", tag = "automation", responses((status = 200, body = Page<Object>)))]
async fn list_playbooks(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<PlaybookView>>> {
    Ok(Json(Page {
        items: s.app.list_playbooks(&p).await?,
        next_cursor: None,
    }))
}

/// Store a playbook (admins): the body is its YAML (`Content-Type: application/yaml`; JSON is
/// YAML too). A name already stored gets a new version; every version is kept. Invalid
/// playbooks are refused with every error and its YAML path.
#[utoipa::path(post, path = "/playbooks", tag = "automation",
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 422, body = ErrorEnvelope)))]
async fn create_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_content_type(&headers)?;
    let (view, created) = s.app.put_playbook(&p, None, yaml_text(&body)?).await?;
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/playbooks/{}", view.name)) {
        h.insert(header::LOCATION, v);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, h, Json(view)).into_response())
}

/// Validate a playbook without storing it: `{"valid": true, "playbook": {...}}`, or 422 with
/// every error and its YAML path.
#[utoipa::path(post, path = "/playbooks/validate", tag = "automation",
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = Object), (status = 422, body = ErrorEnvelope)))]
async fn validate_playbook(
    Auth(_p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_content_type(&headers)?;
    let pb = firebreak_app::App::validate_playbook(yaml_text(&body)?)?;
    Ok(Json(json!({"valid": true, "playbook": pb})))
}

/// One playbook, its current version.
#[utoipa::path(get, path = "/playbooks/{name}", tag = "automation",
    params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorEnvelope)))]
async fn get_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<PlaybookView>> {
    Ok(Json(s.app.get_playbook(&p, &name).await?))
}

/// Store a new version of a playbook (admins); the YAML's `name` must be the URL's.
#[utoipa::path(put, path = "/playbooks/{name}", tag = "automation", params(("name" = String, Path)),
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 422, body = ErrorEnvelope)))]
async fn put_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_content_type(&headers)?;
    let (view, created) = s
        .app
        .put_playbook(&p, Some(&name), yaml_text(&body)?)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// Every version of a playbook, newest first.
#[utoipa::path(get, path = "/playbooks/{name}/versions", tag = "automation", params(("name" = String, Path)),
    responses((status = 200, body = Page<Object>)))]
async fn playbook_versions(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Page<PlaybookView>>> {
    Ok(Json(Page {
        items: s.app.playbook_versions(&p, &name).await?,
        next_cursor: None,
    }))
}

/// Turn a playbook on (a new version).
#[utoipa::path(post, path = "/playbooks/{name}/enable", tag = "automation", params(("name" = String, Path)),
    responses((status = 200, body = Object)))]
async fn enable_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<PlaybookView>> {
    Ok(Json(s.app.set_playbook_enabled(&p, &name, true).await?))
}

/// Turn a playbook off (a new version); runs already queued still run.
#[utoipa::path(post, path = "/playbooks/{name}/disable", tag = "automation", params(("name" = String, Path)),
    responses((status = 200, body = Object)))]
async fn disable_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<PlaybookView>> {
    Ok(Json(s.app.set_playbook_enabled(&p, &name, false).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// A ticket id or number.
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub event: Option<Uuid>,
}

/// Run a playbook now on a ticket or an event (responders): answers 202 with the queued run.
#[utoipa::path(post, path = "/playbooks/{name}/run", tag = "automation", params(("name" = String, Path)),
    request_body = RunBody, responses((status = 202, body = Object), (status = 404, body = ErrorEnvelope)))]
async fn run_playbook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
    OptionalJson(b): OptionalJson<RunBody>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let run = s
        .app
        .run_playbook(
            &p,
            &name,
            &ManualRun {
                ticket: b.ticket,
                event: b.event,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// queued, running, waiting, succeeded, failed, dead (the dead-letter state), cancelled.
    pub status: Option<String>,
    /// A ticket id or number.
    pub ticket: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn run_cursor(r: &RunView) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        firebreak_store::to_millis(r.created_at),
        r.id
    ))
}

fn parse_run_cursor(c: &str) -> Result<(time::OffsetDateTime, Uuid), ApiError> {
    let bad = || {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            "cursor",
            "not a cursor this API gave out",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (ms, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        firebreak_store::from_millis(ms.parse().map_err(|_| bad())?),
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

async fn runs_page(
    s: &AppState,
    p: &firebreak_app::Principal,
    q: RunsQuery,
    ticket: Option<&str>,
) -> ApiResult<Json<Page<RunView>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "limit",
            "1 to 500",
        ));
    }
    let before = q.cursor.as_deref().map(parse_run_cursor).transpose()?;
    let items = s
        .app
        .list_runs(
            p,
            q.status.as_deref(),
            ticket.or(q.ticket.as_deref()),
            before,
            limit,
        )
        .await?;
    let next_cursor = if items.len() as u32 == limit {
        items.last().map(run_cursor)
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// Playbook runs, newest first (each with its steps, their outputs and durations).
#[utoipa::path(get, path = "/playbook-runs", tag = "automation", params(RunsQuery), responses((status = 200, body = Page<Object>)))]
async fn list_runs(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Page<RunView>>> {
    runs_page(&s, &p, q, None).await
}

/// A ticket's playbook runs.
#[utoipa::path(get, path = "/tickets/{ref}/playbook-runs", tag = "automation", params(("ref" = String, Path), RunsQuery),
    responses((status = 200, body = Page<Object>)))]
async fn ticket_runs(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(r): Path<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Page<RunView>>> {
    runs_page(&s, &p, q, Some(&r)).await
}

/// One run.
#[utoipa::path(get, path = "/playbook-runs/{id}", tag = "automation", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorEnvelope)))]
async fn get_run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    Ok(Json(s.app.get_run(&p, uuid_or_404(&id)?).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Cancel a run that has not ended (responders and admins).
#[utoipa::path(post, path = "/playbook-runs/{id}/cancel", tag = "automation", params(("id" = String, Path)),
    request_body = CancelBody, responses((status = 200, body = Object), (status = 409, body = ErrorEnvelope)))]
async fn cancel_run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<CancelBody>,
) -> ApiResult<Json<RunView>> {
    Ok(Json(
        s.app
            .cancel_run(&p, uuid_or_404(&id)?, b.reason.as_deref())
            .await?,
    ))
}

/// Send a dead, failed or cancelled run back to the queue (senior responders and admins);
/// steps already done are not repeated.
#[utoipa::path(post, path = "/playbook-runs/{id}/retry", tag = "automation", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 409, body = ErrorEnvelope)))]
async fn retry_run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let r = s.app.retry_run(&p, uuid_or_404(&id)?).await?;
    Ok(Json(r))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub approve: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Approve or reject what a waiting run asks (holders of the role the step names).
#[utoipa::path(post, path = "/playbook-runs/{id}/approval", tag = "automation", params(("id" = String, Path)),
    request_body = DecisionBody, responses((status = 200, body = Object), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn decide_approval(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DecisionBody>,
) -> ApiResult<Json<RunView>> {
    let r = s
        .app
        .decide_approval(
            &p,
            uuid_or_404(&id)?,
            &ApprovalDecision {
                approve: b.approve,
                comment: b.comment,
            },
        )
        .await?;
    Ok(Json(r))
}

/// Connectors: intel services (virustotal, abuseipdb, urlscan, misp, http), outbound channels
/// (slack, teams, webhook) and indicator feeds. Secrets are never returned.
#[utoipa::path(get, path = "/connectors", tag = "automation", responses((status = 200, body = Page<Object>)))]
async fn list_connectors(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<ConnectorView>>> {
    Ok(Json(Page {
        items: s.app.list_connectors(&p).await?,
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/connectors/{name}", tag = "automation", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorEnvelope)))]
async fn get_connector(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<ConnectorView>> {
    Ok(Json(s.app.get_connector(&p, &name).await?))
}

/// Create or replace a connector (admins). `secret` is write-only: omitted keeps the stored
/// one. Fields: `kind`, `base_url`, `http` (generic connector: `method`, `url_template`,
/// `auth_header`, `verdict_path`...), `secret`, `cache_ttl_secs`, `rate_per_minute`,
/// `allow_private` (lets it reach internal addresses), `enabled`, and for feeds
/// `feed_format`, `feed_source`, `refresh_minutes`.
#[utoipa::path(put, path = "/connectors/{name}", tag = "automation", params(("name" = String, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 201, body = Object), (status = 422, body = ErrorEnvelope)))]
async fn put_connector(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<ConnectorInput>,
) -> ApiResult<Response> {
    let (view, created) = s.app.put_connector(&p, &name, &b).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

#[utoipa::path(delete, path = "/connectors/{name}", tag = "automation", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
async fn delete_connector(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.delete_connector(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupBody {
    /// ip, domain, url, email, md5, sha1, sha256...
    pub kind: String,
    pub value: String,
    /// Connector names (and `local`); all intel connectors when absent.
    #[serde(default)]
    pub connectors: Vec<String>,
}

/// Look an observable up now (responders): the local indicators and the intel connectors.
#[utoipa::path(post, path = "/lookup", tag = "automation", request_body = LookupBody,
    responses((status = 200, body = Object), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn lookup(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<LookupBody>,
) -> ApiResult<Json<Value>> {
    if !firebreak_app::playbook::OBSERVABLE_KINDS.contains(&b.kind.as_str()) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "kind",
            format!(
                "expected one of: {}",
                firebreak_app::playbook::OBSERVABLE_KINDS.join(", ")
            ),
        ));
    }
    Ok(Json(
        s.app
            .lookup_observable(&p, &b.kind, &b.value, &b.connectors)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IndicatorsQuery {
    pub kind: Option<String>,
    pub source: Option<String>,
    /// Include expired ones (default false).
    pub expired: Option<bool>,
    /// 1 to 1000, default 100.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Local indicators in (kind, value, source) order.
#[utoipa::path(get, path = "/indicators", tag = "automation", params(IndicatorsQuery), responses((status = 200, body = Page<Object>)))]
async fn list_indicators(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<IndicatorsQuery>,
) -> ApiResult<Json<Page<IndicatorView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "limit",
            "1 to 1000",
        ));
    }
    let after = match &q.cursor {
        Some(c) => {
            let bad = || {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "cursor",
                    "not a cursor this API gave out",
                )
            };
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| bad())?;
            let v: (String, String, String) = serde_json::from_slice(&raw).map_err(|_| bad())?;
            Some(v)
        }
        None => None,
    };
    let filter = IndicatorFilter {
        kind: q.kind,
        source: q.source,
        valid_at: if q.expired.unwrap_or(false) {
            None
        } else {
            Some(time::OffsetDateTime::now_utc())
        },
        after,
        limit,
    };
    let items = s.app.list_indicators(&p, &filter).await?;
    let next_cursor = if items.len() as u32 == limit {
        items.last().map(|i| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&(&i.kind, &i.value, &i.source)).unwrap_or_default())
        })
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteIndicatorsQuery {
    /// Every indicator of this source is deleted.
    pub source: String,
}

/// Delete a source's indicators (senior responders and admins).
#[utoipa::path(delete, path = "/indicators", tag = "automation", params(DeleteIndicatorsQuery), responses((status = 204)))]
async fn delete_indicators(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<DeleteIndicatorsQuery>,
) -> ApiResult<StatusCode> {
    s.app.delete_indicator_source(&p, &q.source).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// stix (2.1 bundle), misp (event JSON or restSearch answer), csv (type,value,confidence,source,expiry).
    pub format: String,
    /// The source name for items that name none (default `manual`).
    pub source: Option<String>,
    /// Replace the source's indicators instead of adding to them.
    pub replace: Option<bool>,
}

/// Import indicators (senior responders and admins): the body is the feed document. Bad
/// items are reported by position; the others go in.
#[utoipa::path(post, path = "/indicators/import", tag = "automation", params(ImportQuery),
    request_body(content = String, content_type = "application/octet-stream"),
    responses((status = 200, body = Object), (status = 422, body = ErrorEnvelope)))]
async fn import_indicators(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<ImportReport>> {
    Ok(Json(
        s.app
            .import_indicators(
                &p,
                &q.format,
                &body,
                q.source.as_deref(),
                q.replace.unwrap_or(false),
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `text` (one value per line, for firewalls) or `stix` (a STIX 2.1 bundle, for MISP).
    pub format: String,
    /// Comma-separated kinds (default: all).
    pub kind: Option<String>,
}

/// Export the valid indicators.
#[utoipa::path(get, path = "/indicators/export", tag = "automation", params(ExportQuery),
    responses((status = 200, body = String, content_type = "text/plain")))]
async fn export_indicators(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let kinds: Vec<String> = q
        .kind
        .as_deref()
        .map(|k| {
            k.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let (body, ct) = s.app.export_indicators(&p, &q.format, &kinds).await?;
    Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
}
