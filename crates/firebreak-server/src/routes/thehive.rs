//! TheHive-compatible API: what Elastalert2, Kibana's TheHive connector, Velociraptor and
//! thehive4py (2.x, and 1.x for TheHive 4) call, answered in TheHive's shapes.
//!
//! - Alerts (`POST /api/v1/alert`, TheHive 4's `/api/alert`, `GET .../alert/{id}`) become
//!   events in the help desk's queue, deduplicated by (`type`, `source`, `sourceRef`).
//! - Cases (`POST /api/v1/case`, `GET`/`PATCH /api/v1/case/{id}`, comments and observables,
//!   and TheHive 4's `/api/case` forms) are tickets: a case is created by the same people who
//!   may open a ticket (help desk, responders, managers), since it skips the queue. `{id}` is
//!   the ticket's id or number.
//! - Alerts take observables after they are stored (`POST /api/v1/alert/{id}/observable`,
//!   TheHive 4's `/api/alert/{id}/artifact`): they are added to the event.
//! - The query API (`POST /api/v1/query`: `listAlert`, `listCase`, filters, sort, page,
//!   count) runs over what the caller may see (`query.rs`).
//! - Every error, also those raised before a handler (an unknown path under these prefixes,
//!   a body too large), is TheHive's `{"type", "message"}`: clients print `type - message`.
//!
//! Authentication: `Authorization: Bearer <token>`, or `Basic` with the token as password.
//! `X-Organisation` is accepted and ignored (one organisation).

mod query;

use super::ingest::{multipart_limits, read_body};
use crate::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firebreak_app::{AppError, Principal};
use firebreak_domain::api::{CreateTicketRequest, UpdateTicketRequest};
use firebreak_domain::event::IngestSummary;
use firebreak_domain::ticket::{Severity, TicketStatus};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes under `/api/v1` (TheHive 5).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(thehive_alert))
        .routes(routes!(thehive_get_alert))
        .routes(routes!(alert_observable))
        .routes(routes!(case_create))
        .routes(routes!(case_get, case_update))
        .routes(routes!(case_comment))
        .routes(routes!(case_observable))
        .routes(routes!(query::thehive_query))
}

/// Routes at the root (TheHive 4's v0 API).
pub fn root_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(thehive4_alert))
        .routes(routes!(thehive4_get_alert))
        .routes(routes!(alert4_artifact))
        .routes(routes!(case4_create))
        .routes(routes!(case4_get, case4_update))
        .routes(routes!(case4_artifact))
}

/// Whether a path is TheHive's (its errors are TheHive-shaped).
pub fn is_thehive_path(path: &str) -> bool {
    [
        "/api/alert",
        "/api/case",
        "/api/v1/alert",
        "/api/v1/case",
        "/api/v1/query",
    ]
    .iter()
    .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// TheHive's `type` for an HTTP status.
fn thehive_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "AuthenticationError",
        StatusCode::FORBIDDEN => "AuthorizationError",
        StatusCode::NOT_FOUND => "NotFoundError",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::CONFLICT => "ConflictError",
        StatusCode::UNPROCESSABLE_ENTITY => "AttributeCheckingError",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        s if s.is_server_error() => "InternalError",
        _ => "BadRequest",
    }
}

/// A response in Firebreak's error envelope, re-shaped as TheHive's `{type, message}` (with
/// the envelope's field details in the message); any other response as it is.
async fn thehive_shaped(res: Response) -> Response {
    let status = res.status();
    if status.is_success() || status.is_redirection() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return thehive_error(status, thehive_type(status), "error");
    };
    let envelope = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let Some(err) = envelope else {
        // already TheHive's shape (a handler's own answer)
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut message = err
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("error")
        .to_string();
    for d in err
        .get("details")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(f), Some(m)) = (
            d.get("field").and_then(|v| v.as_str()),
            d.get("message").and_then(|v| v.as_str()),
        ) {
            message.push_str(&format!("; {f}: {m}"));
        }
    }
    let mut out = thehive_error(status, thehive_type(status), message);
    for h in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}

/// Middleware: every answer under TheHive's paths in TheHive's error shape (the fallbacks'
/// 404/405, the body limits' 413 and the gates' 503 come from other layers).
pub async fn thehive_shape(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !is_thehive_path(req.uri().path()) {
        return next.run(req).await;
    }
    thehive_shaped(next.run(req).await).await
}

fn thehive_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let mut r = (
        status,
        Json(json!({"type": kind, "message": message.into()})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
    }
    r
}

