//! Ticket pages: the list (filters, saved views, live refresh), a new ticket, a ticket with its
//! timeline and every workflow action as a form that says what it needs and why it is not
//! available when it is not.

use super::{Form, Layout, Ui, describe, error_page, html, read_form, signed_in};
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
use firebreak_domain::event::{Communication, Event};
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
    ui: Ui,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
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
    let ui = match super::signed_in_passive(&s, &headers).await {
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
pub async fn new_form(ui: Ui) -> Response {
    let v = NewValues {
        severity: "medium".into(),
        source_kind: "employee".into(),
        ..Default::default()
    };
    new_page(&ui, v, StatusCode::OK, None)
}

/// `POST /tickets/new` (`title`, `description`, `severity`, `source_kind`, `source_name`,
/// `source_contact`, `tags`, `assignee`, `restricted`).
pub async fn create(State(s): State<AppState>, f: Form) -> Response {
    let v = NewValues {
        title: f.get("title").unwrap_or("").to_string(),
        description: f.get("description").unwrap_or("").to_string(),
        severity: f.get("severity").unwrap_or("medium").to_string(),
        // `source` as PRODUCT.md §4 names the field; `source_kind` as the page sends it
        source_kind: f
            .get("source_kind")
            .or_else(|| f.get("source"))
            .unwrap_or("employee")
            .to_string(),
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
    /// A choice among these `(value, label)` pairs.
    pub options: &'static [(&'static str, &'static str)],
    /// A yes/no box.
    pub check: bool,
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
        options: &[],
        check: false,
        value: String::new(),
    }
}

fn optional(name: &'static str, label: &'static str) -> FieldView {
    FieldView {
        required: false,
        ..field(name, label, false)
    }
}

fn choice(
    name: &'static str,
    label: &'static str,
    options: &'static [(&'static str, &'static str)],
) -> FieldView {
    FieldView {
        options,
        ..field(name, label, false)
    }
}

fn checkbox(name: &'static str, label: &'static str) -> FieldView {
    FieldView {
        required: false,
        check: true,
        ..field(name, label, false)
    }
}

const CHANGE_KINDS: &[(&str, &str)] = &[
    (
        "lockdown",
        "lock-down (containment; needs a second person's approval)",
    ),
    ("emergency", "emergency change"),
    ("normal", "normal change"),
];

const PHASES: &[(&str, &str)] = &[
    ("identification", "Identification"),
    ("containment", "Containment"),
    ("eradication", "Eradication"),
    ("recovery", "Recovery"),
    ("lessons_learned", "Lessons learned"),
];

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
            optional("systems", "Systems affected (comma-separated)"),
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
    let team = p.can_write() && p.has_any(firebreak_domain::role::groups::TEAM);
    let team_why = |extra: Option<String>| -> Option<String> {
        if !team {
            Some("this is for the help desk, responders and managers".into())
        } else {
            extra
        }
    };
    let responders = p.can_write()
        && (p.has_any(firebreak_domain::role::groups::RESPONDERS) || has(Role::Manager));
    let mut push = |name: &'static str,
                    label: &'static str,
                    help: &'static str,
                    why: Option<String>,
                    fields: Vec<FieldView>,
                    confirm: bool| {
        out.push(ActionView {
            name,
            label,
            help,
            available: why.is_none(),
            why: why.unwrap_or_default(),
            fields,
            confirm,
            open: false,
        });
    };
    push(
        "de-escalate",
        "De-escalate to normal",
        "Takes the ticket back to the first level, with the reason.",
        if t.criticality != Criticality::Escalation {
            Some(format!(
                "only an escalation can be de-escalated (this ticket is {})",
                t.criticality
            ))
        } else if !responders {
            Some("de-escalating is for responders and managers".into())
        } else {
            None
        },
        vec![field("reason", "Why it goes back to normal", true)],
        false,
    );
    push(
        "task",
        "Add a task",
        "A piece of work on the ticket, with an owner and a due date.",
        team_why(closed.then(|| "the ticket is closed".to_string())),
        vec![
            field("title", "Task", false),
            optional("owner", "Owner (username)"),
            optional("due", "Due (e.g. 2026-12-01)"),
        ],
        false,
    );
    push(
        "change-control",
        "Request a change control",
        "Lock-down changes need a manager's approval (never the requester's) before tier 2 implements them.",
        if !(p.can_write() && (has(Role::SeniorResponder) || has(Role::Manager))) {
            Some("change controls are raised by senior responders and managers".into())
        } else if closed {
            Some("the ticket is closed".into())
        } else {
            None
        },
        vec![
            choice("kind", "Kind", CHANGE_KINDS),
            field(
                "description",
                "What will be changed, and how it is rolled back",
                true,
            ),
            optional("systems", "Systems (comma-separated)"),
        ],
        false,
    );
    push(
        "phase",
        "Set the response phase",
        "Identification, containment, eradication, recovery, lessons learned.",
        if !responders {
            Some("setting the phase is for responders and managers".into())
        } else {
            None
        },
        vec![choice("phase", "Phase", PHASES), optional("note", "Note")],
        false,
    );
    push(
        "post-incident-review",
        "Post-incident review (lessons learned)",
        "Closes the ticket with the review. Action items: one per line, text; owner; due.",
        if !responders {
            Some("the review is written by responders and managers".into())
        } else {
            None
        },
        vec![
            field("what_happened", "What happened", true),
            field("timeline", "Timeline", true),
            field("root_cause", "Root cause", true),
            checkbox(
                "human_root_cause",
                "The root cause is human (a security incident)",
            ),
            field("what_worked", "What worked, what did not", true),
            FieldView {
                required: false,
                ..field(
                    "action_items",
                    "Action items (text; owner; due, one per line)",
                    true,
                )
            },
        ],
        true,
    );
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
    observables: Vec<ObsRow>,
    /// May look observables up and run playbooks (responders).
    automates: bool,
    runs: Vec<RunRow>,
    /// Enabled playbooks a responder may start on the ticket.
    playbooks: Vec<String>,
    events: Vec<Event>,
    documents: Vec<DocumentView>,
    changes: Vec<firebreak_domain::response::ChangeControl>,
    /// The log entry typed before an error.
    log_text: String,
    /// May approve or reject change controls (managers).
    approves: bool,
    /// May implement and verify them (tier 2).
    tier2: bool,
    reports: Vec<(&'static str, &'static str)>,
}

