//! The response plan: the preparation phase as data (PRODUCT.md §1). Who is on the team, who is
//! told what on which event and through which channel, what makes an event escalate, the war
//! rooms, the emergency criteria, the legal and law-enforcement contacts, the cadence of
//! Investigation Status Reports and the retention policy. Versioned by the app; validated here
//! with every problem named by its path.

use crate::error::FieldError;
use crate::role::Role;
use crate::ticket::Severity;
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WarRoom {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    /// Conference bridge, chat channel...
    #[serde(default)]
    pub bridge: Option<String>,
}

/// A member of the team, by username, with their responsibility in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RosterEntry {
    pub username: String,
    #[serde(default)]
    pub responsibility: Option<String>,
}

/// Events the communication protocols react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum PlanEvent {
    Escalation,
    EmergencyDeclared,
    MonitorCapture,
    EmergencyClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum Channel {
    InApp,
    Email,
    Webhook,
}

/// Who is told what, on which event, through which channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Protocol {
    pub on: PlanEvent,
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Users whose title is one of these (`CEO`, `CFO`, ...).
    #[serde(default)]
    pub titles: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    pub channel: Channel,
    /// For `webhook`: where the signed JSON is posted (one delivery per protocol).
    #[serde(default)]
    pub url: Option<String>,
}

/// An outside contact (legal counsel, law enforcement, a vendor's incident line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Contact {
    pub name: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A legal or contractual obligation with a deadline from the declaration of an emergency
/// (e.g. notifying a data-protection authority within 72 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LegalObligation {
    pub name: String,
    /// Hours after the emergency is declared.
    pub deadline_hours: u32,
}

/// A training or awareness session held as part of preparation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Training {
    pub title: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    #[serde(default)]
    pub attendees: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Thresholds {
    /// Tickets opened at these severities are escalations from the start.
    #[serde(default)]
    pub escalate_severities: Vec<Severity>,
    /// The priority a ticket gets from its severity when none is given (default: critical→p1,
    /// high→p2, medium→p3, low→p4).
    #[serde(default)]
    pub priority_by_severity: std::collections::BTreeMap<Severity, crate::ticket::Priority>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Retention {
    /// The audit log is kept at least this long (days).
    pub audit_days: u32,
    pub documents_days: u32,
}

/// How intake treats events: the dedup window, the fields that make two events "the same" per
/// source, and the classification rules that open tickets automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IntakePolicy {
    /// A repeat inside this many minutes of the last one counts on the existing event.
    #[serde(default = "default_window")]
    pub dedup_window_minutes: u32,
    /// Per source name, the event fields (`host`, `title`, or a normalized field such as
    /// `src_ip`) that join source and rule (or the title, when the source names no rule) in
    /// the fingerprint. Default: the host and every IP address of the event.
    #[serde(default)]
    pub dedup_fields: std::collections::BTreeMap<String, Vec<String>>,
    /// First match wins; events no rule matches wait for the help desk.
    #[serde(default)]
    pub rules: Vec<ClassificationRule>,
    /// What a match against the local indicator store does to an event.
    #[serde(default)]
    pub indicator_match: IndicatorMatchPolicy,
}

/// An event whose observable matches a local indicator is raised (never lowered) to `raise_to`,
/// or to critical from `critical_from` confidence; indicators below `min_confidence` are shown
/// on the event but change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IndicatorMatchPolicy {
    #[serde(default = "default_min_confidence")]
    pub min_confidence: u8,
    #[serde(default = "default_raise_to")]
    pub raise_to: Severity,
    /// 101 means never.
    #[serde(default = "default_critical_from")]
    pub critical_from: u8,
}

fn default_min_confidence() -> u8 {
    50
}
fn default_raise_to() -> Severity {
    Severity::High
}
fn default_critical_from() -> u8 {
    90
}

