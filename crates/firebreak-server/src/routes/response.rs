//! The response process: escalation, emergencies (coordinator, team, meetings and minutes,
//! status reports, course of action, notifications) and change controls (PRODUCT.md §4.1).

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, Auth, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use firebreak_domain::api::{Page, TicketView};
use firebreak_domain::response::*;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(escalate))
        .routes(routes!(request_escalation))
        .routes(routes!(declare_emergency))
        .routes(routes!(create_change_control, list_change_controls))
        .routes(routes!(get_change_control))
        .routes(routes!(approve_change))
        .routes(routes!(reject_change))
        .routes(routes!(implement_change))
        .routes(routes!(verify_change))
        .routes(routes!(list_emergencies))
        .routes(routes!(get_emergency))
        .routes(routes!(set_coordinator))
        .routes(routes!(set_team))
        .routes(routes!(schedule_meeting, list_meetings))
        .routes(routes!(record_minutes))
        .routes(routes!(finalize_minutes))
        .routes(routes!(file_status_report, list_status_reports))
        .routes(routes!(choose_course))
        .routes(routes!(list_notifications))
        .routes(routes!(file_test_report))
        .routes(routes!(file_senior_management_report))
        .routes(routes!(close_emergency))
        .routes(routes!(set_phase))
        .routes(routes!(post_incident_review))
        .routes(routes!(get_report))
        .routes(routes!(escalation_request))
        .routes(routes!(period_report))
        .routes(routes!(de_escalate))
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(complete_task))
        .routes(routes!(create_asset, list_assets))
        .routes(routes!(import_assets))
        .routes(routes!(get_asset))
        .routes(routes!(link_asset, list_ticket_assets))
        .routes(routes!(list_ticket_notifications))
}

/// Who was told what about the ticket, on which channel, with what delivery status.
#[utoipa::path(get, path = "/tickets/{ref}/notifications", tag = "workflow",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<Notification>)))]
pub async fn list_ticket_notifications(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<Notification>>> {
    Ok(page(s.app.list_ticket_notifications(&p, &reference).await?))
}

/// Tier 2 re-evaluates an escalation and returns it to the normal path.
#[utoipa::path(post, path = "/tickets/{ref}/de-escalate", tag = "workflow", request_body = ReasonBody,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
pub async fn de_escalate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.de_escalate(&p, &reference, &body).await?))
}

/// Add a task (repair work, follow-up) to the ticket.
#[utoipa::path(post, path = "/tickets/{ref}/tasks", tag = "workflow", request_body = CreateTask,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 201, body = Task)))]
pub async fn create_task(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<CreateTask>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.create_task(&p, &reference, &body).await?),
    ))
}

/// The ticket's tasks, oldest first.
#[utoipa::path(get, path = "/tickets/{ref}/tasks", tag = "workflow",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<Task>)))]
pub async fn list_tasks(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<Task>>> {
    Ok(page(s.app.list_tasks(&p, &reference).await?))
}

/// Mark a task done.
#[utoipa::path(post, path = "/tasks/{id}/done", tag = "workflow",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn complete_task(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Task>> {
    Ok(Json(s.app.complete_task(&p, &id).await?))
}

/// Query of the period report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodParams {
    /// First day (YYYY-MM-DD, UTC).
    pub from: String,
    /// Day after the last (YYYY-MM-DD, UTC).
    pub to: String,
    /// `md` (default), `html` or `pdf`.
    #[serde(default)]
    pub format: Option<String>,
}

fn parse_day(field: &str, v: &str) -> Result<time::Date, crate::error::ApiError> {
    time::Date::parse(v, &time::format_description::well_known::Iso8601::DATE).map_err(|_| {
        crate::error::ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            field,
            "expected a date like 2026-11-01",
        )
    })
}

/// The incident-management report for a period: tickets opened in `[from, to)` that the caller
/// may see, with counts by criticality and the mean time to resolve.
#[utoipa::path(get, path = "/reports/period", tag = "reports", params(PeriodParams),
    responses((status = 200, description = "The report", content(("text/markdown"), ("text/html"), ("application/pdf")))))]
