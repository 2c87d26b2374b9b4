//! `/api/v1/events` (the help desk's queue and its actions), suppression rules, observables and
//! the communications captured on tickets.

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, Auth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use firebreak_app::helpdesk::{ListEvents, ListObservables};
use firebreak_domain::api::{Page, TicketView};
use firebreak_domain::event::*;
use firebreak_domain::ticket::{EventStatus, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_event, list_events))
        .routes(routes!(event_counts))
        .routes(routes!(get_event))
        .routes(routes!(dismiss_event))
        .routes(routes!(dismiss_events))
        .routes(routes!(ticket_from_event))
        .routes(routes!(ticket_from_events))
        .routes(routes!(merge_event))
        .routes(routes!(merge_events))
        .routes(routes!(event_observables))
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(list_observables))
        .routes(routes!(get_observable))
        .routes(routes!(add_ticket_observable, ticket_observables))
        .routes(routes!(add_communication, list_communications))
        .routes(routes!(ticket_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Without it, every status.
    pub status: Option<EventStatus>,
    /// The source name (`suricata`, a webhook source...).
    pub source: Option<String>,
    pub severity: Option<Severity>,
    /// Text in the title.
    pub q: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Report an event (the report form): by a person, or for one (a phone call to the help desk).
#[utoipa::path(post, path = "/events", tag = "events", request_body = ReportEvent,
    responses((status = 201, body = Event), (status = 422, body = ErrorEnvelope)))]
async fn report_event(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<ReportEvent>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Event>)> {
    let e = s.app.report_event(&p, &body).await?;
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/events/{}", e.id)) {
        h.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, h, Json(e)))
}

/// Events, newest first. The team sees every event; reporters see the ones they submitted.
#[utoipa::path(get, path = "/events", tag = "events", params(ListEventsQuery),
    responses((status = 200, body = Page<Event>)))]
async fn list_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListEventsQuery>,
) -> ApiResult<Json<Page<Event>>> {
    let q = ListEvents {
        status: q.status.map(|x| x.as_str().to_string()),
        source: q.source,
        severity: q.severity.map(|x| x.as_str().to_string()),
        q: q.q,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.app.list_events(&p, &q).await?))
}

/// How many events have each status.
#[utoipa::path(get, path = "/events/counts", tag = "events",
    responses((status = 200, body = BTreeMap<String, i64>)))]
async fn event_counts(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<BTreeMap<String, i64>>> {
    Ok(Json(s.app.event_counts(&p).await?))
}

/// One event, with its raw payload.
#[utoipa::path(get, path = "/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = Event), (status = 404, body = ErrorEnvelope)))]
async fn get_event(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Event>> {
    Ok(Json(s.app.find_event(&p, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonOnly {
    pub reason: String,
}

fn single(outcome: BulkOutcome) -> ApiResult<Json<BulkOutcome>> {
    if let Some(f) = outcome.failed.first() {
        return Err(crate::error::ApiError::new(
            StatusCode::CONFLICT,
            &f.code,
            f.message.clone(),
        ));
    }
    Ok(Json(outcome))
}

/// Dismiss an event as a false positive (the reason is logged).
#[utoipa::path(post, path = "/events/{id}/dismiss", tag = "events", request_body = ReasonOnly,
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = BulkOutcome), (status = 409, body = ErrorEnvelope)))]
async fn dismiss_event(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonOnly>,
) -> ApiResult<Json<BulkOutcome>> {
    let e = s.app.find_event(&p, &id).await?;
    single(
        s.app
            .dismiss_events(
                &p,
                &DismissEvents {
                    events: vec![e.id],
                    reason: body.reason,
                },
            )
            .await?,
    )
}

/// Dismiss several events as false positives; each is done or reported on its own.
#[utoipa::path(post, path = "/events/dismiss", tag = "events", request_body = DismissEvents,
    responses((status = 200, body = BulkOutcome)))]
