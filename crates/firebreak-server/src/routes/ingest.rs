//! Intake endpoints, each in the shape its senders already speak: Alertmanager webhooks,
//! generic JSON webhooks per configured source (optionally HMAC-signed), NDJSON bulk (EVE,
//! Wazuh, CEF, LEEF, syslog lines), email, TheHive's alert API and Splunk's HTTP Event
//! Collector. A 2xx means every event it reports is committed.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, Auth};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firebreak_app::intake::{LineFormat, LineIngest, MAX_LINE};
use firebreak_app::{AppError, Principal};
use firebreak_domain::event::IngestSummary;
use firebreak_intake::hec::{HecCode, HecError};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes under `/api/v1`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alertmanager))
        .routes(routes!(webhook))
        .routes(routes!(ndjson))
        .routes(routes!(eml))
}

/// Routes at the root: Splunk's `/services/collector...`.
pub fn root_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hec_collector))
        .routes(routes!(hec_event))
        .routes(routes!(hec_event_v1))
        .routes(routes!(hec_raw))
        .routes(routes!(hec_raw_v1))
        .routes(routes!(hec_health))
        .routes(routes!(hec_health_v1))
}

/// Multipart bodies: no field (and no whole body) beyond `max` bytes.
pub(crate) fn multipart_limits(max: usize) -> multer::Constraints {
    let max = max as u64;
    multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max + 64 * 1024)
            .per_field(max),
    )
}

/// Reads a whole body up to `max` bytes (413 beyond).
pub(crate) async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {max} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    // a UTF-8 byte order mark (Windows tools write one) is not part of the content
    if out.starts_with(BOM) {
        out.drain(..BOM.len());
    }
    Ok(out)
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn parse_error(e: firebreak_intake::ParseError) -> ApiError {
    ApiError::validation(vec![firebreak_domain::FieldError::new(e.field, e.message)])
}

async fn ingest_all(
    s: &AppState,
    p: &Principal,
    events: Vec<firebreak_intake::NormalizedEvent>,
) -> ApiResult<IngestSummary> {
    let mut summary = IngestSummary::default();
    s.app.ingest(p, events, &mut summary).await?;
    Ok(summary)
}

