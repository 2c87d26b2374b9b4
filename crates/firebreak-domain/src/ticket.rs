//! Tickets: fields, validation of new tickets and edits, and the normal-path state machine
//! (open → in_progress → pending_closure → closed, reopen, false positive).

use crate::error::{DomainError, FieldError};
use crate::ids::TicketId;
use crate::role::{Role, groups};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
            /// The accepted values, for error messages.
            pub fn expected() -> String {
                [$($s),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Initial severity of the reported matter.
    Severity { Low = "low", Medium = "medium", High = "high", Critical = "critical" }
);
str_enum!(
    /// Handling priority, p1 the most urgent.
    Priority { P1 = "p1", P2 = "p2", P3 = "p3", P4 = "p4" }
);
str_enum!(
    /// Normal, escalated (tier 2) or emergency handling.
    Criticality { Normal = "normal", Escalation = "escalation", Emergency = "emergency" }
);
str_enum!(
    /// Where the ticket is in its life.
    TicketStatus { Open = "open", InProgress = "in_progress", PendingClosure = "pending_closure", Closed = "closed" }
);
str_enum!(
    /// Where an event is in the help desk's queue.
    EventStatus {
        New = "new", Ticketed = "ticketed", Merged = "merged", Dismissed = "dismissed",
        Suppressed = "suppressed", Resolved = "resolved",
    }
);
str_enum!(
    /// Who reported the matter.
    SourceKind {
        Employee = "employee", Vendor = "vendor", Customer = "customer", Partner = "partner",
        Device = "device", Sensor = "sensor", Internal = "internal",
    }
);

impl Severity {
    /// The default priority for a severity when the plan says nothing.
    pub fn default_priority(self) -> Priority {
        match self {
            Severity::Critical => Priority::P1,
            Severity::High => Priority::P2,
            Severity::Medium => Priority::P3,
            Severity::Low => Priority::P4,
        }
    }
}

/// Who or what reported the matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    pub kind: SourceKind,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    /// Sequence part of the human number (`SEC-000042` has 42); assigned by the store.
    pub number: i64,
    pub title: String,
    pub description: String,
    pub source: Source,
    pub severity: Severity,
    pub priority: Priority,
    pub criticality: Criticality,
    pub tier: i16,
    pub status: TicketStatus,
    pub owner: String,
    pub assignee: Option<String>,
    pub restricted: bool,
    pub tags: Vec<String>,
    pub resolution: Option<String>,
    pub problem_category: Option<String>,
    pub false_positive: bool,
    pub incident: bool,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version, bumped by every stored change.
    /// Why the ticket is an escalation, when it is one.
    #[serde(default)]
    pub escalation_reason: Option<String>,
    pub version: i64,
}

pub const MAX_TITLE: usize = 300;
pub const MAX_TEXT: usize = 100_000;
pub const MAX_SHORT: usize = 200;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG: usize = 64;

/// Text may hold any Unicode but control characters other than tab, newline and carriage
/// return (a NUL cannot even be stored in PostgreSQL). Returns why a text is refused.
pub fn control_char(value: &str) -> Option<String> {
    value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| format!("must not contain the control character U+{:04X}", c as u32))
}