async fn dismiss_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<DismissEvents>,
) -> ApiResult<Json<BulkOutcome>> {
    Ok(Json(s.app.dismiss_events(&p, &body).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketFromEvent {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub priority: Option<firebreak_domain::ticket::Priority>,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn created(t: TicketView) -> (StatusCode, HeaderMap, Json<TicketView>) {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tickets/{}", t.number)) {
        h.insert(header::LOCATION, v);
    }
    (StatusCode::CREATED, h, Json(t))
}

/// Open a ticket from this event.
#[utoipa::path(post, path = "/events/{id}/ticket", tag = "events", request_body = Option<TicketFromEvent>,
    params(("id" = String, Path, description = "Event id")),
    responses((status = 201, body = TicketView), (status = 409, body = ErrorEnvelope)))]
async fn ticket_from_event(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    crate::extract::OptionalJson(body): crate::extract::OptionalJson<TicketFromEvent>,
) -> ApiResult<(StatusCode, HeaderMap, Json<TicketView>)> {
    let e = s.app.find_event(&p, &id).await?;
    let b = body;
    let req = TicketFromEvents {
        events: vec![e.id],
        title: b.title,
        description: b.description,
        severity: b.severity,
        priority: b.priority,
        restricted: b.restricted,
        tags: b.tags,
    };
    Ok(created(s.app.ticket_from_events(&p, &req).await?))
}

/// Open one ticket from one or more events.
#[utoipa::path(post, path = "/events/ticket", tag = "events", request_body = TicketFromEvents,
    responses((status = 201, body = TicketView), (status = 409, body = ErrorEnvelope)))]
async fn ticket_from_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<TicketFromEvents>,
) -> ApiResult<(StatusCode, HeaderMap, Json<TicketView>)> {
    Ok(created(s.app.ticket_from_events(&p, &body).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeOne {
    /// The ticket's id or number.
    pub ticket: String,
}

/// Merge this event into an existing ticket.
#[utoipa::path(post, path = "/events/{id}/merge", tag = "events", request_body = MergeOne,
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
async fn merge_event(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MergeOne>,
) -> ApiResult<Json<TicketView>> {
    let e = s.app.find_event(&p, &id).await?;
    Ok(Json(
        s.app
            .merge_events(
                &p,
                &MergeEvents {
                    events: vec![e.id],
                    ticket: body.ticket,
                },
            )
            .await?,
    ))
}

/// Merge events into an existing ticket.
#[utoipa::path(post, path = "/events/merge", tag = "events", request_body = MergeEvents,
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
async fn merge_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<MergeEvents>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.merge_events(&p, &body).await?))
}

/// The observables of one event.
#[utoipa::path(get, path = "/events/{id}/observables", tag = "observables",
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = Page<ObservableRef>)))]
async fn event_observables(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<ObservableRef>>> {
    let e = s.app.find_event(&p, &id).await?;
    Ok(Json(Page {
        items: e.observables,
        next_cursor: None,
    }))
}

/// The events linked to a ticket (ticketed or merged), newest first.
#[utoipa::path(get, path = "/tickets/{ref}/events", tag = "events",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<Event>)))]
async fn ticket_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<Event>>> {
    Ok(Json(Page {
        items: s.app.ticket_events(&p, &reference).await?,
        next_cursor: None,
    }))
}

/// Create a suppression rule (CEL over `event`).
#[utoipa::path(post, path = "/suppression-rules", tag = "events", request_body = SuppressionRuleBody,
    responses((status = 201, body = SuppressionRule), (status = 422, body = ErrorEnvelope)))]
async fn create_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<SuppressionRuleBody>,
) -> ApiResult<(StatusCode, Json<SuppressionRule>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.create_suppression_rule(&p, &body).await?),
    ))
}

/// Every suppression rule, with its hit counters.
#[utoipa::path(get, path = "/suppression-rules", tag = "events",
    responses((status = 200, body = Page<SuppressionRule>)))]
