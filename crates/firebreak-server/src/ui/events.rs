//! The help desk's pages: the event queue with bulk triage, an event, suppression rules.

use super::{Form, Layout, Ui, describe, error_page, html};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use firebreak_app::helpdesk::ListEvents;
use firebreak_domain::event::{
    DismissEvents, Event, MergeEvents, SuppressionRule, SuppressionRuleBody, TicketFromEvents,
};
use firebreak_domain::ticket::{EventStatus, Severity};
use serde::Deserialize;
use uuid::Uuid;

/// The queue's filters as the page's form sends them (blank means "any").
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub cursor: String,
    /// After a bulk dismissal: how many events were dismissed.
    #[serde(default)]
    pub dismissed: Option<u32>,
}

impl QueueQuery {
    fn status(&self) -> &str {
        if self.status.is_empty() {
            "new"
        } else {
            &self.status
        }
    }

    fn href(&self, cursor: Option<&str>) -> String {
        format!("/events?{}", self.query(cursor))
    }

    /// The first page's rows alone, for the live refresh.
    fn rows_href(&self) -> String {
        format!("/events/rows?{}", self.query(None))
    }

    fn list(&self) -> ListEvents {
        let status = self.status();
        ListEvents {
            status: (status != "all").then(|| status.to_string()),
            source: Some(self.source.trim().to_string()).filter(|x| !x.is_empty()),
            severity: Some(self.severity.clone()).filter(|x| !x.is_empty()),
            q: Some(self.q.trim().to_string()).filter(|x| !x.is_empty()),
            limit: Some(100),
            cursor: Some(self.cursor.clone()).filter(|x| !x.is_empty()),
        }
    }

    fn query(&self, cursor: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("status", self.status());
        for (k, v) in [
            ("severity", &self.severity),
            ("source", &self.source),
            ("q", &self.q),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        s.finish()
    }
}

pub struct QueueFilters {
    pub status: String,
    pub severity: String,
    pub source: String,
    pub q: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct QueuePage {
    l: Layout,
    f: QueueFilters,
    counts: Vec<(String, i64)>,
    statuses: Vec<&'static str>,
    severities: Vec<&'static str>,
    events: Vec<Event>,
    next: Option<String>,
    back: String,
    rows_url: String,
    /// What a failed bulk form held: reason, ticket, the selected events.
    typed_reason: String,
    typed_ticket: String,
    selected: Vec<String>,
    error: Option<String>,
}

async fn render_queue(
    s: &AppState,
    ui: &Ui,
    q: &QueueQuery,
    error: Option<(StatusCode, String)>,
    form: &[(String, String)],
) -> Response {
    let status = q.status();
    let list = q.list();
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    let (page, error, code) = match s.app.list_events(&ui.p, &list).await {
        Ok(p) => (p, error, code),
        Err(e) => {
            let (c, m) = describe(e);
            if c.is_server_error() {
                return error_page(ui, firebreak_app::AppError::Unavailable(m));
            }
            (
                firebreak_domain::api::Page {
                    items: vec![],
                    next_cursor: None,
                },
                Some(m),
                c,
            )
        }
    };
    let counts = s
        .app
        .event_counts(&ui.p)
        .await
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    let mut l = ui.layout("events");
    l.notice = q.dismissed.map(|n| format!("{n} event(s) dismissed."));
    html(
        code,
        &QueuePage {
            l,
            f: QueueFilters {
                status: status.to_string(),
                severity: q.severity.clone(),
                source: q.source.clone(),
                q: q.q.clone(),
            },
            counts,
            statuses: EventStatus::ALL.iter().map(|s| s.as_str()).collect(),
            severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
            events: page.items,
            next: page.next_cursor.as_deref().map(|c| q.href(Some(c))),
            back: q.href(None),
            rows_url: q.rows_href(),
            typed_reason: typed(&form.to_vec(), "reason").to_string(),
            typed_ticket: typed(&form.to_vec(), "ticket").to_string(),
            selected: form
                .iter()
                .filter(|(k, _)| k == "ids")
                .map(|(_, v)| v.clone())
                .collect(),
            error,
        },
    )
}

/// `GET /events`: the queue, newest first; `new` events by default.
pub async fn queue(
    State(s): State<AppState>,
    ui: Ui,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return render_queue(
                &s,
                &ui,
                &QueueQuery::default(),
                Some((
                    StatusCode::BAD_REQUEST,
                    format!("The filters could not be read: {e}"),
                )),
                &[],
            )
            .await;
        }
    };
    render_queue(&s, &ui, &q, None, &[]).await
}

#[derive(Template)]
#[template(path = "event_rows.html")]
struct Rows {
    l: Layout,
    events: Vec<Event>,
    selected: Vec<String>,
}