/// Checks a required text (not blank, bounded); returns it verbatim.
pub fn required_text(field: &str, value: &str, max: usize, errs: &mut Vec<FieldError>) -> String {
    let v = value.trim();
    if v.is_empty() {
        errs.push(FieldError::new(field, "must not be empty"));
    } else if let Some(msg) = control_char(value) {
        errs.push(FieldError::new(field, msg));
    } else if v.chars().count() > max {
        errs.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    // stored verbatim: whitespace only decides whether the value counts as empty
    value.to_string()
}

/// Checks an optional text's length.
pub fn optional_text(field: &str, value: Option<&str>, max: usize, errs: &mut Vec<FieldError>) {
    if let Some(msg) = value.and_then(control_char) {
        errs.push(FieldError::new(field, msg));
    } else if let Some(v) = value
        && v.chars().count() > max
    {
        errs.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

/// Normalizes tags: trimmed, non-empty, bounded, de-duplicated, order kept.
pub fn normalize_tags(tags: &[String], errs: &mut Vec<FieldError>) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        errs.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        let t = t.trim();
        if t.is_empty() {
            errs.push(FieldError::new(format!("tags[{i}]"), "must not be empty"));
        } else if let Some(msg) = control_char(t) {
            errs.push(FieldError::new(format!("tags[{i}]"), msg));
        } else if t.chars().count() > MAX_TAG {
            errs.push(FieldError::new(
                format!("tags[{i}]"),
                format!("must be at most {MAX_TAG} characters"),
            ));
        } else if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// The normal-path actions on a ticket (PRODUCT.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketAction {
    Start,
    Resolve {
        resolution: String,
        problem_category: String,
    },
    AcceptClosure,
    RejectClosure {
        reason: String,
    },
    Reopen {
        reason: String,
    },
    MarkFalsePositive {
        reason: String,
    },
}

impl TicketAction {
    /// The path segment and audit verb of the action.
    pub fn name(&self) -> &'static str {
        match self {
            TicketAction::Start => "start",
            TicketAction::Resolve { .. } => "resolve",
            TicketAction::AcceptClosure => "accept-closure",
            TicketAction::RejectClosure { .. } => "reject-closure",
            TicketAction::Reopen { .. } => "reopen",
            TicketAction::MarkFalsePositive { .. } => "mark-false-positive",
        }
    }

    /// Who may attempt the action; `Err` says who may.
    pub fn authorize(&self, roles: &[Role], username: &str, ticket: &Ticket) -> Result<(), String> {
        let any = |set: &[Role]| roles.iter().any(|r| set.contains(r));
        let is_owner = ticket.owner == username;
        let ok = match self {
            TicketAction::Start | TicketAction::Resolve { .. } => any(groups::RESPONDERS),
            // the help desk or a manager may record an external owner's answer (PRODUCT.md §4.2)
            TicketAction::AcceptClosure | TicketAction::RejectClosure { .. } => {
                is_owner || roles.contains(&Role::Helpdesk) || roles.contains(&Role::Manager)
            }
            TicketAction::Reopen { .. } => any(groups::RESPONDERS) || is_owner,
            TicketAction::MarkFalsePositive { .. } => {
                any(groups::RESPONDERS) || roles.contains(&Role::Helpdesk)
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            TicketAction::Start | TicketAction::Resolve { .. } => {
                format!(
                    "{} requires the responder or senior_responder role",
                    self.name()
                )
            }
            TicketAction::AcceptClosure | TicketAction::RejectClosure { .. } => {
                format!(
                    "only the ticket owner ({}) may {}",
                    ticket.owner,
                    self.name()
                )
            }
            TicketAction::Reopen { .. } => {
                "reopen requires a responder role or ticket ownership".into()
            }
            TicketAction::MarkFalsePositive { .. } => {
                "mark-false-positive requires the helpdesk or a responder role".into()
            }
        })
    }

    /// Checks required fields, independent of the ticket's state.
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        match self {
            TicketAction::Resolve {
                resolution,
                problem_category,
            } => {
                required_text("resolution", resolution, MAX_TEXT, &mut errs);
                required_text("problem_category", problem_category, MAX_SHORT, &mut errs);
            }
            TicketAction::RejectClosure { reason }
            | TicketAction::Reopen { reason }
            | TicketAction::MarkFalsePositive { reason } => {
                required_text("reason", reason, MAX_TEXT, &mut errs);
            }
            TicketAction::Start | TicketAction::AcceptClosure => {}
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errs))
        }
    }

    /// Applies the action to a ticket, returning the changed ticket, or why it is not allowed now.
    pub fn apply(
        &self,
        ticket: &Ticket,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Ticket, DomainError> {
        self.validate()?;
        let mut t = ticket.clone();
        let from = ticket.status;
        let refuse = |required: &str| DomainError::InvalidTransition {
            code: "invalid_transition",
            message: format!(
                "{} is not possible while the ticket is {}: {}",
                self.name(),
                from,
                required
            ),
        };
        match self {
            TicketAction::Start => {
                if from != TicketStatus::Open {
                    return Err(refuse("the ticket must be open"));
                }
                t.status = TicketStatus::InProgress;
                if t.assignee.is_none() {
                    t.assignee = Some(actor.to_string());
                }
            }
            TicketAction::Resolve {
                resolution,
                problem_category,
            } => {
                if from != TicketStatus::InProgress {
                    return Err(refuse("the ticket must be in_progress (start it first)"));
                }
                t.status = TicketStatus::PendingClosure;
                t.resolution = Some(resolution.clone());
                t.problem_category = Some(problem_category.clone());
            }
            TicketAction::AcceptClosure => {
                if from != TicketStatus::PendingClosure {
                    return Err(refuse(
                        "the ticket must be pending_closure (resolve it first)",
                    ));
                }
                t.status = TicketStatus::Closed;
            }
            TicketAction::RejectClosure { .. } => {
                if from != TicketStatus::PendingClosure {
                    return Err(refuse("the ticket must be pending_closure"));
                }
                t.status = TicketStatus::InProgress;
            }
            TicketAction::Reopen { .. } => {
                if from != TicketStatus::Closed {
                    return Err(refuse("only a closed ticket can be reopened"));
                }
                t.status = TicketStatus::InProgress;
                t.false_positive = false;
            }
            TicketAction::MarkFalsePositive { reason } => {
                if from == TicketStatus::Closed {
                    return Err(refuse("the ticket is already closed"));
                }
                t.status = TicketStatus::Closed;
                t.false_positive = true;
                t.resolution = Some(reason.clone());
                t.problem_category = Some("false_positive".into());
            }
        }
        t.updated_at = now;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(status: TicketStatus) -> Ticket {
        let now = OffsetDateTime::UNIX_EPOCH;
        Ticket {
            id: TicketId::new(),
            number: 1,
            title: "t".into(),
            description: String::new(),
            source: Source {
                kind: SourceKind::Internal,
                name: None,
                contact: None,
            },
            severity: Severity::Medium,
            priority: Priority::P3,
            criticality: Criticality::Normal,
            tier: 1,
            status,
            owner: "olga".into(),
            assignee: None,
            restricted: false,
            tags: vec![],
            resolution: None,
            problem_category: None,
            false_positive: false,
            incident: false,
            created_by: "olga".into(),
            created_at: now,
            updated_at: now,
            escalation_reason: None,
            version: 1,
        }
    }

    fn resolve() -> TicketAction {
        TicketAction::Resolve {
            resolution: "patched".into(),
            problem_category: "malware".into(),
        }
    }

    #[test]
    fn normal_path_walks_through_to_closed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = ticket(TicketStatus::Open);
        let t = TicketAction::Start.apply(&t, "rita", now).unwrap();
        assert_eq!(t.status, TicketStatus::InProgress);
        assert_eq!(t.assignee.as_deref(), Some("rita"));
        let t = resolve().apply(&t, "rita", now).unwrap();
        assert_eq!(t.status, TicketStatus::PendingClosure);
        let r = TicketAction::RejectClosure {
            reason: "not fixed".into(),
        }
        .apply(&t, "olga", now)
        .unwrap();
        assert_eq!(r.status, TicketStatus::InProgress);
        let t = TicketAction::AcceptClosure.apply(&t, "olga", now).unwrap();
        assert_eq!(t.status, TicketStatus::Closed);
        let t = TicketAction::Reopen {
            reason: "recurred".into(),
        }
        .apply(&t, "rita", now)
        .unwrap();
        assert_eq!(t.status, TicketStatus::InProgress);
    }

    #[test]
    fn resolve_requires_resolution_and_problem_category() {
        let t = ticket(TicketStatus::InProgress);
        let err = TicketAction::Resolve {
            resolution: " ".into(),
            problem_category: String::new(),
        }
        .apply(&t, "rita", OffsetDateTime::UNIX_EPOCH)
        .unwrap_err();
        let DomainError::Validation(fields) = err else {
            panic!("expected validation")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["resolution", "problem_category"]);
    }

    #[test]
    fn forbidden_transitions_name_what_is_missing() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cases = [
            (TicketStatus::Open, resolve(), "start it first"),
            (
                TicketStatus::InProgress,
                TicketAction::AcceptClosure,
                "resolve it first",
            ),
            (
                TicketStatus::Open,
                TicketAction::Reopen { reason: "x".into() },
                "only a closed ticket",
            ),
            (
                TicketStatus::Closed,
                TicketAction::MarkFalsePositive { reason: "x".into() },
                "already closed",
            ),
            (
                TicketStatus::InProgress,
                TicketAction::Start,
                "must be open",
            ),
        ];
        for (status, action, needle) in cases {
            let err = action.apply(&ticket(status), "x", now).unwrap_err();
            let DomainError::InvalidTransition { message, .. } = err else {
                panic!("expected transition error")
            };
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
    }

    #[test]
    fn owner_helpdesk_or_manager_answer_closure_and_helpdesk_marks_false_positive() {
        let t = ticket(TicketStatus::PendingClosure);
        for (roles, user) in [
            (&[Role::Auditor][..], "olga"),
            (&[Role::Helpdesk][..], "hd"),
            (&[Role::Manager][..], "cso"),
        ] {
            assert!(
                TicketAction::AcceptClosure
                    .authorize(roles, user, &t)
                    .is_ok(),
                "{user}"
            );
        }
        assert!(
            TicketAction::AcceptClosure
                .authorize(&[Role::Responder], "rita", &t)
                .is_err()
        );
        assert!(
            TicketAction::AcceptClosure
                .authorize(&[Role::Helpdesk], "olga", &t)
                .is_ok()
        );
        let fp = TicketAction::MarkFalsePositive { reason: "x".into() };
        assert!(fp.authorize(&[Role::Helpdesk], "h", &t).is_ok());
        assert!(fp.authorize(&[Role::Auditor], "a", &t).is_err());
        assert!(
            TicketAction::Start
                .authorize(&[Role::Helpdesk, Role::Admin], "h", &t)
                .is_err()
        );
    }

    #[test]
    fn control_characters_are_refused_but_whitespace_is_kept() {
        let mut errs = vec![];
        assert_eq!(
            required_text("title", "a\tb\r\nc", 100, &mut errs),
            "a\tb\r\nc"
        );
        assert!(errs.is_empty());
        required_text("title", "a\u{0}b", 100, &mut errs);
        optional_text("description", Some("x\u{1b}[31m"), 100, &mut errs);
        normalize_tags(&["ok".into(), "bad\u{7f}".into()], &mut errs);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "description", "tags[1]"]);
        assert!(errs[0].message.contains("U+0000"));
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let mut errs = vec![];
        let tags = normalize_tags(&[" a ".into(), "a".into(), "b".into()], &mut errs);
        assert_eq!(tags, ["a", "b"]);
        assert!(errs.is_empty());
        normalize_tags(&["".into()], &mut errs);
        assert_eq!(errs[0].field, "tags[0]");
    }
}
