//! Ticket pages: the list (filters, saved views, live refresh), a new ticket, a ticket with its
//! timeline and every workflow action as a form that says what it needs and why it is not
//! available when it is not.

use super::{Layout, Ui, describe, error_page, html, read_form, signed_in};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use firebreak_app::AppError;
use firebreak_app::tickets::ListTickets;
use firebreak_domain::api::{
    CreateLogEntryRequest, CreateTicketRequest, DocumentView, LogEntryView, TicketView,
};
use firebreak_domain::event::{Communication, Event, Observable};
use firebreak_domain::response::{EscalateRequest, EscalationReport, ReasonBody, Task};
use firebreak_domain::role::Role;
use firebreak_domain::ticket::{
    Criticality, Severity, Source, SourceKind, Ticket, TicketAction, TicketStatus,
};
use serde::Deserialize;

/// The list's filters as the page's form sends them (blank means "any").
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub criticality: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub assignee: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub cursor: String,
}

impl ListQuery {
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("criticality", &self.criticality),
            ("severity", &self.severity),
            ("assignee", &self.assignee),
            ("tag", &self.tag),
            ("q", &self.q),
        ] {
            if !v.trim().is_empty() {
                s.append_pair(k, v.trim());
            }
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        s.finish()
    }

    fn parse(&self) -> Result<ListTickets, AppError> {
        fn opt<T>(
            field: &str,
            v: &str,
            parse: fn(&str) -> Option<T>,
            expected: &str,
        ) -> Result<Option<T>, AppError> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            parse(v)
                .map(Some)
                .ok_or_else(|| AppError::field(field, format!("must be one of {expected}")))
        }
        let blank = |v: &str| Some(v.trim().to_string()).filter(|x| !x.is_empty());
        Ok(ListTickets {
            status: opt(
                "status",
                &self.status,
                TicketStatus::parse,
                &TicketStatus::expected(),
            )?,
            criticality: opt(
                "criticality",
                &self.criticality,
                Criticality::parse,
                &Criticality::expected(),
            )?,
            severity: opt(
                "severity",
                &self.severity,
                Severity::parse,
                &Severity::expected(),
            )?,
            assignee: blank(&self.assignee),
            tag: blank(&self.tag),
            q: blank(&self.q),
            limit: Some(50),
            cursor: blank(&self.cursor),
        })
    }
}

#[derive(Template)]
#[template(path = "tickets.html")]
struct ListPage {
    l: Layout,
    f: ListQuery,
    statuses: Vec<&'static str>,
    criticalities: Vec<&'static str>,
    severities: Vec<&'static str>,
    views: Vec<(&'static str, String)>,
    tickets: Vec<TicketView>,
    rows_url: String,
    next: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "ticket_rows.html")]
struct Rows {
    tickets: Vec<TicketView>,
}

/// Views every analyst needs, one click away.
fn saved_views(user: &str) -> Vec<(&'static str, String)> {
    let mut mine = form_urlencoded::Serializer::new(String::new());
    mine.append_pair("assignee", user);
    vec![
        ("Mine", format!("/tickets?{}", mine.finish())),
        ("Open", "/tickets?status=open".into()),
        ("In progress", "/tickets?status=in_progress".into()),
        ("Awaiting closure", "/tickets?status=pending_closure".into()),
        ("Escalations", "/tickets?criticality=escalation".into()),
        ("Emergencies", "/tickets?criticality=emergency".into()),
    ]
}

