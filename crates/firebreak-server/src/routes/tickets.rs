//! `/api/v1/tickets`: create, read, list, edit, the normal-path actions and the incident log.

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, Auth, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use firebreak_app::tickets::ListTickets;
use firebreak_domain::api::*;
use firebreak_domain::ticket::{Criticality, Severity, TicketAction, TicketStatus};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_ticket, list_tickets))
        .routes(routes!(get_ticket, update_ticket))
        .routes(routes!(start))
        .routes(routes!(resolve))
        .routes(routes!(accept_closure))
        .routes(routes!(reject_closure))
        .routes(routes!(reopen))
        .routes(routes!(mark_false_positive))
        .routes(routes!(add_log_entry, list_log))
        .routes(routes!(list_access, grant_access))
        .routes(routes!(revoke_access))
}

/// Open a ticket.
#[utoipa::path(post, path = "/tickets", tag = "tickets", request_body = CreateTicketRequest,
    responses(
        (status = 201, description = "Created", body = TicketView),
        (status = 400, description = "Malformed JSON", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 403, description = "Role may not open tickets", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Invalid field", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
async fn create_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateTicketRequest>,
) -> ApiResult<(StatusCode, HeaderMap, Json<TicketView>)> {
    let t = s.app.create_ticket(&p, &req).await?;
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tickets/{}", t.number)) {
        h.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, h, Json(t)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTicketsQuery {
    pub status: Option<TicketStatus>,
    pub criticality: Option<Criticality>,
    pub severity: Option<Severity>,
    /// Username.
    pub assignee: Option<String>,
    pub tag: Option<String>,
    /// Case-insensitive text in title or description.
    pub q: Option<String>,
    /// 1-500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List tickets, newest first.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(ListTicketsQuery),
    responses((status = 200, body = Page<TicketView>), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn list_tickets(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListTicketsQuery>,
) -> ApiResult<Json<Page<TicketView>>> {
    let q = ListTickets {
        status: q.status,
        criticality: q.criticality,
        severity: q.severity,
        assignee: q.assignee,
        tag: q.tag,
        q: q.q,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.app.list_tickets(&p, &q).await?))
}

/// Read a ticket by id or number (`SEC-000042`).
#[utoipa::path(get, path = "/tickets/{ref}", tag = "tickets",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn get_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.get_ticket(&p, &reference).await?))
}

/// Change a ticket's fields.
#[utoipa::path(patch, path = "/tickets/{ref}", tag = "tickets", request_body = UpdateTicketRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn update_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(req): ApiJson<UpdateTicketRequest>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.update_ticket(&p, &reference, &req).await?))
}

async fn act(
    s: &AppState,
    p: &firebreak_app::Principal,
    reference: &str,
    action: TicketAction,
    comment: Option<String>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(
        s.app
            .transition(p, reference, &action, comment.as_deref())
            .await?,
    ))
}

/// Take the ticket: `open` → `in_progress` (responder+).
#[utoipa::path(post, path = "/tickets/{ref}/start", tag = "workflow", request_body(content = Option<CommentRequest>),
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn start(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    OptionalJson(c): OptionalJson<CommentRequest>,
) -> ApiResult<Json<TicketView>> {
    act(&s, &p, &reference, TicketAction::Start, c.comment).await
}

/// Submit for closure: `in_progress` → `pending_closure`; requires `resolution` and `problem_category`.
#[utoipa::path(post, path = "/tickets/{ref}/resolve", tag = "workflow", request_body = ResolveRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn resolve(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(r): ApiJson<ResolveRequest>,
) -> ApiResult<Json<TicketView>> {
    act(
        &s,
        &p,
        &reference,
        TicketAction::Resolve {
            resolution: r.resolution,
            problem_category: r.problem_category,
        },
        None,
    )
    .await
}

/// The owner accepts the resolution: `pending_closure` → `closed`.
#[utoipa::path(post, path = "/tickets/{ref}/accept-closure", tag = "workflow", request_body(content = Option<CommentRequest>),
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn accept_closure(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    OptionalJson(c): OptionalJson<CommentRequest>,
) -> ApiResult<Json<TicketView>> {
    act(&s, &p, &reference, TicketAction::AcceptClosure, c.comment).await
}

