//! The written controls, generated from the records (never typed): Help Desk Ticket, Escalation
//! Report, Investigation Status Report, Meeting Minutes, Lock-down Change Control, Test Report,
//! Report to Senior Management, Post-Incident Review, and the whole-case bundle. Each is built
//! as a small document model and rendered to Markdown or to HTML (every user value escaped).

use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::api::format_number;
use firebreak_domain::response::*;
use firebreak_domain::ticket::Ticket;
use firebreak_store::RecordFilter;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The report kinds of PRODUCT.md §4.1.
pub const KINDS: [&str; 10] = [
    "help-desk-ticket",
    "escalation-report",
    "investigation-status-report",
    "meeting-minutes",
    "lockdown-change-control",
    "test-report",
    "senior-management-report",
    "post-incident-review",
    "compliance-report",
    "bundle",
];

/// A block of a report.
#[derive(Debug, Clone)]
pub enum Block {
    Heading(u8, String),
    Para(String),
    Fields(Vec<(String, String)>),
    List(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
}

/// A rendered-agnostic report.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub ticket_number: String,
    pub blocks: Vec<Block>,
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(x) => x.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Escapes user text for Markdown: inline markup, and block markers at the start of a line
/// (so a value can never start a list, heading, quote, fence or rule); `\r` becomes a newline
/// first, so it cannot hide a line break.
fn md_escape(t: &str) -> String {
    let t = t.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<String> = t
        .split('\n')
        .map(|line| {
            let line = line.trim_start();
            let inline = md_inline(line);
            let numbered = {
                let digits = line.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && matches!(line[digits..].chars().next(), Some('.' | ')'))
            };
            if line.starts_with(['-', '+', '=', '~']) || numbered {
                format!("\\{inline}")
            } else {
                inline
            }
        })
        .collect();
    lines.join("\n")
}

fn md_inline(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = format!("# {} — {}\n\n", md_escape(&self.title), self.ticket_number);
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    out.push_str(&format!(
                        "{} {}\n\n",
                        "#".repeat(usize::from(*l).clamp(2, 6)),
                        md_escape(t)
                    ));
                }
                Block::Para(t) => out.push_str(&format!("{}\n\n", md_escape(t))),
                Block::Fields(f) => {
                    for (k, v) in f {
                        out.push_str(&format!(
                            "- **{}:** {}\n",
                            md_escape(k),
                            md_escape(v).replace('\n', " ")
                        ));
                    }
                    out.push('\n');
                }
                Block::List(items) => {
                    for i in items {
                        out.push_str(&format!("- {}\n", md_escape(i).replace('\n', " ")));
                    }
                    out.push('\n');
                }
                Block::Table(h, rows) => {
                    let cell = |c: &str| md_escape(c).replace('\n', " ");
                    out.push_str(&format!(
                        "| {} |\n",
                        h.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                    ));
                    out.push_str(&format!("|{}\n", "---|".repeat(h.len())));
                    for r in rows {
                        out.push_str(&format!(
                            "| {} |\n",
                            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                        ));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn html(&self) -> String {
        let mut body = format!(
            "<header><p class=\"ref\">{}</p><h1>{}</h1></header>\n",
            html_escape(&self.ticket_number),
            html_escape(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let l = (*l).clamp(2, 6);
                    body.push_str(&format!("<h{l}>{}</h{l}>\n", html_escape(t)));
                }
                Block::Para(t) => body.push_str(&format!(
                    "<p>{}</p>\n",
                    html_escape(t).replace('\n', "<br>")
                )),
                Block::Fields(f) => {
                    body.push_str("<dl>\n");
                    for (k, v) in f {
                        body.push_str(&format!(
                            "<dt>{}</dt><dd>{}</dd>\n",
                            html_escape(k),
                            html_escape(v).replace('\n', "<br>")
                        ));
                    }
                    body.push_str("</dl>\n");
                }
                Block::List(items) => {
                    body.push_str("<ul>\n");
                    for i in items {
                        body.push_str(&format!("<li>{}</li>\n", html_escape(i)));
                    }
                    body.push_str("</ul>\n");
                }
                Block::Table(h, rows) => {
                    body.push_str("<table><thead><tr>");
                    for c in h {
                        body.push_str(&format!("<th>{}</th>", html_escape(c)));
                    }
                    body.push_str("</tr></thead><tbody>\n");
                    for r in rows {
                        body.push_str("<tr>");
                        for c in r {
                            body.push_str(&format!("<td>{}</td>", html_escape(c)));
                        }
                        body.push_str("</tr>\n");
                    }
                    body.push_str("</tbody></table>\n");
                }
            }
        }
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · {}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.45}}\
.ref{{font-weight:700;color:#b40000;letter-spacing:.05em}}dt{{font-weight:600}}dd{{margin:0 0 .5rem 0}}\
table{{border-collapse:collapse;width:100%}}th,td{{border:1px solid #999;padding:.3rem .5rem;text-align:left;vertical-align:top}}</style>\
</head><body>\n{body}</body></html>\n",
            html_escape(&self.ticket_number),
            html_escape(&self.title)
        )
    }
}

/// The period report: tickets opened in `[from, to)` that the principal may see, with counts
/// and the mean time to resolve of those closed.
pub struct PeriodQuery {
    pub from: time::Date,
    pub to: time::Date,
}

fn yes(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

impl App {
    /// (control, required, present) for the compliance report.
    async fn compliance_rows(&self, t: &Ticket) -> AppResult<Vec<Vec<String>>> {
        use firebreak_domain::ticket::{Criticality, TicketStatus};
        let escalated = t.criticality != Criticality::Normal;
        let emergencies: Vec<Emergency> = self
            .records("emergency", t)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect();
        let emergency = !emergencies.is_empty();
        let course = |c: Course| emergencies.iter().any(|e| e.course_of_action == Some(c));
        let changes: Vec<ChangeControl> = self
            .records("change_control", t)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect();
        let meetings: Vec<Meeting> = self
            .records("meeting", t)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect();
        let tests: Vec<TestReport> = self
            .records("test_report", t)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect();
        let has = |v: &Vec<firebreak_store::WorkflowRecord>| !v.is_empty();
        let rows = vec![
            (
                "Help Desk Ticket with source, severity, priority and number",
                true,
                true,
            ),
            (
                "Escalation Report",
                escalated,
                has(&self.records("escalation_report", t).await?),
            ),
            (
                "Change controls authorized by a second person",
                changes.iter().any(|c| c.needs_manager_approval),
                changes.iter().any(|c| c.needs_manager_approval)
                    && changes
                        .iter()
                        .filter(|c| c.needs_manager_approval)
                        .all(|c| c.decided_by.as_ref().is_some_and(|d| d != &c.requested_by)),
            ),
            (
                "Meeting minutes finalized with a manager attending",
                meetings.iter().any(|m| m.minutes.is_some()),
                meetings.iter().any(|m| m.minutes.is_some())
                    && meetings
                        .iter()
                        .filter(|m| m.minutes.is_some())
                        .all(|m| m.finalized),
            ),
            (
                "Status reports",
                emergency,
                has(&self.records("status_report", t).await?),
            ),
            (
                "Course of action chosen",
                emergency,
                emergency && emergencies.iter().all(|e| e.course_of_action.is_some()),
            ),
            (
                "Lock-down change control approved",
                course(Course::LockdownRepair),
                changes.iter().any(|c| {
                    c.kind == ChangeKind::Lockdown
                        && c.decided_by.is_some()
                        && c.status != ChangeStatus::Rejected
                }),
            ),
            (
                "Test Report with passing compliance tests",
                course(Course::LockdownRepair),
                tests.iter().any(|r| r.body.all_pass()),
            ),
            (
                "Report to Senior Management",
                course(Course::FalsePositive),
                has(&self.records("senior_management_report", t).await?),
            ),
            (
                "Post-Incident Review",
                escalated && t.status == TicketStatus::Closed,
                has(&self.records("post_incident_review", t).await?),
            ),
        ];
        Ok(rows
            .into_iter()
            .map(|(c, req, ok)| {
                let state = if ok {
                    "present"
                } else if req {
                    "MISSING"
                } else {
                    "not required"
                };
                vec![c.to_string(), yes(req), state.into()]
            })
            .collect())
    }

    async fn records(
        &self,
        kind: &str,
        t: &Ticket,
    ) -> AppResult<Vec<firebreak_store::WorkflowRecord>> {
        Ok(self
            .store
            .list_records(&RecordFilter {
                kind: kind.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?)
    }

    fn data(r: &firebreak_store::WorkflowRecord) -> Value {
        serde_json::from_str(&r.data).unwrap_or(Value::Null)
    }

    /// The incident-management report for a period (management, auditors, the team).
    pub async fn period_report(&self, p: &Principal, q: &PeriodQuery) -> AppResult<Report> {
        use firebreak_domain::role::groups;
        if !p.can_read() || !p.has_any(groups::READERS) {
            return Err(AppError::Forbidden(
                "period reports are for the response team, management, auditors and admins".into(),
            ));
        }
        if q.to <= q.from {
            return Err(AppError::field("to", "must be after from"));
        }
        let from = q.from.midnight().assume_utc();
        let to = q.to.midnight().assume_utc();
        let mut tickets = Vec::new();
        let mut cursor: Option<String> = None;
        'pages: loop {
            let page = self
                .list_tickets(
                    p,
                    &crate::tickets::ListTickets {
                        limit: Some(crate::tickets::MAX_LIMIT),
                        cursor: cursor.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            for t in page.items {
                if t.created_at < from {
                    // newest first: everything further is older
                    break 'pages;
                }
                if t.created_at < to {
                    tickets.push(t);
                }
            }
            match page.next_cursor {
                Some(c) if tickets.len() < 100_000 => cursor = Some(c),
                _ => break,
            }
        }
        tickets.reverse();
        let count = |f: &dyn Fn(&firebreak_domain::api::TicketView) -> bool| {
            tickets.iter().filter(|t| f(t)).count().to_string()
        };
        let closed: Vec<_> = tickets
            .iter()
            .filter(|t| t.status == firebreak_domain::ticket::TicketStatus::Closed)
            .collect();
        let mttr = if closed.is_empty() {
            "—".to_string()
        } else {
            let secs: i64 = closed
                .iter()
                .map(|t| (t.updated_at - t.created_at).whole_seconds())
                .sum();
            let mean = secs / closed.len() as i64;
            format!("{}h {:02}m", mean / 3600, (mean % 3600) / 60)
        };
        use firebreak_domain::ticket::Criticality;
        let blocks = vec![
            Block::Fields(vec![
                (
                    "Period".into(),
                    format!("{} to {} (UTC, end exclusive)", q.from, q.to),
                ),
                ("Tickets opened".into(), tickets.len().to_string()),
                (
                    "Normal".into(),
                    count(&|t| t.criticality == Criticality::Normal),
                ),
                (
                    "Escalations".into(),
                    count(&|t| t.criticality == Criticality::Escalation),
                ),
                (
                    "Emergencies".into(),
                    count(&|t| t.criticality == Criticality::Emergency),
                ),
                ("Closed".into(), closed.len().to_string()),
                ("False positives".into(), count(&|t| t.false_positive)),
                (
                    "Security incidents (human root cause)".into(),
                    count(&|t| t.incident),
                ),
                ("Mean time to resolve (closed tickets)".into(), mttr),
            ]),
            Block::Heading(2, "Tickets".into()),
            Block::Table(
                vec![
                    "Number".into(),
                    "Opened".into(),
                    "Title".into(),
                    "Severity".into(),
                    "Criticality".into(),
                    "Status".into(),
                ],
                tickets
                    .iter()
                    .map(|t| {
                        vec![
                            t.number.clone(),
                            ts(t.created_at),
                            t.title.clone(),
                            t.severity.as_str().into(),
                            t.criticality.as_str().into(),
                            t.status.as_str().into(),
                        ]
                    })
                    .collect(),
            ),
        ];
        Ok(Report {
            title: "Incident Management Report".into(),
            ticket_number: format!("{} – {}", q.from, q.to),
            blocks,
        })
    }

    /// Builds a written control for a ticket the principal may read. `NotFound` for an unknown
    /// kind; `Conflict` (`nothing_to_report`) when the ticket has no such record yet.
    pub async fn report(&self, p: &Principal, reference: &str, kind: &str) -> AppResult<Report> {
        let t = self.find_ticket(p, reference).await?;
        if !KINDS.contains(&kind) {
            return Err(AppError::NotFound);
        }
        let number = format_number(&self.config.ticket_prefix, t.number);
        if kind == "bundle" {
            let mut blocks = Vec::new();
            for k in KINDS.iter().filter(|k| **k != "bundle") {
                match self.report_blocks(&t, k).await {
                    Ok((title, b)) => {
                        blocks.push(Block::Heading(2, title));
                        blocks.extend(b.into_iter().map(|b| match b {
                            Block::Heading(l, x) => Block::Heading(l + 1, x),
                            other => other,
                        }));
                    }
                    Err(AppError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Report {
                title: "Case bundle".into(),
                ticket_number: number,
                blocks,
            });
        }
        let (title, blocks) = self.report_blocks(&t, kind).await?;
        Ok(Report {
            title,
            ticket_number: number,
            blocks,
        })
    }

    async fn report_blocks(&self, t: &Ticket, kind: &str) -> AppResult<(String, Vec<Block>)> {
        let nothing = |what: &str| AppError::Conflict {
            code: "nothing_to_report",
            message: format!("the ticket has no {what} yet"),
        };
        let mut b = Vec::new();
        let title = match kind {
            "help-desk-ticket" => {
                b.push(Block::Fields(vec![
                    ("Title".into(), t.title.clone()),
                    (
                        "Source".into(),
                        format!(
                            "{} {}",
                            t.source.kind.as_str(),
                            t.source.name.clone().unwrap_or_default()
                        )
                        .trim()
                        .to_string(),
                    ),
                    (
                        "Source contact".into(),
                        t.source.contact.clone().unwrap_or_else(|| "—".into()),
                    ),
                    ("Severity".into(), t.severity.as_str().into()),
                    ("Priority".into(), t.priority.as_str().into()),
                    ("Criticality".into(), t.criticality.as_str().into()),
                    ("Tier".into(), t.tier.to_string()),
                    ("Status".into(), t.status.as_str().into()),
                    ("Owner".into(), t.owner.clone()),
                    (
                        "Assignee".into(),
                        t.assignee.clone().unwrap_or_else(|| "—".into()),
                    ),
                    (
                        "Opened".into(),
                        format!("{} by {}", ts(t.created_at), t.created_by),
                    ),
                    (
                        "Resolution".into(),
                        t.resolution.clone().unwrap_or_else(|| "—".into()),
                    ),
                    (
                        "Problem category".into(),
                        t.problem_category.clone().unwrap_or_else(|| "—".into()),
                    ),
                ]));
                b.push(Block::Heading(2, "Description".into()));
                b.push(Block::Para(if t.description.is_empty() {
                    "—".into()
                } else {
                    t.description.clone()
                }));
                let log = self.store.ticket_audit(t.id, 0, 5000).await?;
                b.push(Block::Heading(2, "Incident log".into()));
                b.push(Block::Table(
                    vec![
                        "#".into(),
                        "When".into(),
                        "Who".into(),
                        "What".into(),
                        "Details".into(),
                    ],
                    log.into_iter()
                        .map(|r| {
                            let v = crate::tickets::log_view(r);
                            let detail = if v.text.is_empty() {
                                v.details.to_string()
                            } else {
                                v.text.clone()
                            };
                            vec![v.seq.to_string(), ts(v.at), v.actor, v.action, detail]
                        })
                        .collect(),
                ));
                "Help Desk Ticket"
            }
            "escalation-report" => {
                let recs = self.records("escalation_report", t).await?;
                if recs.is_empty() {
                    return Err(nothing("escalation report"));
                }
                for r in recs {
                    let d = Self::data(&r);
                    let rep = &d["report"];
                    b.push(Block::Heading(
                        2,
                        format!(
                            "Escalation of {} by {}",
                            ts(r.created_at),
                            s(&d["filed_by"])
                        ),
                    ));
                    b.push(Block::Fields(vec![
                        ("Reason".into(), s(&rep["reason"])),
                        ("Impact".into(), s(&rep["impact"])),
                        ("Systems".into(), s(&rep["systems"])),
                        ("Actions taken".into(), s(&rep["actions_taken"])),
                    ]));
                }
                "Escalation Report"
            }
            "investigation-status-report" => {
                let recs = self.records("status_report", t).await?;
                if recs.is_empty() {
                    return Err(nothing("status report"));
                }
                for r in recs {
                    let d = Self::data(&r);
                    b.push(Block::Heading(
                        2,
                        format!("Status at {} ({})", ts(r.created_at), s(&d["filed_by"])),
                    ));
                    b.push(Block::Fields(vec![
                        ("Cost so far".into(), s(&d["cost"])),
                        ("Exposure".into(), s(&d["exposure"])),
                        ("Continuing business risk".into(), s(&d["business_risk"])),
                        ("Next steps".into(), s(&d["next_steps"])),
                    ]));
                }
                "Investigation Status Report"
            }
            "meeting-minutes" => {
                let recs = self.records("meeting", t).await?;
                let meetings: Vec<Meeting> = recs
                    .iter()
                    .filter_map(|r| serde_json::from_str(&r.data).ok())
                    .collect();
                if !meetings.iter().any(|m| m.minutes.is_some()) {
                    return Err(nothing("meeting minutes"));
                }
                for m in meetings {
                    let Some(min) = &m.minutes else { continue };
                    b.push(Block::Heading(
                        2,
                        format!("Meeting of {} in {}", ts(m.scheduled_at), m.war_room),
                    ));
                    b.push(Block::Fields(vec![
                        ("Attendees".into(), min.attendees.join(", ")),
                        ("Status".into(), min.status.clone()),
                        (
                            "Final".into(),
                            match (&m.finalized_by, m.finalized_at) {
                                (Some(by), Some(at)) => format!("yes, by {by} at {}", ts(at)),
                                _ => "no (draft)".into(),
                            },
                        ),
                    ]));
                    b.push(Block::Heading(3, "Actions".into()));
                    b.push(Block::Table(
                        vec!["Action".into(), "Owner".into(), "Due".into()],
                        min.actions
                            .iter()
                            .map(|a| vec![a.text.clone(), a.owner.clone(), a.due.clone()])
                            .collect(),
                    ));
                    b.push(Block::Heading(3, "Resolutions".into()));
                    b.push(Block::List(min.resolutions.clone()));
                }
                "Meeting Minutes"
            }
            "lockdown-change-control" => {
                let recs = self.records("change_control", t).await?;
                let changes: Vec<ChangeControl> = recs
                    .iter()
                    .filter_map(|r| serde_json::from_str(&r.data).ok())
                    .filter(|c: &ChangeControl| c.kind == ChangeKind::Lockdown)
                    .collect();
                if changes.is_empty() {
                    return Err(nothing("lock-down change control"));
                }
                for c in changes {
                    b.push(Block::Heading(2, format!("Change control {}", c.id)));
                    b.push(Block::Fields(vec![
                        ("Description".into(), c.description.clone()),
                        ("Systems".into(), c.systems.join(", ")),
                        (
                            "Requested".into(),
                            format!("{} by {}", ts(c.requested_at), c.requested_by),
                        ),
                        ("Status".into(), c.status.as_str().into()),
                        (
                            "Authorization".into(),
                            match (&c.decided_by, c.decided_at) {
                                (Some(by), Some(at)) => format!(
                                    "{} by {by} at {} (two-person rule: requester {})",
                                    c.status.as_str(),
                                    ts(at),
                                    c.requested_by
                                ),
                                _ => "awaiting a manager's approval".into(),
                            },
                        ),
                        (
                            "Comment".into(),
                            c.decision_comment.clone().unwrap_or_else(|| "—".into()),
                        ),
                    ]));
                }
                "Lock-down Change Control"
            }
            "test-report" => {
                let recs = self.records("test_report", t).await?;
                if recs.is_empty() {
                    return Err(nothing("test report"));
                }
                for r in recs {
                    let d: TestReport =
                        serde_json::from_str(&r.data).map_err(|e| anyhow::anyhow!("{e}"))?;
                    b.push(Block::Heading(
                        2,
                        format!("Test report of {} by {}", ts(d.filed_at), d.filed_by),
                    ));
                    b.push(Block::Para(d.body.summary.clone()));
                    b.push(Block::Table(
                        vec!["Compliance test".into(), "Result".into(), "Notes".into()],
                        d.body
                            .compliance_tests
                            .iter()
                            .map(|c| {
                                vec![
                                    c.test.clone(),
                                    c.result.as_str().into(),
                                    c.notes.clone().unwrap_or_default(),
                                ]
                            })
                            .collect(),
                    ));
                }
                "Test Report"
            }
            "senior-management-report" => {
                let recs = self.records("senior_management_report", t).await?;
                if recs.is_empty() {
                    return Err(nothing("report to senior management"));
                }
                for r in recs {
                    let d: SeniorManagementReport =
                        serde_json::from_str(&r.data).map_err(|e| anyhow::anyhow!("{e}"))?;
                    b.push(Block::Heading(
                        2,
                        format!("Report of {} by {}", ts(d.filed_at), d.filed_by),
                    ));
                    b.push(Block::Para(d.body.summary.clone()));
                    b.push(Block::Fields(vec![(
                        "Disposition".into(),
                        d.body.disposition.as_str().replace('_', " "),
                    )]));
                }
                "Report to Senior Management"
            }
            "compliance-report" => {
                b.push(Block::Para(
                    "Which written controls the response process requires for this ticket, and whether each is on the record.".into(),
                ));
                b.push(Block::Table(
                    vec!["Control".into(), "Required".into(), "On the record".into()],
                    self.compliance_rows(t).await?,
                ));
                let n = self.store.ticket_audit(t.id, 0, 100_000).await?.len();
                b.push(Block::Fields(vec![(
                    "Audit-chain entries for this ticket".into(),
                    n.to_string(),
                )]));
                "Compliance Report"
            }
            "post-incident-review" => {
                let recs = self.records("post_incident_review", t).await?;
                let Some(r) = recs.last() else {
                    return Err(nothing("post-incident review"));
                };
                let d = Self::data(r);
                let rev: PostIncidentReviewBody = serde_json::from_value(d["review"].clone())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                b.push(Block::Fields(vec![
                    ("Written by".into(), s(&d["by"])),
                    (
                        "Human root cause (security incident)".into(),
                        if rev.human_root_cause {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                    ),
                ]));
                for (h, v) in [
                    ("What happened", &rev.what_happened),
                    ("Timeline", &rev.timeline),
                    ("Root cause", &rev.root_cause),
                    ("What worked", &rev.what_worked),
                ] {
                    b.push(Block::Heading(2, h.into()));
                    b.push(Block::Para(v.clone()));
                }
                b.push(Block::Heading(2, "Action items".into()));
                b.push(Block::Table(
                    vec!["Action".into(), "Owner".into(), "Due".into()],
                    rev.action_items
                        .iter()
                        .map(|a| vec![a.text.clone(), a.owner.clone(), a.due.clone()])
                        .collect(),
                ));
                "Post-Incident Review"
            }
            _ => return Err(AppError::NotFound),
        };
        Ok((title.to_string(), b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_inject_markup() {
        let r = Report {
            title: "<script>alert(1)</script>".into(),
            ticket_number: "SEC-000001".into(),
            blocks: vec![
                Block::Para("<img src=x onerror=alert(1)>".into()),
                Block::Fields(vec![("k".into(), "v | *bold* [link](javascript:x)".into())]),
                Block::Table(vec!["a".into()], vec![vec!["x|y".into()]]),
                Block::Para("first\r- injected item\n1. numbered\n  # heading".into()),
            ],
        };
        let html = r.html();
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        let md = r.markdown();
        assert!(
            md.starts_with("# \\<script\\>alert(1)\\</script\\> — SEC-000001"),
            "{md}"
        );
        assert!(md.contains("x\\|y"));
        assert!(md.contains("\\[link\\](javascript:x)"));
        assert!(
            md.contains("first\n\\- injected item\n\\1. numbered\n\\# heading"),
            "{md}"
        );
    }
}