/// `GET /events/rows`: the queue's first page of rows, for the live refresh (a request the
/// page makes by itself: not activity, and a 401 that sends the page to sign in).
pub async fn rows(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ui = match super::signed_in_passive(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(Query(q)) = q else {
        return (StatusCode::BAD_REQUEST, "bad filters").into_response();
    };
    let list = ListEvents {
        cursor: None,
        ..q.list()
    };
    match s.app.list_events(&ui.p, &list).await {
        Ok(page) => html(
            StatusCode::OK,
            &Rows {
                l: ui.layout("events"),
                events: page.items,
                selected: vec![],
            },
        ),
        Err(e) => describe(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "event_counts.html")]
struct Counts {
    counts: Vec<(String, i64)>,
}

/// `GET /events/counts`: the queue's counts per status, for the live refresh.
pub async fn counts(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let ui = match super::signed_in_passive(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match s.app.event_counts(&ui.p).await {
        Ok(m) => html(
            StatusCode::OK,
            &Counts {
                counts: m.into_iter().collect(),
            },
        ),
        Err(e) => describe(e).into_response(),
    }
}

/// Where to go back to after a bulk action: a page of the queue or an event, nothing else.
fn safe_back(back: Option<&str>) -> String {
    match back {
        Some(b)
            if b.starts_with("/events")
                && !b.starts_with("//")
                && b.bytes().all(|c| c.is_ascii_graphic()) =>
        {
            b.to_string()
        }
        _ => "/events".to_string(),
    }
}

fn with_dismissed(back: &str, n: usize) -> String {
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}dismissed={n}")
}

/// `POST /events/bulk` (`ids` repeated, `action` = ticket | merge | dismiss, `reason`, `ticket`).
pub async fn bulk(State(s): State<AppState>, f: Form) -> Response {
    let back = safe_back(f.get("back"));
    let mut ids = Vec::new();
    for raw in f.all("ids") {
        match raw.parse::<Uuid>() {
            Ok(id) => ids.push(id),
            Err(_) => {
                return bulk_failed(
                    &s,
                    &f,
                    &back,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("ids: {raw:?} is not an event id"),
                )
                .await;
            }
        }
    }
    if ids.is_empty() {
        return bulk_failed(
            &s,
            &f,
            &back,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Select at least one event (ids).".into(),
        )
        .await;
    }
    let action = f.get("action").unwrap_or("");
    let result: Result<String, firebreak_app::AppError> = match action {
        "ticket" => s
            .app
            .ticket_from_events(
                &f.ui.p,
                &TicketFromEvents {
                    events: ids,
                    title: f.text("title"),
                    description: None,
                    severity: None,
                    priority: None,
                    restricted: false,
                    tags: vec![],
                },
            )
            .await
            .map(|t| format!("/tickets/{}", t.number)),
        "merge" => {
            let Some(ticket) = f.text("ticket") else {
                return bulk_failed(
                    &s,
                    &f,
                    &back,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ticket: name the ticket to merge into (e.g. SEC-000042).".into(),
                )
                .await;
            };
            s.app
                .merge_events(
                    &f.ui.p,
                    &MergeEvents {
                        events: ids,
                        ticket,
                    },
                )
                .await
                .map(|t| format!("/tickets/{}", t.number))
        }
        "dismiss" => {
            let Some(reason) = f.text("reason") else {
                return bulk_failed(
                    &s,
                    &f,
                    &back,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "reason: say why these events are false positives.".into(),
                )
                .await;
            };
            match s
                .app
                .dismiss_events(
                    &f.ui.p,
                    &DismissEvents {
                        events: ids,
                        reason,
                    },
                )
                .await
            {
                Ok(out) if out.failed.is_empty() => Ok(with_dismissed(&back, out.done.len())),
                Ok(out) => {
                    let mut msg = format!("{} event(s) dismissed; not dismissed:", out.done.len());
                    for x in &out.failed {
                        msg.push_str(&format!(" {}: {};", x.event, x.message));
                    }
                    return bulk_failed(&s, &f, &back, StatusCode::CONFLICT, msg).await;
                }
                Err(e) => Err(e),
            }
        }
        other => {
            return bulk_failed(
                &s,
                &f,
                &back,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("action: {other:?} is not one of ticket, merge, dismiss"),
            )
            .await;
        }
    };
    match result {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => {
            let (code, msg) = describe(e);
            bulk_failed(&s, &f, &back, code, msg).await
        }
    }
}

async fn bulk_failed(
    s: &AppState,
    f: &Form,
    back: &str,
    code: StatusCode,
    msg: String,
) -> Response {
    if let Some(id) = back.strip_prefix("/events/") {
        return render_event(s, &f.ui, id, Some((code, msg)), &f.fields).await;
    }
    let q: QueueQuery = back
        .split_once('?')
        .and_then(|(_, qs)| serde_urlencoded::from_str(qs).ok())
        .unwrap_or_default();
    render_queue(s, &f.ui, &q, Some((code, msg)), &f.fields).await
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    l: Layout,
    e: Event,
    ticket: Option<String>,
    suggested_name: String,
    suggested_condition: String,
    /// What was typed into the rule form (`from_event`) or a triage form (`action`) that failed.
    rule_typed: super::Fields,
    triage_typed: super::Fields,
    error: Option<String>,
}

fn typed<'a>(fields: &'a super::Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

impl EventPage {
    fn rule(&self, name: &str) -> &str {
        typed(&self.rule_typed, name)
    }

    fn triage(&self, name: &str) -> &str {
        typed(&self.triage_typed, name)
    }
}

/// A CEL string literal (JSON's escapes are CEL's).
fn cel_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The condition that matches events like this one: same source and rule (or title), and host.
pub fn suggested_condition(e: &Event) -> String {
    let mut parts = vec![format!("event.source == {}", cel_str(&e.source))];
    match &e.rule_id {
        Some(r) => parts.push(format!("event.rule_id == {}", cel_str(r))),
        None => parts.push(format!("event.title == {}", cel_str(&e.title))),
    }
    if let Some(h) = &e.host {
        parts.push(format!("event.host == {}", cel_str(h)));
    }
    parts.join(" && ")
}

async fn render_event(
    s: &AppState,
    ui: &Ui,
    id: &str,
    error: Option<(StatusCode, String)>,
    form: &[(String, String)],
) -> Response {
    let e = match s.app.find_event(&ui.p, id).await {
        Ok(e) => e,
        Err(x) => return error_page(ui, x),
    };
    let ticket = match e.ticket_id {
        Some(t) => s
            .app
            .get_ticket(&ui.p, &t.to_string())
            .await
            .ok()
            .map(|t| t.number),
        None => None,
    };
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    let from_rule = form.iter().any(|(k, _)| k == "from_event");
    let rule_typed: super::Fields = if from_rule { form.to_vec() } else { vec![] };
    let triage_typed: super::Fields = if from_rule { vec![] } else { form.to_vec() };
    let (suggested_name, suggested_condition) = if from_rule {
        (
            typed(&rule_typed, "name").to_string(),
            typed(&rule_typed, "condition").to_string(),
        )
    } else {
        (
            format!("{}: {}", e.source, e.title)
                .chars()
                .take(200)
                .collect(),
            suggested_condition(&e),
        )
    };
    html(
        code,
        &EventPage {
            l: ui.layout("events"),
            suggested_condition,
            suggested_name,
            rule_typed,
            triage_typed,
            ticket,
            e,
            error,
        },
    )
}

/// `GET /events/{id}`.
pub async fn detail(State(s): State<AppState>, ui: Ui, Path(id): Path<String>) -> Response {
    render_event(&s, &ui, &id, None, &[]).await
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    l: Layout,
    rules: Vec<SuppressionRule>,
    error: Option<String>,
}

async fn render_rules(
    s: &AppState,
    ui: &Ui,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let rules = match s.app.list_suppression_rules(&ui.p).await {
        Ok(r) => r,
        Err(e) => return error_page(ui, e),
    };
    let mut l = ui.layout("rules");
    l.notice = notice;
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    html(code, &RulesPage { l, rules, error })
}

#[derive(Debug, Default, Deserialize)]
pub struct RulesQuery {
    /// After a change: `created`, `enabled` or `disabled`.
    #[serde(default)]
    pub done: String,
}

/// `GET /suppression-rules`.
pub async fn rules(
    State(s): State<AppState>,
    ui: Ui,
    q: Result<Query<RulesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = match q.ok().map(|Query(q)| q.done).as_deref() {
        Some("created") => {
            Some("The rule was created; matching events are suppressed from now on.".to_string())
        }
        Some("enabled") => Some("The rule was enabled.".to_string()),
        Some("disabled") => Some("The rule was disabled.".to_string()),
        _ => None,
    };
    render_rules(&s, &ui, notice, None).await
}

/// `POST /suppression-rules` (`name`, `condition`, `reason`, `expires_days`; `from_event` to
/// come back to the event on an error).
pub async fn create_rule(State(s): State<AppState>, f: Form) -> Response {
    let expires_at = match f.text("expires_days") {
        None => None,
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(s.app.now_utc() + time::Duration::days(n)),
            _ => {
                return rule_failed(
                    &s,
                    &f,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "expires_days: a whole number of days from 1 to 3650".into(),
                )
                .await;
            }
        },
    };
    let body = SuppressionRuleBody {
        name: f.get("name").unwrap_or("").to_string(),
        condition: f.get("condition").unwrap_or("").to_string(),
        reason: f.get("reason").unwrap_or("").to_string(),
        owner: None,
        expires_at,
        enabled: true,
    };
    match s.app.create_suppression_rule(&f.ui.p, &body).await {
        Ok(_) => Redirect::to("/suppression-rules?done=created").into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            rule_failed(&s, &f, c, m).await
        }
    }
}