impl Default for IndicatorMatchPolicy {
    fn default() -> Self {
        Self {
            min_confidence: default_min_confidence(),
            raise_to: default_raise_to(),
            critical_from: default_critical_from(),
        }
    }
}

fn default_window() -> u32 {
    60
}

impl Default for IntakePolicy {
    fn default() -> Self {
        Self {
            dedup_window_minutes: default_window(),
            dedup_fields: Default::default(),
            rules: vec![],
            indicator_match: IndicatorMatchPolicy::default(),
        }
    }
}

/// A classification rule of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ClassificationRule {
    pub name: String,
    /// A CEL expression over `event` (e.g. `event.severity == "critical"`).
    pub when: String,
    /// Open a ticket at once, without the help desk.
    #[serde(default)]
    pub open_ticket: bool,
    #[serde(default)]
    pub priority: Option<crate::ticket::Priority>,
    /// Overrides the event's severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Tickets opened from matching events start as escalations (the rule's name is the
    /// reason).
    #[serde(default)]
    pub escalate: bool,
    /// Owner of tickets the rule opens (a username). Default: the system.
    #[serde(default)]
    pub owner: Option<String>,
}

/// The response plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Plan {
    pub name: String,
    /// Roles and responsibilities, in the plan's words.
    #[serde(default)]
    pub responsibilities: Vec<String>,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    pub war_rooms: Vec<WarRoom>,
    #[serde(default)]
    pub protocols: Vec<Protocol>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Shown to whoever declares an emergency.
    #[serde(default)]
    pub emergency_criteria: Vec<String>,
    pub status_report_every_hours: u32,
    #[serde(default)]
    pub legal_contacts: Vec<Contact>,
    #[serde(default)]
    pub law_enforcement_contacts: Vec<Contact>,
    /// Deadlines that run as clocks on every emergency.
    #[serde(default)]
    pub legal_obligations: Vec<LegalObligation>,
    #[serde(default)]
    pub training: Vec<Training>,
    pub retention: Retention,
    #[serde(default)]
    pub intake: IntakePolicy,
}

impl Default for Plan {
    /// The built-in plan of PRODUCT.md §4.2: no severity escalates by itself; one war room,
    /// "War Room"; Investigation Status Reports every 24 h; escalation tells managers in-app;
    /// Monitor & Capture tells every active CEO, CFO, Corporate Attorney and PR.
    fn default() -> Self {
        Self {
            name: "Built-in response plan".into(),
            responsibilities: vec![],
            roster: vec![],
            war_rooms: vec![WarRoom {
                name: "War Room".into(),
                location: None,
                bridge: None,
            }],
            protocols: vec![
                Protocol {
                    on: PlanEvent::Escalation,
                    roles: vec![Role::Manager],
                    titles: vec![],
                    users: vec![],
                    channel: Channel::InApp,
                    url: None,
                },
                Protocol {
                    on: PlanEvent::EmergencyDeclared,
                    roles: vec![Role::Manager],
                    titles: vec![],
                    users: vec![],
                    channel: Channel::InApp,
                    url: None,
                },
                Protocol {
                    on: PlanEvent::MonitorCapture,
                    roles: vec![],
                    titles: vec![
                        "CEO".into(),
                        "CFO".into(),
                        "Corporate Attorney".into(),
                        "PR".into(),
                    ],
                    users: vec![],
                    channel: Channel::InApp,
                    url: None,
                },
            ],
            thresholds: Thresholds::default(),
            emergency_criteria: vec![
                "risk to health or safety".into(),
                "breach of primary security controls".into(),
                "significant impact on critical systems' performance".into(),
                "violation of law or policy".into(),
            ],
            status_report_every_hours: 24,
            legal_contacts: vec![],
            law_enforcement_contacts: vec![],
            legal_obligations: vec![],
            training: vec![],
            retention: Retention {
                audit_days: 2555,
                documents_days: 2555,
            },
            intake: IntakePolicy::default(),
        }
    }
}