fn thehive_app_error(e: AppError) -> Response {
    match e {
        AppError::Unauthenticated => thehive_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Authentication failure",
        ),
        AppError::Forbidden(m) => thehive_error(StatusCode::FORBIDDEN, "AuthorizationError", m),
        AppError::Validation(f) => thehive_error(
            StatusCode::BAD_REQUEST,
            "AttributeCheckingError",
            f.iter()
                .map(|x| format!("{}: {}", x.field, x.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        AppError::Unavailable(_) => thehive_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "database unavailable; retry",
        ),
        AppError::StorageFull => thehive_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "StorageFull",
            "storage full; nothing was written",
        ),
        other => {
            tracing::error!(error = %other, "TheHive-compatible alert failed");
            thehive_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "internal error",
            )
        }
    }
}

/// The API key of a TheHive request: `Authorization: Bearer <key>`, or `Basic` with the key as
/// the password (thehive4py and TheHive 4 clients configured with a user and password send
/// Basic; a Firebreak password is never taken here: sign-in has its own second factor).
fn thehive_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
        .or_else(|| super::ingest::basic_password(v))
}

/// The caller of a TheHive request, or TheHive's `AuthenticationError`.
async fn thehive_principal(s: &AppState, headers: &HeaderMap) -> Result<Principal, Response> {
    let Some(token) = thehive_token(headers) else {
        return Err(thehive_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Authentication failure",
        ));
    };
    s.app.authenticate(&token).await.map_err(thehive_app_error)
}

/// Creates an alert; `v0`: a TheHive 4 client (`/api/alert`: its TLP scale).
async fn thehive_create(s: AppState, headers: HeaderMap, body: Body, v0: bool) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = s.app.check_reporter(&p).await {
        return thehive_app_error(e);
    }
    let Ok((_slot, body)) = s.web.intake.admit(&headers, body).await else {
        return thehive_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "busy; retry",
        );
    };
    let (bytes, attachments) = match read_thehive_body(&s, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (input, mut event) = match firebreak_intake::thehive::parse(&bytes) {
        Ok(v) => v,
        Err(e) => return attribute_error(&e),
    };
    if v0 {
        // kept beside the raw alert: its TLP is on TheHive 4's scale (3 is RED)
        event.fields.insert("thehive_api".into(), json!("v0"));
        if let Some(t) = input.tlp {
            event.fields.insert(
                "tlp".into(),
                json!(firebreak_intake::thehive::tlp_from_v0(t)),
            );
        }
    }
    let keys = firebreak_intake::thehive::attachment_keys(&input);
    for (key, file_name, hash) in attachments {
        if !keys.contains(&key) {
            continue;
        }
        if let Some(name) = file_name.filter(|n| !n.trim().is_empty()) {
            let name = firebreak_intake::Observable::new(
                firebreak_intake::ObservableKind::Filename,
                name.trim(),
            );
            if !event.observables.contains(&name) {
                event.observables.push(name);
            }
        }
        if !event.observables.contains(&hash) {
            event.observables.push(hash);
        }
    }
    let mut summary = IngestSummary::default();
    if let Err(e) = s.app.ingest(&p, vec![event], &mut summary).await {
        return thehive_app_error(e);
    }
    let Some(id) = summary.events.first() else {
        return thehive_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no event recorded",
        );
    };
    // the answer is the alert as stored, read back: what a later GET returns
    let stored = match s.app.find_event(&p, &id.to_string()).await {
        Ok(e) => e,
        Err(e) => return thehive_app_error(e),
    };
    let body = stored_alert(&stored, v0).unwrap_or_else(|| {
        let created = millis(stored.received_at);
        firebreak_intake::thehive::alert_response(
            &id.to_string(),
            &input,
            created,
            p.username(),
            "New",
        )
    });
    if summary.created == 0 {
        // TheHive refuses a second alert with the same (type, source, sourceRef); so does
        // this API, and says which alert holds it. The repeat is counted on that alert
        // (`occurrences`), as every intake channel counts repeats within the dedup window.
        let mut r = (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "type": "CreateError",
                "message": format!(
                    "Alert already exists: {} (type {:?}, source {:?}, sourceRef {:?}); the repeat was counted on it",
                    id, input.alert_type, input.source, input.source_ref
                ),
                "object": body,
            })),
        )
            .into_response();
        r.headers_mut().insert(
            header::LOCATION,
            axum::http::HeaderValue::from_str(&format!("/api/v1/alert/{id}"))
                .unwrap_or_else(|_| axum::http::HeaderValue::from_static("/api/v1/alert")),
        );
        return r;
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