/// An observable with the intel verdicts known for it.
struct ObsRow {
    kind: String,
    value: String,
    /// (connector or source, verdict, summary, link)
    verdicts: Vec<(String, String, String, Option<String>)>,
}

/// A playbook run on the ticket.
struct RunRow {
    id: String,
    playbook: String,
    status: &'static str,
    outcome: String,
    steps: Vec<(String, String, String)>,
    /// The approval it waits for: (role, prompt), and whether this user may decide.
    waiting: Option<(String, String)>,
    decides: bool,
    updated: String,
}

fn run_row(
    r: firebreak_app::automation::RunView,
    p: &firebreak_app::Principal,
    now: time::OffsetDateTime,
) -> RunRow {
    let waiting = r.waiting_for.as_ref().map(|w| {
        let a = &w["approval"];
        (
            a["role"].as_str().unwrap_or("").to_string(),
            a["prompt"].as_str().unwrap_or("").to_string(),
        )
    });
    let decides = r.status == "waiting"
        && p.can_write()
        && waiting
            .as_ref()
            .and_then(|(role, _)| Role::parse(role))
            .is_some_and(|role| p.user.has_role(role));
    let mut steps: Vec<(String, String, String)> = r
        .steps
        .iter()
        .map(|(id, st)| {
            let summary = st
                .error
                .clone()
                .or_else(|| {
                    st.output
                        .get("summary")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            (id.clone(), format!("{} {}", st.action, st.status), summary)
        })
        .collect();
    steps.sort();
    RunRow {
        id: r.id.to_string(),
        playbook: r.playbook,
        status: r.status,
        outcome: r.outcome.or(r.last_error).unwrap_or_default(),
        steps,
        waiting,
        decides,
        updated: super::age(now - r.updated_at),
    }
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
    let log_text = error
        .as_ref()
        .filter(|f| f.action.as_deref() == Some("log"))
        .and_then(|f| f.typed.iter().find(|(k, _)| k == "text"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
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
    // the page's parts are independent reads: fetched together
    let (log, comms, tasks, observables, events, documents, changes) = tokio::join!(
        s.app.list_log(&ui.p, &reference, Some(200), None),
        s.app.list_communications(&ui.p, &reference),
        s.app.list_tasks(&ui.p, &reference),
        s.app.ticket_observables(&ui.p, &reference),
        s.app.ticket_events(&ui.p, &reference),
        s.app.list_documents(&ui.p, &reference),
        s.app.list_change_controls(&ui.p, &reference),
    );
    let (log, log_more) = match log {
        Ok(p) => (p.items, p.next_cursor.is_some()),
        Err(_) => (vec![], false),
    };
    let (comms, tasks, observables, events, documents, changes) = (
        comms.unwrap_or_default(),
        tasks.unwrap_or_default(),
        observables.unwrap_or_default(),
        events.unwrap_or_default(),
        documents.unwrap_or_default(),
        changes.unwrap_or_default(),
    );
    let automates = ui.p.can_write()
        && (ui.p.is_admin() || ui.p.has_any(&[Role::Responder, Role::SeniorResponder]));
    let mut obs_rows = Vec::with_capacity(observables.len());
    for o in observables.into_iter().take(100) {
        let mut verdicts: Vec<(String, String, String, Option<String>)> = s
            .app
            .intel_results(&o.kind, &o.value)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let v = serde_json::to_value(r.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (r.connector, v, r.summary, r.link)
            })
            .collect();
        for ind in s
            .app
            .store()
            .find_indicators(&o.kind, &o.value)
            .await
            .unwrap_or_default()
        {
            let v = if ind.confidence >= 75 {
                "malicious"
            } else {
                "suspicious"
            };
            verdicts.push((
                format!("local: {}", ind.source),
                v.into(),
                format!("indicator, confidence {}", ind.confidence),
                None,
            ));
        }
        obs_rows.push(ObsRow {
            kind: o.kind,
            value: o.value,
            verdicts,
        });
    }
    let runs: Vec<RunRow> = s
        .app
        .list_runs(&ui.p, None, Some(&reference), None, 20)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| run_row(r, &ui.p, now))
        .collect();
    let playbooks: Vec<String> = if automates {
        s.app
            .list_playbooks(&ui.p)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.enabled)
            .map(|p| p.name)
            .collect()
    } else {
        vec![]
    };
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
            observables: obs_rows,
            automates,
            runs,
            playbooks,
            events,
            documents,
            changes,
            log_text,
            approves: ui.p.can_write() && ui.p.user.has_role(Role::Manager),
            tier2: ui.p.can_write()
                && (ui.p.user.has_role(Role::Manager) || ui.p.user.has_role(Role::SeniorResponder)),
            reports: REPORTS.to_vec(),
        },
    )
}