/// `GET /tickets`.
pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ui = match signed_in(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (f, mut error, mut code) = match q {
        Ok(Query(q)) => (q, None, StatusCode::OK),
        Err(e) => (
            ListQuery::default(),
            Some(format!("The filters could not be read: {e}")),
            StatusCode::BAD_REQUEST,
        ),
    };
    let mut tickets = vec![];
    let mut next = None;
    match f.parse() {
        Ok(lq) => match s.app.list_tickets(&ui.p, &lq).await {
            Ok(page) => {
                tickets = page.items;
                next = page
                    .next_cursor
                    .map(|c| format!("/tickets?{}", f.query_string(Some(&c))));
            }
            Err(e) => {
                let (c, m) = describe(e);
                code = c;
                error = Some(m);
            }
        },
        Err(e) => {
            let (c, m) = describe(e);
            code = c;
            error = Some(m);
        }
    }
    let rows_url = format!("/tickets/rows?{}", f.query_string(None));
    html(
        code,
        &ListPage {
            views: saved_views(ui.p.username()),
            l: ui.layout("tickets"),
            statuses: TicketStatus::ALL.iter().map(|s| s.as_str()).collect(),
            criticalities: Criticality::ALL.iter().map(|s| s.as_str()).collect(),
            severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
            f,
            tickets,
            rows_url,
            next,
            error,
        },
    )
}