/// A stored event that came as a TheHive alert, in TheHive's shape (status `New` while in
/// the queue, `Imported` once on a ticket, `Ignored` when dismissed); `None` for an event
/// that did not come through the alert API.
fn stored_alert(e: &firebreak_domain::event::Event, v0: bool) -> Option<serde_json::Value> {
    let (mut input, _) = firebreak_intake::thehive::parse(e.raw.as_bytes()).ok()?;
    if e.fields.get("thehive_api").and_then(|v| v.as_str()) == Some("v0") {
        input.tlp = input.tlp.map(firebreak_intake::thehive::tlp_from_v0);
    }
    use firebreak_domain::ticket::EventStatus;
    let status = match e.status {
        EventStatus::Ticketed | EventStatus::Merged => "Imported",
        EventStatus::Dismissed => "Ignored",
        _ => "New",
    };
    let created = millis(e.received_at);
    let mut body = firebreak_intake::thehive::alert_response(
        &e.id.to_string(),
        &input,
        created,
        &e.reported_by,
        status,
    );
    if let Some(t) = e.ticket_id {
        body["caseId"] = json!(t.to_string());
    }
    // observables added later (`POST .../alert/{id}/observable`) are the event's too
    let sent = body["observableCount"].as_u64().unwrap_or(0);
    body["observableCount"] = json!(sent.max(e.observables.len() as u64));
    if v0 {
        firebreak_intake::thehive::answer_for_v0(&mut body);
    }
    Some(body)
}

/// TheHive 5 `POST /api/v1/alert`: alerts from Elastalert2, Kibana, Velociraptor and
/// thehive4py become events, deduplicated by (`type`, `source`, `sourceRef`). Answers in
/// TheHive's shapes (the created alert with its `_id`; errors as `{type, message}`).
#[utoipa::path(post, path = "/alert", tag = "intake",
    request_body(content = serde_json::Value, description = "A TheHive 5 alert"),
    responses((status = 201, body = serde_json::Value, description = "The alert, TheHive-shaped"), (status = 400, body = serde_json::Value)))]
async fn thehive_alert(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    thehive_create(s, headers, body, false).await
}

/// TheHive's `GET /api/v1/alert/{id}`: an event received through the alert API, in TheHive's
/// shape (status `New` while in the queue, `Imported` once on a ticket, `Ignored` when
/// dismissed).
#[utoipa::path(get, path = "/alert/{id}", tag = "intake",
    params(("id" = String, Path, description = "The alert's `_id` (the event id)")),
    responses((status = 200, body = serde_json::Value, description = "The alert, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn thehive_get_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    get_alert(s, headers, id, false).await
}

/// An alert as a TheHive client reads it (`v0`: on TheHive 4's TLP scale).
async fn get_alert(s: AppState, headers: HeaderMap, id: String, v0: bool) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let not_found = || {
        thehive_error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("Alert {id} not found"),
        )
    };
    let e = match s.app.find_event(&p, &id).await {
        Ok(e) => e,
        Err(AppError::NotFound) => return not_found(),
        Err(e) => return thehive_app_error(e),
    };
    match stored_alert(&e, v0) {
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
        None => not_found(), // not an event that came as a TheHive alert
    }
}

/// TheHive 4's `GET /api/alert/{id}` (thehive4py 1.x `get_alert`): as `GET /api/v1/alert/{id}`.
#[utoipa::path(get, path = "/api/alert/{id}", tag = "intake",
    params(("id" = String, Path, description = "The alert's `id` (the event id)")),
    responses((status = 200, body = serde_json::Value, description = "The alert, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn thehive4_get_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    get_alert(s, headers, id, true).await
}

/// TheHive 4 `POST /api/alert` (observables as `artifacts`).
#[utoipa::path(post, path = "/api/alert", tag = "intake",
    request_body(content = serde_json::Value, description = "A TheHive 4 alert"),
    responses((status = 201, body = serde_json::Value, description = "The alert, TheHive-shaped"), (status = 400, body = serde_json::Value)))]
async fn thehive4_alert(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    thehive_create(s, headers, body, true).await
}

/// TheHive 5 `POST /api/v1/alert/{id}/observable` (thehive4py's `alert.create_observable`:
/// `dataType`, `data` a value or a list, or a multipart file): observables added to the
/// event, for those who may send alerts and can see it; answers the list TheHive-shaped.
#[utoipa::path(post, path = "/alert/{id}/observable", tag = "intake",
    params(("id" = String, Path, description = "The alert's `_id` (the event id)")),
    request_body(content = serde_json::Value, description = "A TheHive observable: `dataType`, `data` (a value or a list), `message`, `tlp`, `ioc`, `tags`; or `multipart/form-data` with `_json` and the file in `attachment`"),
    responses((status = 201, body = serde_json::Value, description = "The observables, TheHive-shaped"), (status = 400, body = serde_json::Value), (status = 404, body = serde_json::Value)))]