#[derive(Template)]
#[template(path = "ticket_timeline.html")]
struct Timeline {
    log: Vec<LogEntryView>,
}

/// `GET /tickets/{number}/timeline`: the page's timeline entries, for the live refresh.
pub async fn timeline(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    let ui = match super::signed_in_passive(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match s.app.list_log(&ui.p, &number, Some(200), None).await {
        Ok(page) => html(StatusCode::OK, &Timeline { log: page.items }),
        Err(e) => describe(e).into_response(),
    }
}

/// `GET /tickets/{number}`.
pub async fn page(State(s): State<AppState>, ui: Ui, Path(number): Path<String>) -> Response {
    render_ticket(&s, &ui, &number, None).await
}

/// `POST /tickets/{number}/log` (`text`, `kind`).
pub async fn add_log(State(s): State<AppState>, Path(number): Path<String>, f: Form) -> Response {
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
            render_ticket(
                &s,
                &f.ui,
                &number,
                Some(super::Failed {
                    status: c,
                    message: m,
                    action: Some("log".into()),
                    typed: f.fields.clone(),
                }),
            )
            .await
        }
    }
}

/// `POST /tickets/{number}/do/{action}`: one workflow action with its form's fields.
pub async fn act(
    State(s): State<AppState>,
    Path((number, action)): Path<(String, String)>,
    f: Form,
) -> Response {
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
        "de-escalate" => s
            .app
            .de_escalate(
                p,
                &number,
                &ReasonBody {
                    reason: text("reason"),
                },
            )
            .await
            .map(|_| ()),
        "task" => match from_form::<firebreak_domain::response::CreateTask>(serde_json::json!({
            "title": text("title"),
            "owner": blank(&text("owner")),
            "due": blank(&text("due")),
        })) {
            Ok(b) => s.app.create_task(p, &number, &b).await.map(|_| ()),
            Err(e) => Err(e),
        },
        "change-control" => {
            match from_form::<firebreak_domain::response::CreateChangeControl>(serde_json::json!({
                "kind": text("kind"),
                "description": text("description"),
                "systems": comma_list(&text("systems")),
            })) {
                Ok(b) => s
                    .app
                    .create_change_control(p, &number, &b)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "phase" => match from_form::<firebreak_domain::response::PhaseBody>(serde_json::json!({
            "phase": text("phase"),
            "note": blank(&text("note")),
        })) {
            Ok(b) => s.app.set_phase(p, &number, &b).await.map(|_| ()),
            Err(e) => Err(e),
        },
        "post-incident-review" => {
            let items: Result<Vec<serde_json::Value>, AppError> = text("action_items")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .enumerate()
                .map(|(i, l)| {
                    let parts: Vec<&str> = l.split(';').map(str::trim).collect();
                    match parts.as_slice() {
                        [t, o, d] => Ok(serde_json::json!({"text": t, "owner": o, "due": d})),
                        _ => Err(AppError::field(
                            &format!("action_items[{i}]"),
                            "write each item as: text; owner; due",
                        )),
                    }
                })
                .collect();
            match items.and_then(|items| {
                from_form::<firebreak_domain::response::PostIncidentReviewBody>(serde_json::json!({
                    "what_happened": text("what_happened"),
                    "timeline": text("timeline"),
                    "root_cause": text("root_cause"),
                    "human_root_cause": f.get("human_root_cause") == Some("true"),
                    "what_worked": text("what_worked"),
                    "action_items": items,
                }))
            }) {
                Ok(b) => s.app.post_incident_review(p, &number, &b).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "lookup" => s
            .app
            .lookup_observable(p, &text("kind"), &text("value"), &[])
            .await
            .map(|_| ()),
        "run-playbook" => {
            let name = text("playbook");
            s.app
                .run_playbook(
                    p,
                    &name,
                    &firebreak_app::automation::ManualRun {
                        ticket: Some(number.clone()),
                        event: None,
                    },
                )
                .await
                .map(|_| ())
        }
        "approve-run" | "reject-run" => match uuid::Uuid::parse_str(&text("run")) {
            Ok(id) => s
                .app
                .decide_approval(
                    p,
                    id,
                    &firebreak_app::automation::ApprovalDecision {
                        approve: action == "approve-run",
                        comment: blank(&text("comment")),
                    },
                )
                .await
                .map(|_| ()),
            Err(_) => Err(AppError::field("run", "not a run id")),
        },
        _ => Err(AppError::NotFound),
    };
    match result {
        Ok(()) if action == "run-playbook" || action == "approve-run" || action == "reject-run" => {
            Redirect::to(&format!("/tickets/{number}#playbooks")).into_response()
        }
        Ok(()) if action == "lookup" => {
            Redirect::to(&format!("/tickets/{number}#observables")).into_response()
        }
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

/// A request body built from a form's fields; a field that does not fit is named.
pub fn from_form<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        AppError::field(&field, e.inner().to_string())
    })
}

fn blank(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|x| !x.is_empty())
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /tasks/{id}/done` (`ticket`: where to go back to).
pub async fn task_done(State(s): State<AppState>, Path(id): Path<String>, f: Form) -> Response {
    let number = f.get("ticket").unwrap_or("").to_string();
    match s.app.complete_task(&f.ui.p, &id).await {
        Ok(t) => Redirect::to(&format!("/tickets/{}", t.ticket_number)).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            render_ticket(&s, &f.ui, &number, Some(super::Failed::new(c, m))).await
        }
    }
}

/// `POST /change-controls/{id}/{action}` (`approve`, `reject`, `implement`, `verify`;
/// `comment`; `ticket`: where to go back to).
pub async fn change_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    use firebreak_domain::response::ChangeStatus;
    let (parts, body) = req.into_parts();
    let f = match read_form(&s, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let number = f.get("ticket").unwrap_or("").to_string();
    let status = match action.as_str() {
        "approve" => Some(ChangeStatus::Approved),
        "reject" => Some(ChangeStatus::Rejected),
        "implement" => Some(ChangeStatus::Implemented),
        "verify" => Some(ChangeStatus::Verified),
        _ => None,
    };
    let result = match status {
        Some(st) => {
            let comment = f.text("comment");
            s.app
                .change_control_action(&f.ui.p, &id, st, comment.as_deref())
                .await
                .map(|c| c.ticket_number)
        }
        None => Err(AppError::NotFound),
    };
    match result {
        Ok(n) => Redirect::to(&format!("/tickets/{n}#changes")).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            render_ticket(&s, &f.ui, &number, Some(super::Failed::new(c, m))).await
        }
    }
}