/// The owner rejects the resolution: `pending_closure` → `in_progress`; requires `reason`.
#[utoipa::path(post, path = "/tickets/{ref}/reject-closure", tag = "workflow", request_body = RejectClosureRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn reject_closure(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(r): ApiJson<RejectClosureRequest>,
) -> ApiResult<Json<TicketView>> {
    // with `escalate: true` the report is checked first, so nothing half-happens
    let report = if r.escalate {
        let Some(report) = r.report else {
            return Err(crate::error::ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "report",
                "escalating needs an Escalation Report",
            ));
        };
        firebreak_domain::response::EscalateRequest {
            report: report.clone(),
        }
        .validate()
        .map_err(|e| crate::error::ApiError::from(firebreak_app::AppError::from(e)))?;
        Some(report)
    } else {
        None
    };
    let view = act(
        &s,
        &p,
        &reference,
        TicketAction::RejectClosure { reason: r.reason },
        None,
    )
    .await?;
    match report {
        Some(report) => Ok(Json(
            s.app.escalate_on_rejection(&p, &reference, &report).await?,
        )),
        None => Ok(view),
    }
}

/// Reopen a closed ticket: `closed` → `in_progress`; requires `reason` (responder+ or the owner).
#[utoipa::path(post, path = "/tickets/{ref}/reopen", tag = "workflow", request_body = ReasonRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn reopen(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(r): ApiJson<ReasonRequest>,
) -> ApiResult<Json<TicketView>> {
    act(
        &s,
        &p,
        &reference,
        TicketAction::Reopen { reason: r.reason },
        None,
    )
    .await
}

/// Close as a false positive; requires `reason` (helpdesk or responder+).
#[utoipa::path(post, path = "/tickets/{ref}/mark-false-positive", tag = "workflow", request_body = ReasonRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn mark_false_positive(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(r): ApiJson<ReasonRequest>,
) -> ApiResult<Json<TicketView>> {
    act(
        &s,
        &p,
        &reference,
        TicketAction::MarkFalsePositive { reason: r.reason },
        None,
    )
    .await
}

/// Write to the ticket's incident log (`note`, `action` or `evidence`).
#[utoipa::path(post, path = "/tickets/{ref}/log", tag = "incident log", request_body = CreateLogEntryRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 201, body = LogEntryView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn add_log_entry(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(r): ApiJson<CreateLogEntryRequest>,
) -> ApiResult<(StatusCode, Json<LogEntryView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.add_log_entry(&p, &reference, &r).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The ticket's timeline, oldest first: notes and every recorded change, with their chain hashes.
#[utoipa::path(get, path = "/tickets/{ref}/log", tag = "incident log",
    params(("ref" = String, Path, description = "Ticket id or number"), PageQuery),
    responses((status = 200, body = Page<LogEntryView>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn list_log(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<LogEntryView>>> {
    Ok(Json(
        s.app
            .list_log(&p, &reference, q.limit, q.cursor.as_deref())
            .await?,
    ))
}

/// One user on a restricted ticket's access list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AccessGrantView {
    pub username: String,
    pub granted_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: time::OffsetDateTime,
}

fn access_page(grants: Vec<firebreak_store::AccessGrant>) -> Json<Page<AccessGrantView>> {
    Json(Page {
        items: grants
            .into_iter()
            .map(|g| AccessGrantView {
                username: g.username,
                granted_by: g.granted_by,
                granted_at: g.granted_at,
            })
            .collect(),
        next_cursor: None,
    })
}

/// The ticket's access list: who may see it although it is restricted.
#[utoipa::path(get, path = "/tickets/{ref}/access", tag = "tickets",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<AccessGrantView>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn list_access(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<AccessGrantView>>> {
    Ok(access_page(s.app.list_access(&p, &reference).await?))
}

/// Grant a user access to the ticket (admin, manager or the owner); logged.
#[utoipa::path(post, path = "/tickets/{ref}/access", tag = "tickets", request_body = AccessRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<AccessGrantView>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn grant_access(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(req): ApiJson<AccessRequest>,
) -> ApiResult<Json<Page<AccessGrantView>>> {
    Ok(access_page(s.app.grant_access(&p, &reference, &req).await?))
}

/// Revoke a user's access to the ticket; logged.
#[utoipa::path(delete, path = "/tickets/{ref}/access/{username}", tag = "tickets",
    params(("ref" = String, Path, description = "Ticket id or number"), ("username" = String, Path, description = "User to remove")),
    responses((status = 200, body = Page<AccessGrantView>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn revoke_access(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((reference, username)): Path<(String, String)>,
) -> ApiResult<Json<Page<AccessGrantView>>> {
    Ok(access_page(
        s.app.revoke_access(&p, &reference, &username).await?,
    ))
}