async fn alert_observable(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    add_alert_observables(s, headers, id, body, true).await
}

/// TheHive 4 `POST /api/alert/{id}/artifact`: as `POST /api/v1/alert/{id}/observable`.
#[utoipa::path(post, path = "/api/alert/{id}/artifact", tag = "intake",
    params(("id" = String, Path, description = "The alert's `id` (the event id)")),
    request_body(content = serde_json::Value, description = "A TheHive 4 artifact: `dataType`, `data`, `message`"),
    responses((status = 201, body = serde_json::Value, description = "The artifact (a list when `data` is one), TheHive-shaped"), (status = 400, body = serde_json::Value), (status = 404, body = serde_json::Value)))]
async fn alert4_artifact(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    add_alert_observables(s, headers, id, body, false).await
}

// ---- cases: tickets in TheHive's terms ----

/// A case body as sent: JSON, or thehive4py's multipart (`_json` and file parts), with each
/// file part's (field name, file name, SHA-256 observable).
type FilePart = (String, Option<String>, firebreak_intake::Observable);

async fn read_thehive_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, Vec<FilePart>), Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let max = s.web.intake.max_message_bytes;
    if !ct.starts_with("multipart/form-data") {
        return match read_body(body, max).await {
            Ok(b) => Ok((b, Vec::new())),
            Err(e) => Err(thehive_shaped(e.into_response()).await),
        };
    }
    let bad = |m: String| thehive_error(StatusCode::BAD_REQUEST, "BadRequest", m);
    let boundary = multer::parse_boundary(ct).map_err(|_| bad("bad multipart body".into()))?;
    let mut mp = multer::Multipart::with_constraints(
        body.into_data_stream(),
        boundary,
        multipart_limits(max),
    );
    let mut json_part = None;
    let mut files = Vec::new();
    while let Some(f) = mp.next_field().await.map_err(|e| bad(e.to_string()))? {
        if f.name() == Some("_json") {
            json_part = Some(f.bytes().await.map_err(|e| bad(e.to_string()))?.to_vec());
            continue;
        }
        // a file of a file observable: its name and content hash are observables
        let key = f.name().unwrap_or_default().to_string();
        let file_name = f.file_name().map(str::to_string);
        let b = f.bytes().await.map_err(|e| bad(e.to_string()))?;
        files.push((key, file_name, firebreak_intake::thehive::file_sha256(&b)));
    }
    match json_part {
        Some(b) => Ok((b, files)),
        None => Err(bad("no _json part".into())),
    }
}

fn attribute_error(e: &firebreak_intake::ParseError) -> Response {
    thehive_error(
        StatusCode::BAD_REQUEST,
        "AttributeCheckingError",
        format!("{}: {}", e.field, e.message),
    )
}

fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn severity_of(n: i64) -> Severity {
    match n {
        i64::MIN..=1 => Severity::Low,
        2 => Severity::Medium,
        3 => Severity::High,
        _ => Severity::Critical,
    }
}

