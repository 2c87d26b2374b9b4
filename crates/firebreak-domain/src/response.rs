//! The response process beyond the normal path (PRODUCT.md §3, steps 5-7): escalation with its
//! report, change controls with the two-person rule, emergencies with a coordinator, team, war
//! room, meetings and minutes, status reports, the course of action and its obligations, and
//! notifications. Shapes and rules only; the app stores them as workflow records.

use crate::error::{DomainError, FieldError};
use crate::ticket::{MAX_SHORT, MAX_TEXT};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

fn text(field: &str, v: &str, max: usize, required: bool, errs: &mut Vec<FieldError>) {
    let n = v.chars().count();
    if required && v.trim().is_empty() {
        errs.push(FieldError::new(field, "is required and must not be blank"));
    } else if n > max {
        errs.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if v
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        errs.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn list(field: &str, items: &[String], max_items: usize, errs: &mut Vec<FieldError>) {
    if items.len() > max_items {
        errs.push(FieldError::new(
            field,
            format!("at most {max_items} entries"),
        ));
    }
    for (i, s) in items.iter().enumerate() {
        text(&format!("{field}[{i}]"), s, MAX_SHORT, true, errs);
    }
}

fn done(errs: Vec<FieldError>) -> Result<(), DomainError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(errs))
    }
}

/// The Escalation Report that every escalation requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EscalationReport {
    /// Why the ticket needs tier 2.
    pub reason: String,
    /// Business impact so far.
    pub impact: String,
    /// Systems affected.
    pub systems: Vec<String>,
    /// What has been done so far.
    pub actions_taken: String,
}

impl EscalationReport {
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        text(
            &format!("{prefix}reason"),
            &self.reason,
            MAX_TEXT,
            true,
            &mut errs,
        );
        text(
            &format!("{prefix}impact"),
            &self.impact,
            MAX_TEXT,
            true,
            &mut errs,
        );
        text(
            &format!("{prefix}actions_taken"),
            &self.actions_taken,
            MAX_TEXT,
            true,
            &mut errs,
        );
        list(&format!("{prefix}systems"), &self.systems, 200, &mut errs);
        errs
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EscalateRequest {
    pub report: EscalationReport,
}

impl EscalateRequest {
    pub fn validate(&self) -> Result<(), DomainError> {
        done(self.report.validate("report."))
    }
}

/// A body with only a required reason (`request-escalation`, `declare-emergency`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReasonBody {
    pub reason: String,
}

impl ReasonBody {
    pub fn validate(&self) -> Result<String, DomainError> {
        let mut errs = Vec::new();
        text("reason", &self.reason, MAX_TEXT, true, &mut errs);
        done(errs).map(|()| self.reason.trim().to_string())
    }
}

macro_rules! snake_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "openapi", derive(ToSchema))]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

snake_enum!(
    /// Kinds of change control; `emergency` and `lockdown` need a manager's approval.
    ChangeKind { Normal = "normal", Emergency = "emergency", Lockdown = "lockdown" }
);
snake_enum!(
    ChangeStatus { Requested = "requested", Approved = "approved", Rejected = "rejected", Implemented = "implemented", Verified = "verified" }
);
snake_enum!(
    /// The three courses of action of the seeds.
    Course { LockdownRepair = "lockdown_repair", FalsePositive = "false_positive", MonitorCapture = "monitor_capture" }
);
snake_enum!(
    EmergencyStatus { Open = "open", Closed = "closed" }
);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateChangeControl {
    pub kind: ChangeKind,
    pub description: String,
    pub systems: Vec<String>,
}

impl CreateChangeControl {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("description", &self.description, MAX_TEXT, true, &mut errs);
        if self.systems.is_empty() {
            errs.push(FieldError::new("systems", "name at least one system"));
        }
        list("systems", &self.systems, 200, &mut errs);
        done(errs)
    }
}

/// A change request referencing a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ChangeControl {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub ticket_number: String,
    pub kind: ChangeKind,
    pub description: String,
    pub systems: Vec<String>,
    pub status: ChangeStatus,
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: OffsetDateTime,
    /// Who approved or rejected it, when, and why.
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<OffsetDateTime>,
    pub decision_comment: Option<String>,
    /// Whether a manager's approval (by someone other than the requester) is needed.
    pub needs_manager_approval: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DecisionBody {
    pub comment: String,
}

impl DecisionBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("comment", &self.comment, MAX_TEXT, true, &mut errs);
        done(errs)
    }
}