pub async fn period_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<PeriodParams>,
) -> ApiResult<axum::response::Response> {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let query = firebreak_app::reports::PeriodQuery {
        from: parse_day("from", &q.from)?,
        to: parse_day("to", &q.to)?,
    };
    let format = q.format.as_deref().unwrap_or("md");
    if !matches!(format, "md" | "html" | "pdf") {
        return Err(crate::error::ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "format",
            "expected md, html or pdf",
        ));
    }
    let r = s.app.period_report(&p, &query).await?;
    let (ct, body): (&str, Vec<u8>) = match format {
        "md" => ("text/markdown; charset=utf-8", r.markdown().into_bytes()),
        "html" => ("text/html; charset=utf-8", r.html().into_bytes()),
        _ => ("application/pdf", firebreak_app::pdf::render(&r)),
    };
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok(res)
}

/// Management asks for immediate escalation before any ticket exists: a ticket is opened and
/// tier 2 is tasked with it at once.
#[utoipa::path(post, path = "/escalation-requests", tag = "workflow", request_body = EscalationRequestBody,
    responses((status = 201, body = TicketView), (status = 403, body = ErrorEnvelope)))]
pub async fn escalation_request(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<EscalationRequestBody>,
) -> ApiResult<(StatusCode, Json<TicketView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.escalation_request(&p, &body).await?),
    ))
}

fn page<T>(items: Vec<T>) -> Json<Page<T>> {
    Json(Page {
        items,
        next_cursor: None,
    })
}

/// Escalate to tier 2 with an Escalation Report; IT management is notified.
#[utoipa::path(post, path = "/tickets/{ref}/escalate", tag = "workflow", request_body = EscalateRequest,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
pub async fn escalate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<EscalateRequest>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.escalate(&p, &reference, &body).await?))
}

/// Management requests immediate escalation.
#[utoipa::path(post, path = "/tickets/{ref}/request-escalation", tag = "workflow", request_body = ReasonBody,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
pub async fn request_escalation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.request_escalation(&p, &reference, &body).await?))
}

/// Declare an emergency: tier 2 on an escalated ticket, management on any ticket. Returns the
/// emergency.
#[utoipa::path(post, path = "/tickets/{ref}/declare-emergency", tag = "workflow", request_body = ReasonBody,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Emergency), (status = 409, body = ErrorEnvelope)))]
pub async fn declare_emergency(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.declare_emergency(&p, &reference, &body).await?))
}

/// Raise a change control on the ticket (a normal ticket becomes an escalation).
#[utoipa::path(post, path = "/tickets/{ref}/change-controls", tag = "change controls", request_body = CreateChangeControl,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 201, body = ChangeControl)))]
pub async fn create_change_control(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<CreateChangeControl>,
) -> ApiResult<(StatusCode, Json<ChangeControl>)> {
    let c = s.app.create_change_control(&p, &reference, &body).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// The ticket's change controls, oldest first.
#[utoipa::path(get, path = "/tickets/{ref}/change-controls", tag = "change controls",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<ChangeControl>)))]
pub async fn list_change_controls(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<ChangeControl>>> {
    Ok(page(s.app.list_change_controls(&p, &reference).await?))
}

#[utoipa::path(get, path = "/change-controls/{id}", tag = "change controls",
    params(("id" = String, Path, description = "Change control id")),
    responses((status = 200, body = ChangeControl)))]
pub async fn get_change_control(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ChangeControl>> {
    Ok(Json(s.app.get_change_control(&p, &id).await?))
}

/// Approve (a manager for emergency and lock-down changes; never the requester).
#[utoipa::path(post, path = "/change-controls/{id}/approve", tag = "change controls", request_body = DecisionBody,
    params(("id" = String, Path, description = "Change control id")),
    responses((status = 200, body = ChangeControl), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn approve_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<ChangeControl>> {
    Ok(Json(
        s.app
            .change_control_action(&p, &id, ChangeStatus::Approved, Some(&body.comment))
            .await?,
    ))
}

/// Reject (same rules as approval).
#[utoipa::path(post, path = "/change-controls/{id}/reject", tag = "change controls", request_body = DecisionBody,
    params(("id" = String, Path, description = "Change control id")),
    responses((status = 200, body = ChangeControl), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn reject_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<ChangeControl>> {
    Ok(Json(
        s.app
            .change_control_action(&p, &id, ChangeStatus::Rejected, Some(&body.comment))
            .await?,
    ))
}

/// An optional comment on implement / verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionalComment {
    pub comment: Option<String>,
}

/// Mark an approved change as implemented (tier 2).
#[utoipa::path(post, path = "/change-controls/{id}/implement", tag = "change controls", request_body(content = Option<OptionalComment>),
    params(("id" = String, Path, description = "Change control id")),
    responses((status = 200, body = ChangeControl), (status = 409, body = ErrorEnvelope)))]