fn severity_number(s: Severity) -> i64 {
    match s {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// A ticket's status as a case's: open is `New`, being worked (or waiting for closure)
/// `InProgress`, closed `FalsePositive`, `TruePositive` (an incident) or `Other`.
fn case_status(v: &firebreak_domain::api::TicketView) -> &'static str {
    match v.status {
        TicketStatus::Open => "New",
        TicketStatus::InProgress | TicketStatus::PendingClosure => "InProgress",
        TicketStatus::Closed if v.false_positive => "FalsePositive",
        TicketStatus::Closed if v.incident => "TruePositive",
        TicketStatus::Closed => "Other",
    }
}

/// A ticket as a TheHive case; `v0`: for a TheHive 4 client (its TLP scale).
fn case_body(v: &firebreak_domain::api::TicketView, v0: bool) -> serde_json::Value {
    let status = case_status(v);
    let id = v.id.to_string();
    let number = v
        .number
        .rsplit('-')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_default();
    let mut body = firebreak_intake::thehive::case_response(&firebreak_intake::thehive::CaseView {
        id: &id,
        number,
        title: &v.title,
        description: &v.description,
        severity: severity_number(v.severity),
        tags: &v.tags,
        status,
        assignee: v.assignee.as_deref(),
        summary: v.resolution.as_deref(),
        created_by: &v.created_by,
        created_at_ms: millis(v.created_at),
        updated_at_ms: millis(v.updated_at),
        end_date_ms: (v.status == TicketStatus::Closed).then(|| millis(v.updated_at)),
    });
    if v0 {
        firebreak_intake::thehive::answer_for_v0(&mut body);
        // TheHive 4's case: `Open` or `Resolved`, the outcome in `resolutionStatus`, the
        // assignee as `owner`
        let resolution = match status {
            "FalsePositive" | "TruePositive" | "Other" => Some(status),
            _ => None,
        };
        body["status"] = json!(if resolution.is_some() {
            "Resolved"
        } else {
            "Open"
        });
        body["resolutionStatus"] = json!(resolution);
        body["impactStatus"] = json!(resolution.map(|r| match r {
            "TruePositive" => "WithImpact",
            "FalsePositive" => "NoImpact",
            _ => "NotApplicable",
        }));
        body["owner"] = json!(v.assignee.as_deref().unwrap_or(&v.created_by));
        body["_type"] = json!("case");
        body["metrics"] = json!({});
    }
    body
}

/// A case reference as TheHive clients give it: the case's `number` (`1`, TheHive's own form
/// for a case id), `~` and an id, the ticket's id, or its number (`SEC-000001`).
fn case_ref(s: &AppState, id: &str) -> String {
    let id = id.trim().trim_start_matches('~');
    match id.parse::<i64>() {
        Ok(n) if n > 0 && id.bytes().all(|b| b.is_ascii_digit()) => {
            firebreak_domain::api::format_number(&s.web.intake.ticket_prefix, n)
        }
        _ => id.to_string(),
    }
}

fn case_not_found(id: &str) -> Response {
    thehive_error(
        StatusCode::NOT_FOUND,
        "NotFoundError",
        format!("Case {id} not found"),
    )
}

fn case_app_error(id: &str, e: AppError) -> Response {
    match e {
        AppError::NotFound => case_not_found(id),
        other => thehive_app_error(other),
    }
}

/// The case's tags on the ticket: its own, then its TLP and PAP (`tlp:amber`...).
fn case_tags(
    input: &firebreak_intake::thehive::CaseInput,
    current: &[String],
) -> Option<Vec<String>> {
    if input.tags.is_none() && input.tlp.is_none() && input.pap.is_none() {
        return None;
    }
    let (tlp, pap) = firebreak_intake::thehive::tlp_pap_of(current);
    let kept_marks = |t: &&String| t.starts_with("tlp:") || t.starts_with("pap:");
    let mut tags: Vec<String> = match &input.tags {
        Some(t) => t.clone(),
        None => current.iter().filter(|t| !kept_marks(t)).cloned().collect(),
    };
    let had_tlp = current.iter().any(|t| t.starts_with("tlp:"));
    let had_pap = current.iter().any(|t| t.starts_with("pap:"));
    tags.retain(|t| !kept_marks(&t));
    tags.extend(firebreak_intake::thehive::tlp_pap_tags(
        input.tlp.or(had_tlp.then_some(tlp)),
        input.pap.or(had_pap.then_some(pap)),
    ));
    Some(tags)
}

/// Adds a case's observables (and its file parts') to its ticket; answers them TheHive-shaped.
async fn add_case_observables(
    s: &AppState,
    p: &Principal,
    ticket: &str,
    input: &firebreak_intake::thehive::ObservableInput,
    found: Vec<firebreak_intake::Observable>,
) -> Result<Vec<serde_json::Value>, AppError> {
    let mut out = Vec::with_capacity(found.len());
    for o in found {
        let added = s
            .app
            .add_ticket_observable(
                p,
                ticket,
                &firebreak_domain::event::AddObservable {
                    kind: Some(o.kind.as_str().to_string()),
                    value: o.value.clone(),
                    description: input.message.clone(),
                    ioc: input.ioc,
                },
            )
            .await?;
        out.push(firebreak_intake::thehive::observable_response(
            &added.id.to_string(),
            &firebreak_intake::Observable::new(o.kind, added.value.clone()),
            input,
            p.username(),
            millis(added.last_seen),
        ));
    }
    Ok(out)
}

async fn create_case(s: AppState, headers: HeaderMap, body: Body, v0: bool) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (bytes, _) = match read_thehive_body(&s, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut input = match firebreak_intake::thehive::parse_case(&bytes, true) {
        Ok(i) => i,
        Err(e) => return attribute_error(&e),
    };
    if v0 {
        input.tlp = input.tlp.map(firebreak_intake::thehive::tlp_from_v0);
    }
    let mut description = input.description.clone().unwrap_or_default();
    if let Some(summary) = input.summary.as_deref().filter(|s| !s.trim().is_empty()) {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str("Summary: ");
        description.push_str(summary);
    }
    let req = CreateTicketRequest {
        title: input.title.clone().unwrap_or_default(),
        description: Some(description),
        source: None,
        severity: input.severity.map(severity_of),
        priority: None,
        restricted: None,
        tags: case_tags(&input, &[]),
        assignee: input.assignee.clone(),
    };
    let view = match s.app.create_ticket(&p, &req).await {
        Ok(v) => v,
        Err(e) => return thehive_app_error(e),
    };
    let id = view.id.to_string();
    for o in &input.observables {
        let found = firebreak_intake::thehive::observables_of(o);
        if let Err(e) = add_case_observables(&s, &p, &id, o, found).await {
            // the case exists: say so, with what failed
            return thehive_error(
                StatusCode::BAD_REQUEST,
                "AttributeCheckingError",
                format!("case {id} was created, but an observable was refused: {e}"),
            );
        }
    }
    (StatusCode::CREATED, Json(case_body(&view, v0))).into_response()
}

async fn get_case(s: AppState, headers: HeaderMap, id: String, v0: bool) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match s.app.get_ticket(&p, &case_ref(&s, &id)).await {
        Ok(v) => (StatusCode::OK, Json(case_body(&v, v0))).into_response(),
        Err(e) => case_app_error(&id, e),
    }
}