/// Prometheus Alertmanager webhook (`webhook_configs`, payload version 4). Firing alerts become
/// events, deduplicated by the alert's fingerprint; `resolved` closes the matching event.
#[utoipa::path(post, path = "/ingest/alertmanager", tag = "intake",
    request_body(content = serde_json::Value, description = "Alertmanager webhook payload, version 4"),
    responses((status = 200, body = IngestSummary), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn alertmanager(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestSummary>> {
    s.app.check_reporter(&p).await?;
    let (_slot, body) = s.web.intake.admit(&headers, body).await?;
    let bytes = read_body(body, s.web.intake.max_message_bytes).await?;
    let events = firebreak_intake::alertmanager::parse(&bytes).map_err(parse_error)?;
    Ok(Json(ingest_all(&s, &p, events).await?))
}

/// A generic JSON webhook (a JSON object, an array of them, or NDJSON): a source configured
/// in `[intake.sources.NAME]` is read with its field mapping; any other name with the generic
/// mapping (title, severity, host and addresses from the usual keys). A source configured with a secret requires an
/// HMAC-SHA256 signature of the body; with a `user` as well, the signature alone
/// authenticates the request.
#[utoipa::path(post, path = "/ingest/webhook/{source}", tag = "intake",
    params(("source" = String, Path, description = "The source's name")),
    request_body(content = serde_json::Value, description = "The source's own JSON"),
    responses((status = 200, body = IngestSummary), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn webhook(
    State(s): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> ApiResult<Json<IngestSummary>> {
    if source.is_empty()
        || source.len() > 64
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "source",
            "letters, digits, '-', '_' and '.', at most 64",
        ));
    }
    let configured = s.web.intake.sources.get(&source).cloned();
    let (mut parts, body) = req.into_parts();
    let bearer =
        <Auth as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &s)
            .await;
    let signed = configured.as_ref().is_some_and(|c| c.secret.is_some());
    // without a signature to check, nothing is read before the caller is known
    let bearer = match bearer {
        Err(e) if !signed => return Err(e),
        other => other,
    };
    let (_slot, body) = s.web.intake.admit(&parts.headers, body).await?;
    let bytes = read_body(body, s.web.intake.max_message_bytes).await?;
    let p = match (&configured, bearer) {
        (Some(src), bearer) if src.secret.is_some() => {
            let sig = headers
                .get(src.signature_header.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let key = src.secret.as_deref().unwrap_or_default();
            if !firebreak_intake::webhook::verify_hmac_sha256(key, &bytes, sig) {
                tracing::info!(source, "webhook signature missing or wrong");
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_signature",
                    format!(
                        "missing or wrong HMAC-SHA256 signature in {}",
                        src.signature_header
                    ),
                ));
            }
            match (bearer, &src.user) {
                (Ok(Auth(p)), _) => p,
                (Err(_), Some(user)) => s.app.principal_for_user(user).await?,
                (Err(e), None) => return Err(e),
            }
        }
        (_, Ok(Auth(p))) => p,
        (_, Err(e)) => return Err(e),
    };
    s.app.check_reporter(&p).await?;
    let generic;
    let mapping = match &configured {
        Some(src) => &src.mapping,
        None => {
            generic = firebreak_intake::webhook::CompiledMapping::generic();
            &generic
        }
    };
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("ndjson") || ct.contains("jsonl"));
    let mut summary = IngestSummary::default();
    let mut events = Vec::new();
    let refuse = |summary: &mut IngestSummary, line: u64, e: firebreak_intake::ParseError| {
        summary.refused += 1;
        if summary.errors.len() < firebreak_app::intake::MAX_LISTED_ERRORS {
            summary.errors.push(firebreak_domain::event::LineError {
                line,
                field: e.field,
                message: e.message,
            });
        }
    };
    // NDJSON (a record per line) and a JSON array (a record per item) report a bad record by
    // its number and take the others; a single object is all or nothing
    let per_record = if ndjson {
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match firebreak_intake::webhook::parse(line, &source, mapping) {
                Ok(evs) => events.extend(evs),
                Err(e) => refuse(&mut summary, i as u64 + 1, e),
            }
        }
        true
    } else {
        let records = firebreak_intake::webhook::parse_records(&bytes, &source, mapping)
            .map_err(parse_error)?;
        if records.len() == 1 {
            events = records
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(parse_error)?;
            false
        } else {
            for (i, r) in records.into_iter().enumerate() {
                match r {
                    Ok(e) => events.push(e),
                    Err(e) => refuse(&mut summary, i as u64 + 1, e),
                }
            }
            true
        }
    };
    if per_record && events.is_empty() && !summary.errors.is_empty() {
        return Err(ApiError::validation(
            summary
                .errors
                .iter()
                .map(|e| {
                    firebreak_domain::FieldError::new(
                        format!("line {}: {}", e.line, e.field),
                        e.message.clone(),
                    )
                })
                .collect(),
        ));
    }
    s.app.ingest(&p, events, &mut summary).await?;
    Ok(Json(summary))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NdjsonQuery {
    /// `eve`, `wazuh`, `ndjson`, `cef`, `leef` or `syslog`.
    pub format: String,
    /// EVE event types that become events (comma-separated; default `alert,anomaly`).
    pub eve_types: Option<String>,
    /// The source name for `ndjson` records.
    pub source: Option<String>,
}