async fn rule_failed(s: &AppState, f: &Form, code: StatusCode, msg: String) -> Response {
    match f.get("from_event") {
        Some(id) => render_event(s, &f.ui, id, Some((code, msg)), &f.fields).await,
        None => render_rules(s, &f.ui, None, Some((code, msg))).await,
    }
}

/// `POST /suppression-rules/{id}/toggle`: enable or disable.
pub async fn toggle_rule(State(s): State<AppState>, Path(id): Path<String>, f: Form) -> Response {
    let rule = match s.app.get_suppression_rule(&f.ui.p, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(&f.ui, e),
    };
    let body = SuppressionRuleBody {
        name: rule.name.clone(),
        condition: rule.condition.clone(),
        reason: rule.reason.clone(),
        owner: Some(rule.owner.clone()),
        expires_at: rule.expires_at,
        enabled: !rule.enabled,
    };
    match s
        .app
        .update_suppression_rule(&f.ui.p, &id, Some(&body))
        .await
    {
        Ok(_) => {
            let what = if rule.enabled { "disabled" } else { "enabled" };
            Redirect::to(&format!("/suppression-rules?done={what}")).into_response()
        }
        Err(e) => {
            let (c, m) = describe(e);
            render_rules(&s, &f.ui, None, Some((c, m))).await
        }
    }
}