/// Updates a case; answers the case after it (TheHive 4) or 204 (TheHive 5).
async fn update_case(
    s: AppState,
    headers: HeaderMap,
    id: String,
    body: Body,
    v5: bool,
) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (bytes, _) = match read_thehive_body(&s, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut input = match firebreak_intake::thehive::parse_case(&bytes, false) {
        Ok(i) => i,
        Err(e) => return attribute_error(&e),
    };
    if !v5 {
        input.tlp = input.tlp.map(firebreak_intake::thehive::tlp_from_v0);
    }
    let reference = case_ref(&s, &id);
    let current = match s.app.get_ticket(&p, &reference).await {
        Ok(v) => v,
        Err(e) => return case_app_error(&id, e),
    };
    // a case's status follows Firebreak's workflow (resolution, closure accepted by the owner):
    // a PATCH that would move it is refused, not acknowledged and dropped (thehive4py's
    // `case.close` then raises)
    if let Some(wanted) = input.extra.get("status").and_then(|v| v.as_str()) {
        let now = case_status(&current);
        if now != wanted {
            return thehive_error(
                StatusCode::BAD_REQUEST,
                "AttributeCheckingError",
                format!(
                    "status: a case's status follows the ticket's workflow: use POST /api/v1/tickets/{}/{{start, resolve, accept-closure, reopen, mark-false-positive}} (the case is {})",
                    current.number, now
                ),
            );
        }
    }
    // `assignee` is optional in TheHive: `null` unassigns the case. Its other fields are
    // required there: a `null` (Kibana's updateIncident sends them) leaves one as it is.
    let unassign = input.assignee.is_none()
        && serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("assignee").map(serde_json::Value::is_null))
            .unwrap_or(false);
    let req = UpdateTicketRequest {
        title: input.title.clone(),
        description: input.description.clone(),
        severity: input.severity.map(severity_of),
        tags: case_tags(&input, &current.tags),
        assignee: match &input.assignee {
            Some(a) => Some(Some(a.clone())),
            None if unassign => Some(None),
            None => None,
        },
        ..Default::default()
    };
    let changes = req.title.is_some()
        || req.description.is_some()
        || req.severity.is_some()
        || req.tags.is_some()
        || req.assignee.is_some();
    let view = if changes {
        match s.app.update_ticket(&p, &reference, &req).await {
            Ok(v) => v,
            Err(e) => return case_app_error(&id, e),
        }
    } else {
        current
    };
    // TheHive's `summary` (what was found): a note in the incident log
    if let Some(summary) = input.summary.as_deref().filter(|t| !t.trim().is_empty()) {
        let note = firebreak_domain::api::CreateLogEntryRequest {
            text: format!("Summary: {summary}"),
            kind: firebreak_domain::api::LogKind::Note,
        };
        if let Err(e) = s.app.add_log_entry(&p, &reference, &note).await {
            return case_app_error(&id, e);
        }
    }
    if v5 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::OK, Json(case_body(&view, true))).into_response()
    }
}

/// An observable body as sent (JSON, or thehive4py's multipart with the file part), with the
/// observables it stands for (a file part's name and SHA-256 among them).
async fn read_observable_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<
    (
        firebreak_intake::thehive::ObservableInput,
        Vec<firebreak_intake::Observable>,
    ),
    Response,