/// Bulk intake, one record per line (Suricata `eve.json`, Wazuh `alerts.json`, CEF, LEEF or
/// syslog lines). The body is streamed and committed in batches; a bad line is reported by its
/// number and the others go in.
#[utoipa::path(post, path = "/ingest/ndjson", tag = "intake", params(NdjsonQuery),
    request_body(description = "One record per line", content((String = "application/x-ndjson"), (String = "text/plain"))),
    responses((status = 200, body = IngestSummary), (status = 400, description = "An unknown or missing `format`, or unknown `eve_types`", body = ErrorEnvelope), (status = 413, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn ndjson(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<NdjsonQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestSummary>> {
    s.app.check_reporter(&p).await?;
    let format = LineFormat::from_name(&q.format, q.eve_types.as_deref(), q.source.as_deref())
        .map_err(|m| {
            // the event types' own errors name them
            let field =
                if q.eve_types.is_some() && LineFormat::from_name(&q.format, None, None).is_ok() {
                    "eve_types"
                } else {
                    "format"
                };
            // a query parameter's error, as a missing `format` is
            ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, m)
        })?;
    let (_slot, body) = s.web.intake.admit(&headers, body).await?;
    let mut lines = LineIngest::new(&s.app, &p, format);
    if let Err(mut e) = stream_lines(body, s.web.intake.max_body_bytes, &mut lines).await {
        // the answer comes after the batch in flight settled, and says what is in
        let _ = lines.settle().await;
        e.message = format!(
            "{}; lines 1 to {} are committed",
            e.message, lines.committed_line
        );
        return Err(e);
    }
    lines.flush().await?;
    Ok(Json(lines.summary))
}

/// Feeds a body to `lines`, line by line, without holding more than one line (and one batch)
/// in memory. A line longer than [`MAX_LINE`] is reported and skipped.
async fn stream_lines(body: Body, max: u64, lines: &mut LineIngest<'_>) -> ApiResult<()> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut total: u64 = 0;
    let mut overlong = false;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        total += chunk.len() as u64;
        if total > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {max} bytes"),
            ));
        }
        let mut rest: &[u8] = &chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(pos);
            if overlong {
                overlong = false;
                // the overlong line was already reported; its tail is dropped
                buf.clear();
            } else if buf.is_empty() {
                lines.push(line).await?;
            } else {
                buf.extend_from_slice(line);
                let whole = std::mem::take(&mut buf);
                lines.push(&whole).await?;
            }
            rest = &tail[1..];
        }
        if !overlong {
            buf.extend_from_slice(rest);
            if buf.len() > MAX_LINE {
                // report it as one line now, then skip to the next newline
                let mut marker = vec![b'x'; MAX_LINE + 1];
                marker[0] = b'{';
                lines.push(&marker).await?;
                buf.clear();
                overlong = true;
            }
        }
    }
    if !buf.is_empty() && !overlong {
        let whole = std::mem::take(&mut buf);
        lines.push(&whole).await?;
    }
    Ok(())
}

/// An email (`message/rfc822`, the `.eml` file as the body, or `multipart/form-data` with it in
/// `file`). A subject naming an existing ticket (`[SEC-000042]`) captures it as a
/// communication on that ticket; any other mail is a reported event.
#[utoipa::path(post, path = "/ingest/eml", tag = "intake",
    request_body(description = "The message (RFC 5322)", content((String = "message/rfc822"), (String = "text/plain"))),
    responses((status = 201, body = serde_json::Value), (status = 422, body = ErrorEnvelope)))]
async fn eml(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.app.check_reporter(&p).await?;
    let (_slot, body) = s.web.intake.admit(&headers, body).await?;
    let max = s.web.intake.max_message_bytes;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let raw = if ct.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(ct).map_err(|e| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad_multipart",
                "body",
                e.to_string(),
            )
        })?;
        let mut mp = multer::Multipart::with_constraints(
            body.into_data_stream(),
            boundary,
            multipart_limits(max),
        );
        let mut found = None;
        while let Some(field) = mp.next_field().await.map_err(|e| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad_multipart",
                "body",
                e.to_string(),
            )
        })? {
            if field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|e| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "bad_multipart",
                        "file",
                        e.to_string(),
                    )
                })?;
                if bytes.len() > max {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the message exceeds {max} bytes"),
                    ));
                }
                found = Some(bytes.to_vec());
            }
        }
        found.ok_or_else(|| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "file",
                "send the message in the multipart field `file`",
            )
        })?
    } else {
        read_body(body, max).await?
    };
    let out = s.app.capture_email(&p, &raw, false).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(out).unwrap_or_default()),
    ))
}

// ---- Splunk HTTP Event Collector ----