/// `GET /tickets/rows`: the list's first page of rows, for the live refresh.
pub async fn rows(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ui = match signed_in(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(Query(f)) = q else {
        return (StatusCode::BAD_REQUEST, "bad filters").into_response();
    };
    let lq = match f.parse() {
        Ok(l) => ListTickets { cursor: None, ..l },
        Err(e) => return (describe(e).0, "bad filters").into_response(),
    };
    match s.app.list_tickets(&ui.p, &lq).await {
        Ok(page) => html(
            StatusCode::OK,
            &Rows {
                tickets: page.items,
            },
        ),
        Err(e) => {
            let (c, m) = describe(e);
            (c, m).into_response()
        }
    }
}

/// What the new-ticket form holds (kept when it comes back with an error).
#[derive(Debug, Default)]
pub struct NewValues {
    pub title: String,
    pub description: String,
    pub severity: String,
    pub source_kind: String,
    pub source_name: String,
    pub source_contact: String,
    pub tags: String,
    pub assignee: String,
    pub restricted: bool,
}

#[derive(Template)]
#[template(path = "ticket_new.html")]
struct NewPage {
    l: Layout,
    v: NewValues,
    severities: Vec<&'static str>,
    source_kinds: Vec<&'static str>,
    error: Option<String>,
}

fn new_page(ui: &Ui, v: NewValues, code: StatusCode, error: Option<String>) -> Response {
    html(
        code,
        &NewPage {
            l: ui.layout("new"),
            v,
            severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
            source_kinds: SourceKind::ALL.iter().map(|s| s.as_str()).collect(),
            error,
        },
    )
}

/// `GET /tickets/new`.
pub async fn new_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let ui = match signed_in(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let v = NewValues {
        severity: "medium".into(),
        source_kind: "employee".into(),
        ..Default::default()
    };
    new_page(&ui, v, StatusCode::OK, None)
}

/// `POST /tickets/new` (`title`, `description`, `severity`, `source_kind`, `source_name`,
/// `source_contact`, `tags`, `assignee`, `restricted`).
pub async fn create(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let f = match read_form(&s, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = NewValues {
        title: f.get("title").unwrap_or("").to_string(),
        description: f.get("description").unwrap_or("").to_string(),
        severity: f.get("severity").unwrap_or("medium").to_string(),
        source_kind: f.get("source_kind").unwrap_or("employee").to_string(),
        source_name: f.get("source_name").unwrap_or("").to_string(),
        source_contact: f.get("source_contact").unwrap_or("").to_string(),
        tags: f.get("tags").unwrap_or("").to_string(),
        assignee: f.get("assignee").unwrap_or("").to_string(),
        restricted: f.get("restricted") == Some("true"),
    };
    let Some(severity) = Severity::parse(v.severity.trim()) else {
        let msg = format!("severity: must be one of {}", Severity::expected());
        return new_page(&f.ui, v, StatusCode::UNPROCESSABLE_ENTITY, Some(msg));
    };
    let Some(kind) = SourceKind::parse(v.source_kind.trim()) else {
        let msg = format!("source_kind: must be one of {}", SourceKind::expected());
        return new_page(&f.ui, v, StatusCode::UNPROCESSABLE_ENTITY, Some(msg));
    };
    let blank = |x: &str| Some(x.trim().to_string()).filter(|t| !t.is_empty());
    let req = CreateTicketRequest {
        title: v.title.clone(),
        description: blank(&v.description),
        source: Some(Source {
            kind,
            name: blank(&v.source_name),
            contact: blank(&v.source_contact),
        }),
        severity: Some(severity),
        priority: None,
        restricted: Some(v.restricted),
        tags: Some(
            v.tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        assignee: blank(&v.assignee),
    };
    match s.app.create_ticket(&f.ui.p, &req).await {
        Ok(t) => Redirect::to(&format!("/tickets/{}", t.number)).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            new_page(&f.ui, v, c, Some(m))
        }
    }
}

/// A field of an action's form.
pub struct FieldView {
    pub name: &'static str,
    pub label: &'static str,
    pub required: bool,
    pub long: bool,
    /// What was typed, when the form comes back with an error.
    pub value: String,
}

/// A workflow action as the ticket page offers it.
pub struct ActionView {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub available: bool,
    pub why: String,
    pub fields: Vec<FieldView>,
    pub confirm: bool,
    pub open: bool,
}

const fn field(name: &'static str, label: &'static str, long: bool) -> FieldView {
    FieldView {
        name,
        label,
        required: true,
        long,
        value: String::new(),
    }
}

/// Every action, with whether this user may take it on this ticket now, and if not, why.
fn actions(ui: &Ui, t: &Ticket, now: time::OffsetDateTime) -> Vec<ActionView> {
    let p = &ui.p;
    let roles = p.write_roles();
    let placeholder = "-".to_string();
    let mut out = Vec::new();
    let basic: [(
        TicketAction,
        &'static str,
        &'static str,
        Vec<FieldView>,
        bool,
    ); 6] = [
        (
            TicketAction::Start,
            "Start work",
            "Takes the ticket (assigns it to you when unassigned) and moves it to in_progress.",
            vec![],
            false,
        ),
        (
            TicketAction::Resolve {
                resolution: placeholder.clone(),
                problem_category: placeholder.clone(),
            },
            "Resolve",
            "Records the resolution; the owner then accepts or rejects the closure.",
            vec![
                field("resolution", "Resolution: what was done", true),
                field(
                    "problem_category",
                    "Problem category (e.g. phishing, malware, misconfiguration)",
                    false,
                ),
            ],
            false,
        ),
        (
            TicketAction::AcceptClosure,
            "Accept closure",
            "The owner agrees with the resolution; the ticket is closed.",
            vec![],
            true,
        ),
        (
            TicketAction::RejectClosure {
                reason: placeholder.clone(),
            },
            "Reject closure",
            "The owner does not agree; the ticket goes back to in_progress.",
            vec![field("reason", "Why the resolution is not accepted", true)],
            false,
        ),
        (
            TicketAction::Reopen {
                reason: placeholder.clone(),
            },
            "Reopen",
            "A closed ticket comes back to in_progress.",
            vec![field("reason", "Why it is reopened", true)],
            false,
        ),
        (
            TicketAction::MarkFalsePositive {
                reason: placeholder,
            },
            "Mark as false positive",
            "Closes the ticket as a false positive.",
            vec![field("reason", "Why it is a false positive", true)],
            true,
        ),
    ];
    for (a, label, help, fields, confirm) in basic {
        let why = if !p.can_write() {
            Err("you are signed in without the right to make changes".to_string())
        } else {
            a.authorize(roles, p.username(), t).and_then(|()| {
                a.apply(t, p.username(), now)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        };
        out.push(ActionView {
            name: a.name(),
            label,
            help,
            available: why.is_ok(),
            why: why.err().unwrap_or_default(),
            fields,
            confirm,
            open: false,
        });
    }
    let has = |r: Role| p.user.has_role(r);
    let closed = t.status == TicketStatus::Closed;
    let escalate_why = if !p.can_write() {
        Some("you are signed in without the right to make changes".to_string())
    } else if !(has(Role::Helpdesk) || has(Role::Responder) || has(Role::SeniorResponder)) {
        Some("escalating requires the helpdesk, responder or senior_responder role".into())
    } else if t.criticality != Criticality::Normal {
        Some(format!("the ticket is already {}", t.criticality))
    } else if closed {
        Some("the ticket is closed (reopen it first)".into())
    } else {
        None
    };
    out.push(ActionView {
        name: "escalate",
        label: "Escalate to tier 2",
        help: "Files the escalation report: for critical systems, change control, or when the first level cannot handle it.",
        available: escalate_why.is_none(),
        why: escalate_why.unwrap_or_default(),
        fields: vec![
            field("reason", "Why it needs tier 2", true),
            field("impact", "Business impact so far", true),
            FieldView { name: "systems", label: "Systems affected (comma-separated)", required: false, long: false, value: String::new() },
            field("actions_taken", "What has been done so far", true),
        ],
        confirm: false,
        open: false,
    });
    let request_why = if !p.can_write() || !has(Role::Manager) {
        Some("only a manager may request an immediate escalation".to_string())
    } else if t.criticality != Criticality::Normal {
        Some(format!("the ticket is already {}", t.criticality))
    } else if closed {
        Some("the ticket is closed".into())
    } else {
        None
    };
    out.push(ActionView {
        name: "request-escalation",
        label: "Request escalation (management)",
        help: "Management asks tier 2 to take the ticket at once.",
        available: request_why.is_none(),
        why: request_why.unwrap_or_default(),
        fields: vec![field("reason", "Why management asks for it", true)],
        confirm: false,
        open: false,
    });
    let direct = has(Role::Manager) || has(Role::Executive);
    let senior = has(Role::SeniorResponder) && t.criticality == Criticality::Escalation;
    let emergency_why = if t.criticality == Criticality::Emergency {
        Some("an emergency is already declared".to_string())
    } else if !p.can_write() || !(direct || senior) {
        Some("declaring an emergency is for managers and executives, or a senior responder on an escalated ticket".into())
    } else if closed {
        Some("the ticket is closed".into())
    } else {
        None
    };
    out.push(ActionView {
        name: "declare-emergency",
        label: "Declare an emergency",
        help: "Starts the emergency process: coordinator, team, war room, meetings, course of action.",
        available: emergency_why.is_none(),
        why: emergency_why.unwrap_or_default(),
        fields: vec![field("reason", "Why this is an emergency", true)],
        confirm: true,
        open: false,
    });
    out
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    l: Layout,
    t: TicketView,
    sla: String,
    sla_title: String,
    error: Option<String>,
    emergency: Option<String>,
    actions: Vec<ActionView>,
    log: Vec<LogEntryView>,
    log_more: bool,
    comms: Vec<Communication>,
    tasks: Vec<Task>,
    observables: Vec<Observable>,
    events: Vec<Event>,
    documents: Vec<DocumentView>,
    reports: Vec<(&'static str, &'static str)>,
}

const REPORTS: &[(&str, &str)] = &[
    ("help-desk-ticket", "Help Desk Ticket"),
    ("escalation-report", "Escalation Report"),
    ("investigation-status-report", "Investigation Status Report"),
    ("meeting-minutes", "Meeting Minutes"),
    ("lockdown-change-control", "Lock-down Change Control"),
    ("test-report", "Test Report"),
    ("senior-management-report", "Report to Senior Management"),
    ("post-incident-review", "Post-Incident Review"),
    ("bundle", "All controls"),
];

async fn render_ticket(
    s: &AppState,
    ui: &Ui,
    number: &str,
    error: Option<super::Failed>,
) -> Response {
    let t = match s.app.find_ticket(&ui.p, number).await {
        Ok(t) => t,
        Err(e) => return error_page(ui, e),
    };
    let view = match s.app.get_ticket(&ui.p, number).await {
        Ok(v) => v,
        Err(e) => return error_page(ui, e),
    };
    let now = s.app.now_utc();
    let mut acts = actions(ui, &t, now);
    let (code, error) = match error {
        Some(failed) => {
            if let Some(a) = &failed.action {
                for x in acts.iter_mut().filter(|x| x.name == a) {
                    x.open = true;
                    for fld in &mut x.fields {
                        if let Some((_, v)) = failed.typed.iter().find(|(k, _)| k == fld.name) {
                            fld.value = v.clone();
                        }
                    }
                }
            }
            (failed.status, Some(failed.message))
        }
        None => (StatusCode::OK, None),
    };
    let reference = view.number.clone();
    let log = s.app.list_log(&ui.p, &reference, Some(200), None).await;
    let (log, log_more) = match log {
        Ok(p) => (p.items, p.next_cursor.is_some()),
        Err(_) => (vec![], false),
    };
    let comms = s
        .app
        .list_communications(&ui.p, &reference)
        .await
        .unwrap_or_default();
    let tasks = s
        .app
        .list_tasks(&ui.p, &reference)
        .await
        .unwrap_or_default();
    let observables = s
        .app
        .ticket_observables(&ui.p, &reference)
        .await
        .unwrap_or_default();
    let events = s
        .app
        .ticket_events(&ui.p, &reference)
        .await
        .unwrap_or_default();
    let documents = s
        .app
        .list_documents(&ui.p, &reference)
        .await
        .unwrap_or_default();
    let emergency = if view.criticality == Criticality::Emergency {
        s.app
            .list_emergencies(&ui.p)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.ticket_number == reference)
            .map(|e| e.id.to_string())
    } else {
        None
    };
    let (sla, sla_title) = if view.status == TicketStatus::Closed {
        (
            format!(
                "closed after {}",
                super::age(view.updated_at - view.created_at)
            ),
            "time from opening to the last change".to_string(),
        )
    } else {
        (
            format!("open {}", super::age(now - view.created_at)),
            "time since the ticket was opened".to_string(),
        )
    };
    html(
        code,
        &TicketPage {
            l: ui.layout("tickets"),
            t: view,
            sla,
            sla_title,
            error,
            emergency,
            actions: acts,
            log,
            log_more,
            comms,
            tasks,
            observables,
            events,
            documents,
            reports: REPORTS.to_vec(),
        },
    )
}

/// `GET /tickets/{number}`.
pub async fn page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    let ui = match signed_in(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    render_ticket(&s, &ui, &number, None).await
}

/// `POST /tickets/{number}/log` (`text`, `kind`).
pub async fn add_log(
    State(s): State<AppState>,
    Path(number): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let f = match read_form(&s, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req: Result<CreateLogEntryRequest, _> = serde_json::from_value(serde_json::json!({
        "text": f.get("text").unwrap_or(""),
        "kind": f.get("kind").unwrap_or("note"),
    }));
    let result = match req {
        Ok(r) => s.app.add_log_entry(&f.ui.p, &number, &r).await.map(|_| ()),
        Err(e) => Err(AppError::field("kind", e.to_string())),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/tickets/{number}#timeline")).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            render_ticket(&s, &f.ui, &number, Some(super::Failed::new(c, m))).await
        }
    }
}

/// `POST /tickets/{number}/do/{action}`: one workflow action with its form's fields.
pub async fn act(
    State(s): State<AppState>,
    Path((number, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let f = match read_form(&s, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = |n: &str| f.get(n).unwrap_or("").trim().to_string();
    let p = &f.ui.p;
    let result: Result<(), AppError> = match action.as_str() {
        "start" => s
            .app
            .transition(p, &number, &TicketAction::Start, None)
            .await
            .map(|_| ()),
        "resolve" => {
            let a = TicketAction::Resolve {
                resolution: text("resolution"),
                problem_category: text("problem_category"),
            };
            s.app.transition(p, &number, &a, None).await.map(|_| ())
        }
        "accept-closure" => s
            .app
            .transition(p, &number, &TicketAction::AcceptClosure, None)
            .await
            .map(|_| ()),
        "reject-closure" => {
            let a = TicketAction::RejectClosure {
                reason: text("reason"),
            };
            s.app.transition(p, &number, &a, None).await.map(|_| ())
        }
        "reopen" => {
            let a = TicketAction::Reopen {
                reason: text("reason"),
            };
            s.app.transition(p, &number, &a, None).await.map(|_| ())
        }
        "mark-false-positive" => {
            let a = TicketAction::MarkFalsePositive {
                reason: text("reason"),
            };
            s.app.transition(p, &number, &a, None).await.map(|_| ())
        }
        "escalate" => {
            let report = EscalationReport {
                reason: text("reason"),
                impact: text("impact"),
                systems: text("systems")
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect(),
                actions_taken: text("actions_taken"),
            };
            s.app
                .escalate(p, &number, &EscalateRequest { report })
                .await
                .map(|_| ())
        }
        "request-escalation" => s
            .app
            .request_escalation(
                p,
                &number,
                &ReasonBody {
                    reason: text("reason"),
                },
            )
            .await
            .map(|_| ()),
        "declare-emergency" => s
            .app
            .declare_emergency(
                p,
                &number,
                &ReasonBody {
                    reason: text("reason"),
                },
            )
            .await
            .map(|_| ()),
        _ => Err(AppError::NotFound),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/tickets/{number}")).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            let failed = super::Failed {
                status: c,
                message: m,
                action: Some(action),
                typed: f.fields.clone(),
            };
            render_ticket(&s, &f.ui, &number, Some(failed)).await
        }
    }
}

/// `POST /tickets/{number}/documents` (multipart: `csrf_token` first, then `file`,
/// `description`, `source`, `collection_notes`): evidence from the ticket page, streamed,
/// hashed and sealed like the API's upload.
pub async fn upload(
    State(s): State<AppState>,
    Path(number): Path<String>,
    req: Request,
) -> Response {
    use axum::extract::FromRequest;
    let (parts, body) = req.into_parts();
    let ui = match signed_in(&s, &parts.headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = crate::web::check_same_origin(&parts.headers, s.web()) {
        return e.into_response();
    }
    // authorization before a byte of the upload is read
    if let Err(e) = s.app.document_target(&ui.p, &number).await {
        let (c, m) = describe(e);
        return render_ticket(&s, &ui, &number, Some(super::Failed::new(c, m))).await;
    }
    let mut mp =
        match axum::extract::Multipart::from_request(Request::from_parts(parts, body), &s).await {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("The upload could not be read: {}", e.body_text());
                return render_ticket(
                    &s,
                    &ui,
                    &number,
                    Some(super::Failed::new(StatusCode::BAD_REQUEST, msg)),
                )
                .await;
            }
        };
    let received = crate::routes::documents::receive_document(&s, &mut mp, Some(&ui.csrf)).await;
    let result = match received {
        Ok((meta, sealed)) => s
            .app
            .add_document(&ui.p, &number, meta, sealed)
            .await
            .map_err(crate::error::ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to(&format!("/tickets/{number}#documents")).into_response(),
        Err(api) if api.code == "csrf_rejected" => api.into_response(),
        Err(api) => {
            let mut msg = api.message.clone();
            for d in &api.details {
                msg.push_str(&format!(" ({}: {})", d.field, d.message));
            }
            render_ticket(&s, &ui, &number, Some(super::Failed::new(api.status, msg))).await
        }
    }
}
