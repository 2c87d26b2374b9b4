//! The emergency dashboard: coordinator, team, war room, next meeting, course of action and its
//! open obligations, status reports, change controls, notifications and their delivery; forms
//! for the coordinator's and the team's next steps.

use super::tickets::from_form;
use super::{Form, Layout, Ui, describe, error_page, html};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use firebreak_app::AppError;
use firebreak_domain::response::{
    ChangeControl, CloseEmergencyBody, CoordinatorBody, CourseBody, Emergency, Meeting,
    MinutesBody, Notification, ScheduleMeeting, SeniorManagementReportBody, StatusReport,
    StatusReportBody, TestReportBody,
};

/// The non-blank lines of a text field.
fn lines(v: &str) -> impl Iterator<Item = &str> {
    v.lines().map(str::trim).filter(|l| !l.is_empty())
}

#[derive(Template)]
#[template(path = "emergency.html")]
struct EmergencyPage {
    l: Layout,
    e: Emergency,
    title: String,
    open: bool,
    meetings: Vec<Meeting>,
    reports: Vec<StatusReport>,
    changes: Vec<ChangeControl>,
    notifications: Vec<Notification>,
    courses: Vec<(&'static str, &'static str)>,
    report_links: Vec<(&'static str, &'static str)>,
    action: String,
    /// What was typed, when a form comes back with an error.
    typed: Vec<(String, String)>,
    error: Option<String>,
}

impl EmergencyPage {
    /// The value typed into the field `name` of the form that failed.
    fn v(&self, name: &str) -> &str {
        self.typed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

const COURSES: &[(&str, &str)] = &[
    ("lockdown_repair", "Lock-down & Repair"),
    ("false_positive", "False Positive"),
    ("monitor_capture", "Monitor & Capture"),
];

const CONTROLS: &[(&str, &str)] = &[
    ("escalation-report", "Escalation Report"),
    ("investigation-status-report", "Investigation Status Report"),
    ("meeting-minutes", "Meeting Minutes"),
    ("lockdown-change-control", "Lock-down Change Control"),
    ("test-report", "Test Report"),
    ("senior-management-report", "Report to Senior Management"),
    ("post-incident-review", "Post-Incident Review"),
];

/// The seeds' name of a course of action.
pub fn course_label(v: &str) -> &'static str {
    COURSES
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, l)| *l)
        .unwrap_or("unknown")
}

async fn render(s: &AppState, ui: &Ui, id: &str, error: Option<super::Failed>) -> Response {
    let e = match s.app.get_emergency(&ui.p, id).await {
        Ok(e) => e,
        Err(x) => return error_page(ui, x),
    };
    let id = e.id.to_string();
    let title = s
        .app
        .get_ticket(&ui.p, &e.ticket_number)
        .await
        .map(|t| t.title)
        .unwrap_or_default();
    let (meetings, reports, changes, notifications) = tokio::join!(
        s.app.list_meetings(&ui.p, &id),
        s.app.list_status_reports(&ui.p, &id),
        s.app.list_change_controls(&ui.p, &e.ticket_number),
        s.app.list_notifications(&ui.p, &id),
    );
    let (meetings, reports, changes, notifications) = (
        meetings.unwrap_or_default(),
        reports.unwrap_or_default(),
        changes.unwrap_or_default(),
        notifications.unwrap_or_default(),
    );
    let (code, error, action, typed) = match error {
        Some(f) => (
            f.status,
            Some(f.message),
            f.action.unwrap_or_default(),
            f.typed,
        ),
        None => (StatusCode::OK, None, String::new(), vec![]),
    };
    html(
        code,
        &EmergencyPage {
            l: ui.layout("tickets"),
            open: e.status.as_str() == "open",
            e,
            title,
            meetings,
            reports,
            changes,
            notifications,
            courses: COURSES.to_vec(),
            report_links: CONTROLS.to_vec(),
            action,
            typed,
            error,
        },
    )
}

/// `GET /emergencies/{id}`.
pub async fn page(State(s): State<AppState>, ui: Ui, Path(id): Path<String>) -> Response {
    render(&s, &ui, &id, None).await
}

/// `datetime-local` (`2026-11-27T14:30`), read as UTC; RFC 3339 is accepted too.
fn parse_when(v: &str) -> Result<time::OffsetDateTime, AppError> {
    let v = v.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::PrimitiveDateTime::parse(v, &fmt)
        .map(|t| t.assume_utc())
        .map_err(|_| {
            AppError::field(
                "scheduled_at",
                "a date and time, e.g. 2026-11-27T14:30 (UTC)",
            )
        })
}