fn text(path: String, v: &str, max: usize, errs: &mut Vec<FieldError>) {
    if v.trim().is_empty() {
        errs.push(FieldError::new(path, "must not be blank"));
    } else if v.chars().count() > max {
        errs.push(FieldError::new(
            path,
            format!("must be at most {max} characters"),
        ));
    } else if v
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        errs.push(FieldError::new(path, "must not contain control characters"));
    }
}

fn contact(path: &str, c: &Contact, errs: &mut Vec<FieldError>) {
    text(format!("{path}.name"), &c.name, 200, errs);
    for (k, v) in [
        ("organization", &c.organization),
        ("phone", &c.phone),
        ("email", &c.email),
    ] {
        if let Some(v) = v {
            text(format!("{path}.{k}"), v, 200, errs);
        }
    }
}

impl Plan {
    /// Every problem with the plan, each named by its path. `user_exists` answers whether a
    /// username is an active user.
    pub fn problems(&self, user_exists: &dyn Fn(&str) -> bool) -> Vec<FieldError> {
        let mut errs = Vec::new();
        text("name".into(), &self.name, 200, &mut errs);
        for (i, r) in self.responsibilities.iter().enumerate() {
            text(format!("responsibilities[{i}]"), r, 2000, &mut errs);
        }
        for (i, r) in self.roster.iter().enumerate() {
            if !user_exists(&r.username) {
                errs.push(FieldError::new(
                    format!("roster[{i}].username"),
                    format!("no active user named {:?}", r.username),
                ));
            }
            if let Some(x) = &r.responsibility {
                text(format!("roster[{i}].responsibility"), x, 500, &mut errs);
            }
        }
        if self.war_rooms.is_empty() {
            errs.push(FieldError::new("war_rooms", "name at least one war room"));
        }
        for (i, w) in self.war_rooms.iter().enumerate() {
            text(format!("war_rooms[{i}].name"), &w.name, 200, &mut errs);
            if self.war_rooms[..i].iter().any(|o| o.name == w.name) {
                errs.push(FieldError::new(
                    format!("war_rooms[{i}].name"),
                    "duplicate war room name",
                ));
            }
        }
        if self.intake.dedup_window_minutes > 7 * 24 * 60 {
            errs.push(FieldError::new(
                "intake.dedup_window_minutes",
                "at most 10080 (one week)",
            ));
        }
        for (src, fields) in &self.intake.dedup_fields {
            for (i, f) in fields.iter().enumerate() {
                if f.trim().is_empty() || f.len() > 100 {
                    errs.push(FieldError::new(
                        format!("intake.dedup_fields.{src}[{i}]"),
                        "a field name",
                    ));
                }
            }
        }
        for (i, r) in self.intake.rules.iter().enumerate() {
            text(format!("intake.rules[{i}].name"), &r.name, 200, &mut errs);
            text(format!("intake.rules[{i}].when"), &r.when, 4000, &mut errs);
            if let Some(o) = &r.owner
                && !user_exists(o)
            {
                errs.push(FieldError::new(
                    format!("intake.rules[{i}].owner"),
                    format!("no active user named {o:?}"),
                ));
            }
        }
        for (i, p) in self.protocols.iter().enumerate() {
            if p.channel == Channel::Webhook {
                match p.url.as_deref() {
                    Some(u)
                        if (u.starts_with("https://") || u.starts_with("http://"))
                            && u.len() <= 2000
                            && !u.chars().any(|c| c.is_control() || c == ' ') => {}
                    _ => errs.push(FieldError::new(
                        format!("protocols[{i}].url"),
                        "a webhook protocol needs an http(s) URL",
                    )),
                }
                continue;
            }
            if p.url.is_some() {
                errs.push(FieldError::new(
                    format!("protocols[{i}].url"),
                    "only webhook protocols take a URL",
                ));
            }
            if p.roles.is_empty() && p.titles.is_empty() && p.users.is_empty() {
                errs.push(FieldError::new(
                    format!("protocols[{i}]"),
                    "name at least one role, title or user to tell",
                ));
            }
            for (j, u) in p.users.iter().enumerate() {
                if !user_exists(u) {
                    errs.push(FieldError::new(
                        format!("protocols[{i}].users[{j}]"),
                        format!("no active user named {u:?}"),
                    ));
                }
            }
            for (j, t) in p.titles.iter().enumerate() {
                text(format!("protocols[{i}].titles[{j}]"), t, 200, &mut errs);
            }
        }
        for (i, c) in self.emergency_criteria.iter().enumerate() {
            text(format!("emergency_criteria[{i}]"), c, 500, &mut errs);
        }
        if !(1..=24 * 30).contains(&self.status_report_every_hours) {
            errs.push(FieldError::new(
                "status_report_every_hours",
                "must be between 1 and 720",
            ));
        }
        for (i, c) in self.legal_contacts.iter().enumerate() {
            contact(&format!("legal_contacts[{i}]"), c, &mut errs);
        }
        for (i, c) in self.law_enforcement_contacts.iter().enumerate() {
            contact(&format!("law_enforcement_contacts[{i}]"), c, &mut errs);
        }
        for (i, o) in self.legal_obligations.iter().enumerate() {
            text(
                format!("legal_obligations[{i}].name"),
                &o.name,
                200,
                &mut errs,
            );
            if o.deadline_hours == 0 {
                errs.push(FieldError::new(
                    format!("legal_obligations[{i}].deadline_hours"),
                    "must be at least 1",
                ));
            }
        }
        for (i, t) in self.training.iter().enumerate() {
            text(format!("training[{i}].title"), &t.title, 200, &mut errs);
            if time::Date::parse(
                &t.date,
                &time::format_description::well_known::Iso8601::DATE,
            )
            .is_err()
            {
                errs.push(FieldError::new(
                    format!("training[{i}].date"),
                    "must be a date (YYYY-MM-DD)",
                ));
            }
            for (j, a) in t.attendees.iter().enumerate() {
                if !user_exists(a) {
                    errs.push(FieldError::new(
                        format!("training[{i}].attendees[{j}]"),
                        format!("no active user named {a:?}"),
                    ));
                }
            }
        }
        if self.retention.audit_days < 365 {
            errs.push(FieldError::new(
                "retention.audit_days",
                "keep the audit log at least 365 days",
            ));
        }
        errs
    }