> {
    let (bytes, files) = read_thehive_body(s, headers, body).await?;
    let (input, mut found) = match firebreak_intake::thehive::parse_observable(&bytes) {
        Ok(v) => v,
        // a file observable sent as multipart has no `data`: its file part is the value
        Err(e) if e.field == "data" && !files.is_empty() => {
            match serde_json::from_slice::<firebreak_intake::thehive::ObservableInput>(&bytes) {
                Ok(input) => (input, Vec::new()),
                Err(x) => {
                    return Err(attribute_error(&firebreak_intake::ParseError::new(
                        "body",
                        x.to_string(),
                    )));
                }
            }
        }
        Err(e) => return Err(attribute_error(&e)),
    };
    // a multipart file part (thehive4py's `attachment`): its name and its SHA-256
    for (_, name, hash) in files {
        if let Some(n) = name.filter(|n| !n.trim().is_empty()) {
            found.push(firebreak_intake::Observable::new(
                firebreak_intake::ObservableKind::Filename,
                n.trim(),
            ));
        }
        found.push(hash);
    }
    Ok((input, found))
}

/// Observables answered as TheHive 4 answers an artifact (one object for one) or as TheHive 5
/// (a list).
fn observables_created(mut list: Vec<serde_json::Value>, v5: bool) -> Response {
    if !v5 && list.len() == 1 {
        return (StatusCode::CREATED, Json(list.remove(0))).into_response();
    }
    (StatusCode::CREATED, Json(json!(list))).into_response()
}

async fn add_observables(
    s: AppState,
    headers: HeaderMap,
    id: String,
    body: Body,
    v5: bool,
) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (input, found) = match read_observable_body(&s, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match add_case_observables(&s, &p, &case_ref(&s, &id), &input, found).await {
        Ok(list) => observables_created(list, v5),
        Err(e) => case_app_error(&id, e),
    }
}

/// Adds observables to an alert (a stored event that came through the alert API): for those
/// who may send alerts and can see it; answers them TheHive-shaped.
async fn add_alert_observables(
    s: AppState,
    headers: HeaderMap,
    id: String,
    body: Body,
    v5: bool,
) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let not_found = || {
        thehive_error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("Alert {id} not found"),
        )
    };
    match s.app.find_event(&p, &id).await {
        Ok(e) if stored_alert(&e, false).is_some() => {}
        Ok(_) | Err(AppError::NotFound) => return not_found(),
        Err(e) => return thehive_app_error(e),
    }
    let (input, found) = match read_observable_body(&s, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items: Vec<firebreak_domain::event::AddObservable> = found
        .iter()
        .map(|o| firebreak_domain::event::AddObservable {
            kind: Some(o.kind.as_str().to_string()),
            value: o.value.clone(),
            description: input.message.clone(),
            ioc: input.ioc,
        })
        .collect();
    let added = match s.app.add_event_observables(&p, &id, &items).await {
        Ok(a) => a,
        Err(AppError::NotFound) => return not_found(),
        Err(e) => return thehive_app_error(e),
    };
    let list = found
        .iter()
        .zip(added)
        .map(|(o, a)| {
            firebreak_intake::thehive::observable_response(
                &a.id.to_string(),
                &firebreak_intake::Observable::new(o.kind, a.value.clone()),
                &input,
                p.username(),
                millis(a.last_seen),
            )
        })
        .collect();
    observables_created(list, v5)
}

/// TheHive 5 `POST /api/v1/case` (Kibana's connector in case mode, thehive4py): a new ticket,
/// for users who may open tickets (help desk, responders, managers). TLP and PAP are kept as
/// the tags `tlp:<label>` and `pap:<label>`; `observables` are added to it.
#[utoipa::path(post, path = "/case", tag = "intake",
    request_body(content = serde_json::Value, description = "A TheHive 5 case: `title` (required), `description`, `severity` 1-4, `tlp`, `pap`, `tags`, `summary`, `assignee`, `observables`"),
    responses((status = 201, body = serde_json::Value, description = "The case (the ticket), TheHive-shaped"), (status = 400, body = serde_json::Value)))]
async fn case_create(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    create_case(s, headers, body, false).await
}

/// TheHive 5 `GET /api/v1/case/{id}`: a ticket (by id or number) as a case.
#[utoipa::path(get, path = "/case/{id}", tag = "intake",
    params(("id" = String, Path, description = "The case's `_id` (the ticket's id) or the ticket's number")),
    responses((status = 200, body = serde_json::Value, description = "The case, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    get_case(s, headers, id, false).await
}

/// TheHive 5 `PATCH /api/v1/case/{id}`: changes the ticket's title, description, severity,
/// tags, TLP/PAP or assignee (`"assignee": null` unassigns it); 204 as TheHive answers.
#[utoipa::path(patch, path = "/case/{id}", tag = "intake",
    params(("id" = String, Path, description = "The case's `_id` (the ticket's id) or the ticket's number")),
    request_body(content = serde_json::Value, description = "The fields to change (`\"assignee\": null` unassigns; `null` leaves any other field as it is)"),
    responses((status = 204, description = "Updated"), (status = 404, body = serde_json::Value)))]