/// `POST /emergencies/{id}/{action}`: course, meeting, status-report, coordinator.
pub async fn act(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    f: Form,
) -> Response {
    let text = |n: &str| f.get(n).unwrap_or("").trim().to_string();
    let p = &f.ui.p;
    let result: Result<(), AppError> = match action.as_str() {
        "course" => match serde_json::from_value::<CourseBody>(serde_json::json!({
            "course": text("course"),
            "rationale": text("rationale"),
        })) {
            Ok(b) => s.app.choose_course(p, &id, &b).await.map(|_| ()),
            Err(e) => Err(AppError::field("course", e.to_string())),
        },
        "meeting" => match parse_when(&text("scheduled_at")) {
            Ok(at) => {
                let room = text("war_room");
                let b = ScheduleMeeting {
                    scheduled_at: at,
                    war_room: (!room.is_empty()).then_some(room),
                };
                s.app.schedule_meeting(p, &id, &b).await.map(|_| ())
            }
            Err(e) => Err(e),
        },
        "status-report" => {
            let b = StatusReportBody {
                cost: text("cost"),
                exposure: text("exposure"),
                business_risk: text("business_risk"),
                next_steps: text("next_steps"),
            };
            s.app.file_status_report(p, &id, &b).await.map(|_| ())
        }
        "coordinator" => {
            let b = CoordinatorBody {
                username: text("username"),
                reason: text("reason"),
            };
            s.app.set_coordinator(p, &id, &b).await.map(|_| ())
        }
        "test-report" => {
            let tests: Result<Vec<serde_json::Value>, AppError> = lines(&text("compliance_tests"))
                .enumerate()
                .map(|(i, l)| {
                    let parts: Vec<&str> = l.split('|').map(str::trim).collect();
                    match parts.as_slice() {
                        [t, r] => Ok(serde_json::json!({"test": t, "result": r})),
                        [t, r, n] => Ok(serde_json::json!({"test": t, "result": r, "notes": n})),
                        _ => Err(AppError::field(
                            &format!("compliance_tests[{i}]"),
                            "write each test as: test | pass or fail | notes",
                        )),
                    }
                })
                .collect();
            match tests.and_then(|t| {
                from_form::<TestReportBody>(serde_json::json!({
                    "summary": text("summary"),
                    "compliance_tests": t,
                }))
            }) {
                Ok(b) => s.app.file_test_report(p, &id, &b).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "senior-management-report" => {
            match from_form::<SeniorManagementReportBody>(serde_json::json!({
                "summary": text("summary"),
                "disposition": text("disposition"),
            })) {
                Ok(b) => s
                    .app
                    .file_senior_management_report(p, &id, &b)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "minutes" => {
            let actions: Result<Vec<serde_json::Value>, AppError> = lines(&text("actions"))
                .enumerate()
                .map(|(i, l)| {
                    let parts: Vec<&str> = l.split(';').map(str::trim).collect();
                    match parts.as_slice() {
                        [t, o, d] => Ok(serde_json::json!({"text": t, "owner": o, "due": d})),
                        _ => Err(AppError::field(
                            &format!("actions[{i}]"),
                            "write each action as: text; owner; due",
                        )),
                    }
                })
                .collect();
            let attendees: Vec<String> = text("attendees")
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            let resolutions: Vec<String> =
                lines(&text("resolutions")).map(str::to_string).collect();
            match actions.and_then(|a| {
                from_form::<MinutesBody>(serde_json::json!({
                    "attendees": attendees,
                    "status": text("status"),
                    "actions": a,
                    "resolutions": resolutions,
                }))
            }) {
                Ok(b) => s
                    .app
                    .record_minutes(p, &id, &text("meeting"), &b)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "finalize" => s
            .app
            .finalize_minutes(p, &id, &text("meeting"))
            .await
            .map(|_| ()),
        "close" => {
            let summary = text("summary");
            let b = CloseEmergencyBody {
                summary: (!summary.is_empty()).then_some(summary),
            };
            s.app.close_emergency(p, &id, &b).await.map(|_| ())
        }
        _ => Err(AppError::NotFound),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/emergencies/{id}")).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            let failed = super::Failed {
                status: c,
                message: m,
                action: Some(action),
                typed: f.fields.clone(),
            };
            render(&s, &f.ui, &id, Some(failed)).await
        }
    }
}