/// Splunk's shape for every answer under `/services/collector`: the errors raised before a
/// HEC handler runs (a body that cannot be decompressed or read, one too large, a method or
/// path HEC does not have, the intake gate's 503) come out of the other layers in Firebreak's
/// envelope, and HEC clients read `{"text", "code"}`. Splunk's codes: 6 invalid data format,
/// 9 server busy, 14 ACK disabled (indexer acknowledgement is not offered: a 200 means
/// committed); a path HEC lacks is Splunk's 404 `{"text": ..., "code": 404}`, a method it
/// lacks 405 (with `Allow`).
pub async fn hec_shape(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/services/collector") {
        return next.run(req).await;
    }
    if path.trim_end_matches('/').ends_with("/ack") {
        return hec_response(HecCode::AckDisabled, None);
    }
    let res = next.run(req).await;
    let status = res.status();
    if status.is_success() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return hec_response(HecCode::InternalServerError, None);
    };
    let envelope = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.get("message")).cloned());
    let Some(message) = envelope else {
        // a HEC handler's own answer
        return Response::from_parts(parts, Body::from(bytes));
    };
    let (status, text, code) = match status {
        StatusCode::NOT_FOUND => (
            status,
            json!("The requested URL was not found on this server."),
            404,
        ),
        StatusCode::METHOD_NOT_ALLOWED => (status, json!("Method Not Allowed"), 405),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!(HecCode::ServerBusy.text()),
            HecCode::ServerBusy.code(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (status, message, HecCode::InvalidDataFormat.code()),
        s if s.is_server_error() => (
            s,
            json!(HecCode::InternalServerError.text()),
            HecCode::InternalServerError.code(),
        ),
        // 400 (a body that cannot be read or decompressed), 415 (a coding not offered)
        _ => (
            StatusCode::BAD_REQUEST,
            json!(HecCode::InvalidDataFormat.text()),
            HecCode::InvalidDataFormat.code(),
        ),
    };
    let mut out = (status, Json(json!({"text": text, "code": code}))).into_response();
    if let Some(v) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, v.clone());
    }
    if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, v.clone());
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        out.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    out
}

fn hec_response(code: HecCode, invalid_event: Option<usize>) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({"text": code.text(), "code": code.code()});
    if let Some(n) = invalid_event {
        body["invalid-event-number"] = json!(n);
    }
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    r
}

fn hec_err(e: &HecError) -> Response {
    let mut r = hec_response(e.code, e.event_index);
    if let Ok(v) = serde_json::to_vec(&e.response_body()) {
        *r.body_mut() = Body::from(v);
    }
    r
}

/// The password of `Authorization: Basic base64(user:token)` (Splunk's `curl -u x:<token>`).
pub(crate) fn basic_password(v: &str) -> Option<String> {
    use base64::Engine;
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.trim().to_string()).filter(|p| !p.is_empty())
}

/// A data channel, when the request names one (`X-Splunk-Request-Channel` or `?channel=`),
/// must be a GUID (Splunk's code 11 otherwise).
fn hec_channel_ok(headers: &HeaderMap, query: Option<&str>) -> bool {
    let from_header = headers
        .get("x-splunk-request-channel")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "channel")
            .map(|(_, v)| v.into_owned())
    });
    [from_header, from_query]
        .into_iter()
        .flatten()
        .all(|c| uuid::Uuid::parse_str(c.trim()).is_ok())
}

/// The HEC token: `Authorization: Splunk <t>`, `Bearer <t>` or `Basic base64(x:<t>)`, or
/// `?token=` when the header is absent and the operator allowed it (Splunk's query-string
/// token, `allowQueryStringAuth`); otherwise a query-string token counts as no token.
async fn hec_auth(
    s: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, Response> {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("Splunk ")
                .or_else(|| v.strip_prefix("splunk "))
                .or_else(|| v.strip_prefix("Bearer "))
                .or_else(|| v.strip_prefix("bearer "))
                .map(|t| t.trim().to_string())
                .or_else(|| basic_password(v))
        });
    if !hec_channel_ok(headers, query) {
        return Err(hec_response(HecCode::InvalidDataChannel, None));
    }
    let token = match header_token {
        Some(Some(t)) => t,
        Some(None) => return Err(hec_response(HecCode::InvalidAuthorization, None)),
        None => match query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        }) {
            Some(t) if s.web.intake.hec_query_token => t,
            // as Splunk answers a query-string token its `allowQueryStringAuth` is off for
            Some(_) => {
                return Err(hec_response(
                    HecCode::QueryStringAuthorizationDisabled,
                    None,
                ));
            }
            None => return Err(hec_response(HecCode::TokenRequired, None)),
        },
    };
    let p = match s.app.authenticate(&token).await {
        Ok(p) => p,
        Err(AppError::Unauthenticated) => return Err(hec_response(HecCode::InvalidToken, None)),
        Err(AppError::Unavailable(_)) => return Err(hec_response(HecCode::ServerBusy, None)),
        Err(_) => return Err(hec_response(HecCode::InternalServerError, None)),
    };
    if !firebreak_app::App::may_report(&p) {
        let _ = s.app.check_reporter(&p).await;
        return Err(hec_response(HecCode::TokenDisabled, None));
    }
    Ok(p)
}