async fn case_update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    update_case(s, headers, id, body, true).await
}

/// TheHive 5 `POST /api/v1/case/{id}/comment` (`{"message": ...}`): a note in the ticket's
/// incident log.
#[utoipa::path(post, path = "/case/{id}/comment", tag = "intake",
    params(("id" = String, Path, description = "The case's `_id` (the ticket's id) or the ticket's number")),
    request_body(content = serde_json::Value, description = "`{\"message\": \"...\"}`"),
    responses((status = 201, body = serde_json::Value, description = "The comment, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case_comment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (bytes, _) = match read_thehive_body(&s, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let message = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => match v.get("message") {
            Some(serde_json::Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(serde_json::Value::String(_)) => {
                return attribute_error(&firebreak_intake::ParseError::new(
                    "message",
                    "cannot be empty",
                ));
            }
            Some(_) => {
                return attribute_error(&firebreak_intake::ParseError::new(
                    "message",
                    "must be a string",
                ));
            }
            None => {
                return attribute_error(&firebreak_intake::ParseError::new("message", "missing"));
            }
        },
        Err(e) => {
            return attribute_error(&firebreak_intake::ParseError::new(
                "body",
                format!("not JSON: {e}"),
            ));
        }
    };
    let req = firebreak_domain::api::CreateLogEntryRequest {
        text: message.clone(),
        kind: firebreak_domain::api::LogKind::Note,
    };
    match s.app.add_log_entry(&p, &case_ref(&s, &id), &req).await {
        Ok(entry) => (
            StatusCode::CREATED,
            Json(json!({
                "_id": entry.id.to_string(),
                "_type": "Comment",
                "createdBy": entry.actor,
                "createdAt": millis(entry.at),
                "message": message,
                "isEdited": false,
                "extraData": {},
            })),
        )
            .into_response(),
        Err(e) => case_app_error(&id, e),
    }
}

/// TheHive 5 `POST /api/v1/case/{id}/observable` (`dataType`, `data` a value or a list, or a
/// multipart file): observables of the ticket; answers the list TheHive-shaped.
#[utoipa::path(post, path = "/case/{id}/observable", tag = "intake",
    params(("id" = String, Path, description = "The case's `_id` (the ticket's id) or the ticket's number")),
    request_body(content = serde_json::Value, description = "A TheHive observable: `dataType`, `data`, `message`, `tlp`, `ioc`, `tags`"),
    responses((status = 201, body = serde_json::Value, description = "The observables, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case_observable(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    add_observables(s, headers, id, body, true).await
}

/// TheHive 4 `POST /api/case` (Velociraptor's `Server.Alerts.TheHive.Case`, thehive4py 1.x):
/// as `POST /api/v1/case`.
#[utoipa::path(post, path = "/api/case", tag = "intake",
    request_body(content = serde_json::Value, description = "A TheHive 4 case"),
    responses((status = 201, body = serde_json::Value, description = "The case, TheHive-shaped"), (status = 400, body = serde_json::Value)))]
async fn case4_create(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    create_case(s, headers, body, true).await
}

/// TheHive 4 `GET /api/case/{id}`.
#[utoipa::path(get, path = "/api/case/{id}", tag = "intake",
    params(("id" = String, Path, description = "The case's `id` (the ticket's id) or the ticket's number")),
    responses((status = 200, body = serde_json::Value, description = "The case, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case4_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    get_case(s, headers, id, true).await
}

/// TheHive 4 `PATCH /api/case/{id}`: as TheHive 5's, answering the case.
#[utoipa::path(patch, path = "/api/case/{id}", tag = "intake",
    params(("id" = String, Path, description = "The case's `id` (the ticket's id) or the ticket's number")),
    request_body(content = serde_json::Value, description = "The fields to change"),
    responses((status = 200, body = serde_json::Value, description = "The case, TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case4_update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    update_case(s, headers, id, body, false).await
}

/// TheHive 4 `POST /api/case/{id}/artifact` (Velociraptor adds the client's FQDN so):
/// observables of the ticket.
#[utoipa::path(post, path = "/api/case/{id}/artifact", tag = "intake",
    params(("id" = String, Path, description = "The case's `id` (the ticket's id) or the ticket's number")),
    request_body(content = serde_json::Value, description = "A TheHive 4 artifact: `dataType`, `data`, `message`"),
    responses((status = 201, body = serde_json::Value, description = "The artifact (a list when `data` is one), TheHive-shaped"), (status = 404, body = serde_json::Value)))]
async fn case4_artifact(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    add_observables(s, headers, id, body, false).await
}