async fn list_rules(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<SuppressionRule>>> {
    Ok(Json(Page {
        items: s.app.list_suppression_rules(&p).await?,
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/suppression-rules/{id}", tag = "events",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, body = SuppressionRule), (status = 404, body = ErrorEnvelope)))]
async fn get_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SuppressionRule>> {
    Ok(Json(s.app.get_suppression_rule(&p, &id).await?))
}

/// Replace a suppression rule.
#[utoipa::path(put, path = "/suppression-rules/{id}", tag = "events", request_body = SuppressionRuleBody,
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, body = SuppressionRule), (status = 404, body = ErrorEnvelope)))]
async fn update_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SuppressionRuleBody>,
) -> ApiResult<Json<SuppressionRule>> {
    s.app
        .update_suppression_rule(&p, &id, Some(&body))
        .await?
        .map(Json)
        .ok_or_else(crate::error::ApiError::not_found)
}

/// Delete a suppression rule (the events it suppressed stay as they are).
#[utoipa::path(delete, path = "/suppression-rules/{id}", tag = "events",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
async fn delete_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.update_suppression_rule(&p, &id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListObservablesQuery {
    /// `ip`, `domain`, `url`, `email`, `md5`, `sha1`, `sha256`, `cve`, `filename`...
    pub kind: Option<String>,
    /// Text in the value.
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Observables, most recently seen first, with how many events and tickets mention them.
#[utoipa::path(get, path = "/observables", tag = "observables", params(ListObservablesQuery),
    responses((status = 200, body = Page<Observable>)))]
async fn list_observables(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListObservablesQuery>,
) -> ApiResult<Json<Page<Observable>>> {
    let q = ListObservables {
        kind: q.kind,
        q: q.q,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.app.list_observables(&p, &q).await?))
}

/// One observable, with the events and the (visible) tickets that mention it.
#[utoipa::path(get, path = "/observables/{id}", tag = "observables",
    params(("id" = String, Path, description = "Observable id")),
    responses((status = 200, body = ObservableDetail), (status = 404, body = ErrorEnvelope)))]
async fn get_observable(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ObservableDetail>> {
    Ok(Json(s.app.get_observable(&p, &id).await?))
}

/// Add an observable to a ticket (its kind is guessed from the value when not given).
#[utoipa::path(post, path = "/tickets/{ref}/observables", tag = "observables", request_body = AddObservable,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 201, body = Observable), (status = 422, body = ErrorEnvelope)))]
async fn add_ticket_observable(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<AddObservable>,
) -> ApiResult<(StatusCode, Json<Observable>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.add_ticket_observable(&p, &reference, &body).await?),
    ))
}

/// The observables a ticket mentions (its text, its events, its communications, added ones).
#[utoipa::path(get, path = "/tickets/{ref}/observables", tag = "observables",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<Observable>)))]
async fn ticket_observables(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<Observable>>> {
    Ok(Json(Page {
        items: s.app.ticket_observables(&p, &reference).await?,
        next_cursor: None,
    }))
}

/// Capture a communication (email, chat, call, meeting) on the ticket.
#[utoipa::path(post, path = "/tickets/{ref}/communications", tag = "tickets", request_body = CreateCommunication,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 201, body = Communication), (status = 422, body = ErrorEnvelope)))]
async fn add_communication(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<CreateCommunication>,
) -> ApiResult<(StatusCode, Json<Communication>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.add_communication(&p, &reference, &body).await?),
    ))
}

/// The communications captured on the ticket, oldest first.
#[utoipa::path(get, path = "/tickets/{ref}/communications", tag = "tickets",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<Communication>)))]
async fn list_communications(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<Communication>>> {
    Ok(Json(Page {
        items: s.app.list_communications(&p, &reference).await?,
        next_cursor: None,
    }))
}