fn hec_app_error(e: AppError) -> Response {
    match e {
        AppError::Unavailable(_) => hec_response(HecCode::ServerBusy, None),
        AppError::StorageFull => hec_response(HecCode::ServerBusy, None),
        AppError::Forbidden(_) | AppError::Unauthenticated => {
            hec_response(HecCode::TokenDisabled, None)
        }
        other => {
            tracing::error!(error = %other, "HEC intake failed");
            hec_response(HecCode::InternalServerError, None)
        }
    }
}

/// The EVE record types a HEC request takes for a Suricata sourcetype: `?eve_types=`, else
/// the NDJSON endpoint's default (`alert,anomaly`): a forwarder that ships a sensor's whole
/// `eve.json` (flows, DNS, stats: thousands a second) must not flood the help desk's queue.
/// What is left out is counted (`firebreak_hec_eve_records_total{outcome="skipped"}`), never
/// dropped unseen. `None` for a list that is not one (answered with code 6).
fn hec_eve_types(query: Option<&str>) -> Option<firebreak_intake::eve::EveTypes> {
    let list = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "eve_types")
            .map(|(_, v)| v.into_owned())
    });
    match list {
        None => Some(firebreak_intake::eve::EveTypes::default()),
        Some(l) => firebreak_intake::eve::EveTypes::parse(&l)
            .inspect_err(
                |e| tracing::debug!(error = %e.message, "HEC request with a bad eve_types"),
            )
            .ok(),
    }
}

/// `firebreak_hec_eve_records_total{event_type, outcome="stored"|"skipped"}`: the EVE records
/// HEC requests carried, stored as events or left out by `eve_types` (never silently).
fn count_eve_records(tally: &firebreak_intake::hec::EveTally) {
    for (outcome, map) in [("stored", &tally.stored), ("skipped", &tally.skipped)] {
        for (event_type, n) in map {
            metrics::counter!(
                "firebreak_hec_eve_records_total",
                "event_type" => *event_type,
                "outcome" => outcome
            )
            .increment(*n);
        }
    }
}

async fn hec_events(s: AppState, headers: HeaderMap, uri: axum::http::Uri, body: Body) -> Response {
    let p = match hec_auth(&s, &headers, uri.query()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(eve_types) = hec_eve_types(uri.query()) else {
        return hec_response(HecCode::InvalidDataFormat, None);
    };
    let Ok((_slot, body)) = s.web.intake.admit(&headers, body).await else {
        return hec_response(HecCode::ServerBusy, None);
    };
    let bytes = match read_body(body, s.web.intake.max_message_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return hec_response(HecCode::NoData, None);
    }
    let mut events = Vec::new();
    let mut failure = None;
    let mut tally = firebreak_intake::hec::EveTally::default();
    for item in firebreak_intake::hec::split_events(&bytes) {
        let parsed = item.and_then(|(index, raw)| {
            let ev = firebreak_intake::hec::HecEvent::parse(raw, index)?;
            firebreak_intake::hec::to_events_with(&ev, raw.get(), &eve_types, &mut tally)
                .map_err(|e| HecError::new(HecCode::InvalidDataFormat, Some(index), e.message))
        });
        match parsed {
            Ok(evs) => events.extend(evs),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // as Splunk does: the events before an invalid one are indexed
    let mut summary = IngestSummary::default();
    if let Err(e) = s.app.ingest(&p, events, &mut summary).await {
        return hec_app_error(e);
    }
    count_eve_records(&tally);
    match failure {
        Some(e) => hec_err(&e),
        None => hec_response(HecCode::Success, None),
    }
}

/// Splunk HEC `POST /services/collector` (same as `/services/collector/event`).
#[utoipa::path(post, path = "/services/collector", tag = "intake",
    request_body(content = String, description = "Concatenated HEC event objects"),
    responses((status = 200, body = serde_json::Value, description = "`{\"text\":\"Success\",\"code\":0}`"), (status = 400, body = serde_json::Value), (status = 401, body = serde_json::Value), (status = 403, body = serde_json::Value), (status = 503, body = serde_json::Value)))]
async fn hec_collector(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    hec_events(s, headers, uri, body).await
}

/// Splunk HEC event endpoint: concatenated JSON objects `{time, host, source, sourcetype,
/// index, event, fields}`; `sourcetype` picks the adapter (Suricata EVE, Wazuh, or generic).
#[utoipa::path(post, path = "/services/collector/event", tag = "intake",
    request_body(content = String, description = "Concatenated HEC event objects"),
    responses((status = 200, body = serde_json::Value, description = "`{\"text\":\"Success\",\"code\":0}`"), (status = 400, body = serde_json::Value), (status = 401, body = serde_json::Value), (status = 403, body = serde_json::Value), (status = 503, body = serde_json::Value)))]