/// An emergency response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Emergency {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub ticket_number: String,
    pub status: EmergencyStatus,
    pub declared_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub declared_at: OffsetDateTime,
    pub reason: String,
    /// Username of the coordinator.
    pub coordinator: Option<String>,
    /// Why this coordinator (default rule, or the manager's reason for a reassignment).
    pub coordinator_reason: Option<String>,
    /// Usernames of the team (the coordinator and everyone who attended a meeting or was added).
    pub team: Vec<String>,
    pub war_room: Option<String>,
    pub course_of_action: Option<Course>,
    pub course_rationale: Option<String>,
    /// When the course of action was (last) chosen.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub course_chosen_at: Option<OffsetDateTime>,
    /// What must still happen before the emergency can be closed.
    pub open_obligations: Vec<String>,
    pub next_meeting: Option<MeetingSummary>,
    /// The plan's emergency criteria, shown to whoever declares.
    #[serde(default)]
    pub criteria: Vec<String>,
    /// Under Monitor & Capture: the plan's legal and law-enforcement contacts.
    #[serde(default)]
    pub contacts: Vec<crate::plan::Contact>,
    /// The plan's legal obligations, as clocks from the declaration.
    #[serde(default)]
    pub deadlines: Vec<Deadline>,
}

/// A legal obligation's clock on an emergency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Deadline {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub due_at: OffsetDateTime,
    pub overdue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MeetingSummary {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_at: OffsetDateTime,
    pub war_room: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CoordinatorBody {
    pub username: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TeamBody {
    /// Usernames of active users.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ScheduleMeeting {
    /// RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_at: OffsetDateTime,
    /// Default: the plan's war room.
    pub war_room: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ActionItem {
    pub text: String,
    /// Username of an active user.
    pub owner: String,
    /// A date (`2026-11-30`) or an RFC 3339 time.
    pub due: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MinutesBody {
    pub attendees: Vec<String>,
    pub status: String,
    #[serde(default)]
    pub actions: Vec<ActionItem>,
    #[serde(default)]
    pub resolutions: Vec<String>,
}

impl MinutesBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        if self.attendees.is_empty() {
            errs.push(FieldError::new("attendees", "name at least one attendee"));
        }
        list("attendees", &self.attendees, 200, &mut errs);
        text("status", &self.status, MAX_TEXT, true, &mut errs);
        for (i, a) in self.actions.iter().enumerate() {
            text(
                &format!("actions[{i}].text"),
                &a.text,
                MAX_TEXT,
                true,
                &mut errs,
            );
            text(
                &format!("actions[{i}].owner"),
                &a.owner,
                MAX_SHORT,
                true,
                &mut errs,
            );
            let due_ok =
                time::Date::parse(&a.due, &time::format_description::well_known::Iso8601::DATE)
                    .is_ok()
                    || OffsetDateTime::parse(
                        &a.due,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_ok();
            if !due_ok {
                errs.push(FieldError::new(
                    format!("actions[{i}].due"),
                    "must be a date (YYYY-MM-DD) or an RFC 3339 time",
                ));
            }
        }
        for (i, r) in self.resolutions.iter().enumerate() {
            text(&format!("resolutions[{i}]"), r, MAX_TEXT, true, &mut errs);
        }
        done(errs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Meeting {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub emergency_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_at: OffsetDateTime,
    pub war_room: String,
    pub minutes: Option<MinutesBody>,
    pub finalized: bool,
    pub finalized_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finalized_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusReportBody {
    /// Cost so far (free text with the currency, or a number).
    pub cost: String,
    pub exposure: String,
    pub business_risk: String,
    pub next_steps: String,
}

impl StatusReportBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("cost", &self.cost, MAX_SHORT, true, &mut errs);
        text("exposure", &self.exposure, MAX_TEXT, true, &mut errs);
        text(
            "business_risk",
            &self.business_risk,
            MAX_TEXT,
            true,
            &mut errs,
        );
        text("next_steps", &self.next_steps, MAX_TEXT, true, &mut errs);
        done(errs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusReport {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub emergency_id: Uuid,
    #[serde(flatten)]
    pub body: StatusReportBody,
    pub filed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub filed_at: OffsetDateTime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CourseBody {
    pub course: Course,
    pub rationale: String,
}

/// A notification and its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Notification {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    /// A username (or an address for people who are not users).
    pub recipient: String,
    pub title: String,
    /// `in_app` (email and webhooks follow the plan's protocols).
    pub channel: String,
    /// `delivered`, `pending`, `failed`.
    pub status: String,
    /// Why it failed, or how it was delivered.
    #[serde(default)]
    pub detail: Option<String>,
    /// Delivery attempts so far (email, webhooks).
    #[serde(default)]
    pub attempts: u32,
    /// Not retried before this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub retry_at: Option<OffsetDateTime>,
    pub ticket_number: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// Titles that make a user management for meeting attendance (PRODUCT.md §2).
pub const MANAGEMENT_TITLES: [&str; 3] = ["CIO", "CSO", "Director of IT"];
/// Titles told at once under Monitor & Capture.
pub const MONITOR_CAPTURE_TITLES: [&str; 4] = ["CEO", "CFO", "Corporate Attorney", "PR"];

/// Whether a title is one of `titles`, ignoring case and surrounding space.
pub fn title_is(title: Option<&str>, titles: &[&str]) -> bool {
    title.is_some_and(|t| titles.iter().any(|x| x.eq_ignore_ascii_case(t.trim())))
}

/// One compliance test of a Test Report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ComplianceTest {
    pub test: String,
    /// `pass` or `fail`.
    pub result: TestResult,
    #[serde(default)]
    pub notes: Option<String>,
}

snake_enum!(TestResult { Pass = "pass", Fail = "fail" });

/// The Test Report that closes Lock-down & Repair: what was repaired and how it was tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TestReportBody {
    pub summary: String,
    pub compliance_tests: Vec<ComplianceTest>,
}

impl TestReportBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("summary", &self.summary, MAX_TEXT, true, &mut errs);
        if self.compliance_tests.is_empty() {
            errs.push(FieldError::new(
                "compliance_tests",
                "name at least one compliance test",
            ));
        }
        for (i, t) in self.compliance_tests.iter().enumerate() {
            text(
                &format!("compliance_tests[{i}].test"),
                &t.test,
                MAX_SHORT,
                true,
                &mut errs,
            );
            if let Some(n) = &t.notes {
                text(
                    &format!("compliance_tests[{i}].notes"),
                    n,
                    MAX_TEXT,
                    false,
                    &mut errs,
                );
            }
        }
        done(errs)
    }

    pub fn all_pass(&self) -> bool {
        self.compliance_tests
            .iter()
            .all(|t| t.result == TestResult::Pass)
    }
}

/// The written Report to Senior Management (False Positive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SeniorManagementReportBody {
    pub summary: String,
    /// What happens to the ticket: `return_to_normal` or `close`.
    pub disposition: Disposition,
}

snake_enum!(Disposition { ReturnToNormal = "return_to_normal", Close = "close" });

impl SeniorManagementReportBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("summary", &self.summary, MAX_TEXT, true, &mut errs);
        done(errs)
    }
}

macro_rules! filed {
    ($(#[$m:meta])* $name:ident, $body:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(ToSchema))]
        pub struct $name {
            #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
            pub id: Uuid,
            #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
            pub emergency_id: Uuid,
            #[serde(flatten)]
            pub body: $body,
            pub filed_by: String,
            #[serde(with = "time::serde::rfc3339")]
            #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
            pub filed_at: OffsetDateTime,
        }
    };
}

filed!(
    /// A filed Test Report.
    TestReport,
    TestReportBody
);
filed!(
    /// A filed Report to Senior Management.
    SeniorManagementReport,
    SeniorManagementReportBody
);

snake_enum!(
    /// Incident-handling phases.
    Phase { Identification = "identification", Containment = "containment", Eradication = "eradication", Recovery = "recovery", LessonsLearned = "lessons_learned" }
);

impl Phase {
    pub const ORDER: [Phase; 5] = [
        Phase::Identification,
        Phase::Containment,
        Phase::Eradication,
        Phase::Recovery,
        Phase::LessonsLearned,
    ];
    pub fn index(self) -> usize {
        Phase::ORDER.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PhaseBody {
    pub phase: Phase,
    #[serde(default)]
    pub note: Option<String>,
}

/// The Post-Incident Review that closes the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PostIncidentReviewBody {
    pub what_happened: String,
    pub timeline: String,
    pub root_cause: String,
    /// The root cause is human: a security incident in the narrow sense.
    pub human_root_cause: bool,
    pub what_worked: String,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
}

impl PostIncidentReviewBody {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text(
            "what_happened",
            &self.what_happened,
            MAX_TEXT,
            true,
            &mut errs,
        );
        text("timeline", &self.timeline, MAX_TEXT, true, &mut errs);
        text("root_cause", &self.root_cause, MAX_TEXT, true, &mut errs);
        text("what_worked", &self.what_worked, MAX_TEXT, true, &mut errs);
        for (i, a) in self.action_items.iter().enumerate() {
            text(
                &format!("action_items[{i}].text"),
                &a.text,
                MAX_TEXT,
                true,
                &mut errs,
            );
            text(
                &format!("action_items[{i}].owner"),
                &a.owner,
                MAX_SHORT,
                true,
                &mut errs,
            );
        }
        done(errs)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CloseEmergencyBody {
    #[serde(default)]
    pub summary: Option<String>,
}

/// Management asks for immediate escalation before any ticket exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EscalationRequestBody {
    pub reason: String,
    /// Title of the ticket to open (default: "Escalation requested by <manager>").
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateTask {
    pub title: String,
    /// Username of an active user.
    #[serde(default)]
    pub owner: Option<String>,
    /// A date (`2026-11-30`) or an RFC 3339 time.
    #[serde(default)]
    pub due: Option<String>,
}

impl CreateTask {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        text("title", &self.title, MAX_SHORT, true, &mut errs);
        if let Some(d) = &self.due {
            let ok = time::Date::parse(d, &time::format_description::well_known::Iso8601::DATE)
                .is_ok()
                || OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).is_ok();
            if !ok {
                errs.push(FieldError::new(
                    "due",
                    "must be a date (YYYY-MM-DD) or an RFC 3339 time",
                ));
            }
        }
        done(errs)
    }
}

/// A task on a ticket (repair work, follow-ups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Task {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub ticket_number: String,
    pub title: String,
    pub owner: Option<String>,
    pub due: Option<String>,
    pub done: bool,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    pub done_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub done_at: Option<OffsetDateTime>,
}