pub async fn implement_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<OptionalComment>,
) -> ApiResult<Json<ChangeControl>> {
    Ok(Json(
        s.app
            .change_control_action(&p, &id, ChangeStatus::Implemented, body.comment.as_deref())
            .await?,
    ))
}

/// Mark an implemented change as verified (tier 2).
#[utoipa::path(post, path = "/change-controls/{id}/verify", tag = "change controls", request_body(content = Option<OptionalComment>),
    params(("id" = String, Path, description = "Change control id")),
    responses((status = 200, body = ChangeControl), (status = 409, body = ErrorEnvelope)))]
pub async fn verify_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<OptionalComment>,
) -> ApiResult<Json<ChangeControl>> {
    Ok(Json(
        s.app
            .change_control_action(&p, &id, ChangeStatus::Verified, body.comment.as_deref())
            .await?,
    ))
}

/// Emergencies the caller may see (team, management, auditors), oldest first.
#[utoipa::path(get, path = "/emergencies", tag = "emergencies", responses((status = 200, body = Page<Emergency>)))]
pub async fn list_emergencies(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<Emergency>>> {
    Ok(page(s.app.list_emergencies(&p).await?))
}

/// The emergency dashboard: coordinator, team, war room, course of action, open obligations,
/// next meeting.
#[utoipa::path(get, path = "/emergencies/{id}", tag = "emergencies",
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Emergency)))]
pub async fn get_emergency(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.get_emergency(&p, &id).await?))
}

/// Reassign the coordinator (management), with a reason.
#[utoipa::path(post, path = "/emergencies/{id}/coordinator", tag = "emergencies", request_body = CoordinatorBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Emergency)))]
pub async fn set_coordinator(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CoordinatorBody>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.set_coordinator(&p, &id, &body).await?))
}

/// The coordinator assembles the team.
#[utoipa::path(put, path = "/emergencies/{id}/team", tag = "emergencies", request_body = TeamBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Emergency)))]
pub async fn set_team(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TeamBody>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.set_team(&p, &id, &body).await?))
}

/// Schedule a meeting (in the plan's war room unless another is named).
#[utoipa::path(post, path = "/emergencies/{id}/meetings", tag = "emergencies", request_body = ScheduleMeeting,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 201, body = Meeting)))]
pub async fn schedule_meeting(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleMeeting>,
) -> ApiResult<(StatusCode, Json<Meeting>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.schedule_meeting(&p, &id, &body).await?),
    ))
}

#[utoipa::path(get, path = "/emergencies/{id}/meetings", tag = "emergencies",
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Page<Meeting>)))]
pub async fn list_meetings(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<Meeting>>> {
    Ok(page(s.app.list_meetings(&p, &id).await?))
}

/// Record the minutes: attendees (they join the team), status, actions, resolutions.
#[utoipa::path(put, path = "/emergencies/{id}/meetings/{mid}/minutes", tag = "emergencies", request_body = MinutesBody,
    params(("id" = String, Path, description = "Emergency id"), ("mid" = String, Path, description = "Meeting id")),
    responses((status = 200, body = Meeting), (status = 409, body = ErrorEnvelope)))]
pub async fn record_minutes(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, mid)): Path<(String, String)>,
    ApiJson(body): ApiJson<MinutesBody>,
) -> ApiResult<Json<Meeting>> {
    Ok(Json(s.app.record_minutes(&p, &id, &mid, &body).await?))
}