async fn hec_event(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    hec_events(s, headers, uri, body).await
}

/// Splunk HEC event endpoint, versioned path.
#[utoipa::path(post, path = "/services/collector/event/1.0", tag = "intake",
    request_body(content = String, description = "Concatenated HEC event objects"),
    responses((status = 200, body = serde_json::Value, description = "`{\"text\":\"Success\",\"code\":0}`")))]
async fn hec_event_v1(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    hec_events(s, headers, uri, body).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "accepted as Splunk clients send them; Firebreak has no indexes or ack channels"
)]
pub struct RawQuery {
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub channel: Option<String>,
    pub token: Option<String>,
    /// EVE record types to take for a Suricata sourcetype (`alert,anomaly`); every type when
    /// absent.
    pub eve_types: Option<String>,
}

async fn hec_raw_impl(
    s: AppState,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    let p = match hec_auth(&s, &headers, uri.query()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q: RawQuery = match serde_urlencoded::from_str(uri.query().unwrap_or("")) {
        Ok(q) => q,
        Err(_) => return hec_response(HecCode::InvalidDataFormat, None),
    };
    let Some(eve_types) = hec_eve_types(uri.query()) else {
        return hec_response(HecCode::InvalidDataFormat, None);
    };
    let Ok((_slot, body)) = s.web.intake.admit(&headers, body).await else {
        return hec_response(HecCode::ServerBusy, None);
    };
    let bytes = match read_body(body, s.web.intake.max_message_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut tally = firebreak_intake::hec::EveTally::default();
    let events = match firebreak_intake::hec::raw_to_events_with(
        &bytes,
        q.host.as_deref(),
        q.source.as_deref(),
        q.sourcetype.as_deref(),
        &eve_types,
        &mut tally,
    ) {
        Ok(e) => e,
        Err(e) => return hec_err(&e),
    };
    let mut summary = IngestSummary::default();
    if let Err(e) = s.app.ingest(&p, events, &mut summary).await {
        return hec_app_error(e);
    }
    count_eve_records(&tally);
    hec_response(HecCode::Success, None)
}

/// Splunk HEC raw endpoint: one event per line of text.
#[utoipa::path(post, path = "/services/collector/raw", tag = "intake", params(RawQuery),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = serde_json::Value, description = "`{\"text\":\"Success\",\"code\":0}`")))]
async fn hec_raw(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    hec_raw_impl(s, headers, uri, body).await
}

/// Splunk HEC raw endpoint, versioned path.
#[utoipa::path(post, path = "/services/collector/raw/1.0", tag = "intake", params(RawQuery),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = serde_json::Value, description = "`{\"text\":\"Success\",\"code\":0}`")))]
async fn hec_raw_v1(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    hec_raw_impl(s, headers, uri, body).await
}

async fn hec_health_impl(s: AppState) -> Response {
    match s.app.ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"text": "HEC is healthy", "code": 17})),
        )
            .into_response(),
        Err(_) => hec_response(HecCode::ServerBusy, None),
    }
}

/// Splunk HEC health check (`{"text":"HEC is healthy","code":17}`).
#[utoipa::path(get, path = "/services/collector/health", tag = "intake",
    responses((status = 200, body = serde_json::Value), (status = 503, body = serde_json::Value)))]
async fn hec_health(State(s): State<AppState>) -> Response {
    hec_health_impl(s).await
}

/// Splunk HEC health check, versioned path.
#[utoipa::path(get, path = "/services/collector/health/1.0", tag = "intake",
    responses((status = 200, body = serde_json::Value), (status = 503, body = serde_json::Value)))]
async fn hec_health_v1(State(s): State<AppState>) -> Response {
    hec_health_impl(s).await
}