    /// The war room meetings default to.
    pub fn default_war_room(&self) -> String {
        self.war_rooms
            .first()
            .map(|w| w.name.clone())
            .unwrap_or_else(|| "War Room".into())
    }

    pub fn protocols_on(&self, event: PlanEvent) -> impl Iterator<Item = &Protocol> {
        self.protocols.iter().filter(move |p| p.on == event)
    }
}

/// The plan in force and its version (0: the built-in plan).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PlanVersion {
    pub version: i64,
    pub updated_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<time::OffsetDateTime>,
    pub plan: Plan,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_plan_is_valid_and_problems_are_named_by_path() {
        assert!(Plan::default().problems(&|_| true).is_empty());
        let mut p = Plan {
            name: " ".into(),
            ..Plan::default()
        };
        p.war_rooms.push(WarRoom {
            name: "War Room".into(),
            location: None,
            bridge: None,
        });
        p.roster.push(RosterEntry {
            username: "ghost".into(),
            responsibility: None,
        });
        p.protocols.push(Protocol {
            on: PlanEvent::Escalation,
            roles: vec![],
            titles: vec![],
            users: vec![],
            channel: Channel::Email,
            url: None,
        });
        p.status_report_every_hours = 0;
        p.retention.audit_days = 30;
        let fields: Vec<String> = p
            .problems(&|u| u != "ghost")
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "roster[0].username",
                "war_rooms[1].name",
                "protocols[3]",
                "status_report_every_hours",
                "retention.audit_days"
            ]
        );
    }
}