/// Finalize the minutes (409 `manager_attendance_required` unless a manager attended).
#[utoipa::path(post, path = "/emergencies/{id}/meetings/{mid}/finalize", tag = "emergencies",
    params(("id" = String, Path, description = "Emergency id"), ("mid" = String, Path, description = "Meeting id")),
    responses((status = 200, body = Meeting), (status = 409, body = ErrorEnvelope)))]
pub async fn finalize_minutes(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, mid)): Path<(String, String)>,
) -> ApiResult<Json<Meeting>> {
    Ok(Json(s.app.finalize_minutes(&p, &id, &mid).await?))
}

/// File a status report (cost, exposure, continuing business risk, next steps).
#[utoipa::path(post, path = "/emergencies/{id}/status-reports", tag = "emergencies", request_body = StatusReportBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 201, body = StatusReport)))]
pub async fn file_status_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusReportBody>,
) -> ApiResult<(StatusCode, Json<StatusReport>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.file_status_report(&p, &id, &body).await?),
    ))
}

#[utoipa::path(get, path = "/emergencies/{id}/status-reports", tag = "emergencies",
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Page<StatusReport>)))]
pub async fn list_status_reports(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<StatusReport>>> {
    Ok(page(s.app.list_status_reports(&p, &id).await?))
}

/// Choose the course of action (`lockdown_repair`, `false_positive`, `monitor_capture`).
#[utoipa::path(post, path = "/emergencies/{id}/course-of-action", tag = "emergencies", request_body = CourseBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Emergency)))]
pub async fn choose_course(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CourseBody>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.choose_course(&p, &id, &body).await?))
}

/// Who was told what, on which channel, and whether it was delivered.
#[utoipa::path(get, path = "/emergencies/{id}/notifications", tag = "emergencies",
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Page<Notification>)))]
pub async fn list_notifications(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<Notification>>> {
    Ok(page(s.app.list_notifications(&p, &id).await?))
}

/// File a Test Report (Lock-down & Repair): the repair and its compliance tests.
#[utoipa::path(post, path = "/emergencies/{id}/test-reports", tag = "emergencies", request_body = TestReportBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 201, body = TestReport)))]
pub async fn file_test_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TestReportBody>,
) -> ApiResult<(StatusCode, Json<TestReport>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.file_test_report(&p, &id, &body).await?),
    ))
}

/// File the Report to Senior Management (False Positive), with the ticket's disposition.
#[utoipa::path(post, path = "/emergencies/{id}/senior-management-report", tag = "emergencies", request_body = SeniorManagementReportBody,
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 201, body = SeniorManagementReport), (status = 409, body = ErrorEnvelope)))]
pub async fn file_senior_management_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SeniorManagementReportBody>,
) -> ApiResult<(StatusCode, Json<SeniorManagementReport>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.file_senior_management_report(&p, &id, &body).await?),
    ))
}

/// Close the emergency: 409 `obligations_open` naming what the course of action still needs.
#[utoipa::path(post, path = "/emergencies/{id}/close", tag = "emergencies", request_body(content = Option<CloseEmergencyBody>),
    params(("id" = String, Path, description = "Emergency id")),
    responses((status = 200, body = Emergency), (status = 409, body = ErrorEnvelope)))]
pub async fn close_emergency(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CloseEmergencyBody>,
) -> ApiResult<Json<Emergency>> {
    Ok(Json(s.app.close_emergency(&p, &id, &body).await?))
}

/// Move the ticket to a phase: identification, containment, eradication, recovery,
/// lessons_learned (forward only).
#[utoipa::path(post, path = "/tickets/{ref}/phase", tag = "workflow", request_body = PhaseBody,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Object), (status = 409, body = ErrorEnvelope)))]
pub async fn set_phase(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<PhaseBody>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(s.app.set_phase(&p, &reference, &body).await?))
}

/// The Post-Incident Review (lessons learned); it closes the ticket.
#[utoipa::path(post, path = "/tickets/{ref}/post-incident-review", tag = "workflow", request_body = PostIncidentReviewBody,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
pub async fn post_incident_review(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<PostIncidentReviewBody>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(
        s.app.post_incident_review(&p, &reference, &body).await?,
    ))
}