/// What the report form holds (kept when it comes back with an error).
#[derive(Debug, Default)]
pub struct ReportValues {
    pub title: String,
    pub description: String,
    pub severity: String,
    pub host: String,
    pub reporter_kind: String,
    pub reporter_name: String,
    pub reporter_contact: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    l: Layout,
    v: ReportValues,
    severities: Vec<&'static str>,
    reporter_kinds: Vec<&'static str>,
    reported: Option<Uuid>,
    error: Option<String>,
}

fn report_page(
    ui: &Ui,
    v: ReportValues,
    code: StatusCode,
    reported: Option<Uuid>,
    error: Option<String>,
) -> Response {
    html(
        code,
        &ReportPage {
            l: ui.layout("report"),
            v,
            severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
            reporter_kinds: firebreak_domain::ticket::SourceKind::ALL
                .iter()
                .map(|s| s.as_str())
                .filter(|s| *s != "internal")
                .collect(),
            reported,
            error,
        },
    )
}

fn blank_report(ui: &Ui) -> ReportValues {
    ReportValues {
        severity: "medium".into(),
        reporter_kind: "employee".into(),
        reporter_name: ui.p.username().to_string(),
        reporter_contact: ui.p.user.email.clone().unwrap_or_default(),
        ..Default::default()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    /// After a report: the event it became.
    #[serde(default)]
    pub reported: Option<Uuid>,
}

/// `GET /report`: the form people use to report what they saw.
pub async fn report_form(
    ui: Ui,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let v = blank_report(&ui);
    let reported = q.ok().and_then(|Query(q)| q.reported);
    report_page(&ui, v, StatusCode::OK, reported, None)
}

/// `POST /report` (`title`, `description`, `severity`, `host`, `reporter_kind`,
/// `reporter_name`, `reporter_contact`).
pub async fn report(State(s): State<AppState>, f: Form) -> Response {
    let v = ReportValues {
        title: f.get("title").unwrap_or("").to_string(),
        description: f.get("description").unwrap_or("").to_string(),
        severity: f.get("severity").unwrap_or("medium").to_string(),
        host: f.get("host").unwrap_or("").to_string(),
        reporter_kind: f.get("reporter_kind").unwrap_or("employee").to_string(),
        reporter_name: f.get("reporter_name").unwrap_or("").to_string(),
        reporter_contact: f.get("reporter_contact").unwrap_or("").to_string(),
    };
    let blank = |x: &str| Some(x.trim().to_string()).filter(|t| !t.is_empty());
    let body = serde_json::json!({
        "title": v.title,
        "description": blank(&v.description),
        "severity": blank(&v.severity),
        "host": blank(&v.host),
        "reporter": {
            "kind": v.reporter_kind.trim(),
            "name": blank(&v.reporter_name),
            "contact": blank(&v.reporter_contact),
        },
    });
    let parsed: Result<firebreak_domain::event::ReportEvent, _> = serde_json::from_value(body);
    let result = match parsed {
        Ok(b) => s.app.report_event(&f.ui.p, &b).await,
        Err(e) => Err(firebreak_app::AppError::field(
            "reporter_kind",
            format!("could not be read: {e}"),
        )),
    };
    match result {
        Ok(e) => Redirect::to(&format!("/report?reported={}", e.id)).into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            report_page(&f.ui, v, c, None, Some(m))
        }
    }
}