/// A written control rendered from the records: `{kind}.md`, `{kind}.html` or `{kind}.pdf`,
/// kinds `help-desk-ticket`, `escalation-report`, `investigation-status-report`,
/// `meeting-minutes`, `lockdown-change-control`, `test-report`, `senior-management-report`,
/// `post-incident-review`, `bundle`. 409 `nothing_to_report` when the record does not exist yet.
#[utoipa::path(get, path = "/tickets/{ref}/reports/{report}", tag = "reports",
    params(("ref" = String, Path, description = "Ticket id or number"), ("report" = String, Path, description = "`<kind>.md`, `<kind>.html` or `<kind>.pdf`")),
    responses(
        (status = 200, description = "The report", content(("text/markdown"), ("text/html"), ("application/pdf"))),
        (status = 409, body = ErrorEnvelope)))]
pub async fn get_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((reference, report)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let Some((kind, ext)) = report.rsplit_once('.') else {
        return Err(crate::error::ApiError::not_found());
    };
    if !matches!(ext, "md" | "html" | "pdf") {
        return Err(crate::error::ApiError::not_found());
    }
    let r = s.app.report(&p, &reference, kind).await?;
    let filename = format!("{}-{kind}.{ext}", r.ticket_number);
    let (ct, body): (&str, Vec<u8>) = match ext {
        "md" => ("text/markdown; charset=utf-8", r.markdown().into_bytes()),
        "html" => ("text/html; charset=utf-8", r.html().into_bytes()),
        _ => ("application/pdf", firebreak_app::pdf::render(&r)),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // rendered user content never runs script, even opened directly
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok(res)
}

/// The asset inventory (the response team, management, auditors, admins).
#[utoipa::path(get, path = "/assets", tag = "assets", responses((status = 200, body = Page<firebreak_domain::asset::Asset>)))]
pub async fn list_assets(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Page<firebreak_domain::asset::Asset>>> {
    Ok(page(s.app.list_assets(&p).await?))
}

/// Add an asset (admins and the response team). Names are unique.
#[utoipa::path(post, path = "/assets", tag = "assets", request_body = firebreak_domain::asset::CreateAsset,
    responses((status = 201, body = firebreak_domain::asset::Asset), (status = 409, body = ErrorEnvelope)))]
pub async fn create_asset(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<firebreak_domain::asset::CreateAsset>,
) -> ApiResult<(StatusCode, Json<firebreak_domain::asset::Asset>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.create_asset(&p, &body).await?),
    ))
}

/// One asset, by id or name.
#[utoipa::path(get, path = "/assets/{key}", tag = "assets",
    params(("key" = String, Path, description = "Asset id or name")),
    responses((status = 200, body = firebreak_domain::asset::Asset)))]
pub async fn get_asset(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(key): Path<String>,
) -> ApiResult<Json<firebreak_domain::asset::Asset>> {
    Ok(Json(s.app.get_asset(&p, &key).await?))
}

/// Import assets from CSV (`text/csv`: `name,addresses,owner,critical_production[,description]`
/// with a header line; addresses separated by `;`). Bad lines are reported by number; the
/// others go in.
#[utoipa::path(post, path = "/assets/import", tag = "assets", request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = Object)))]
pub async fn import_assets(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("text/csv") {
        return Err(crate::error::ApiError::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "expected text/csv",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        crate::error::ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "body",
            "the CSV must be UTF-8",
        )
    })?;
    Ok(Json(s.app.import_assets(&p, text).await?))
}

/// The assets a ticket affects.
#[utoipa::path(get, path = "/tickets/{ref}/assets", tag = "assets",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<firebreak_domain::asset::Asset>)))]
pub async fn list_ticket_assets(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<firebreak_domain::asset::Asset>>> {
    Ok(page(s.app.list_ticket_assets(&p, &reference).await?))
}

/// Record an affected asset; a critical-production one makes the ticket an escalation.
#[utoipa::path(post, path = "/tickets/{ref}/assets", tag = "assets", request_body = firebreak_domain::asset::LinkAsset,
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = TicketView), (status = 409, body = ErrorEnvelope)))]
pub async fn link_asset(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<firebreak_domain::asset::LinkAsset>,
) -> ApiResult<Json<TicketView>> {
    Ok(Json(s.app.link_asset(&p, &reference, &body).await?))
}
