//! Request and response shapes of the public API (PRODUCT.md §4.2), with their validation.
//! Firebreak's own request bodies reject unknown fields.

use crate::error::{DomainError, FieldError};
use crate::role::Role;
use crate::ticket::*;
use serde::{Deserialize, Deserializer, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/tickets`: only `title` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateTicketRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 300, pattern = r"\S")
    )]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Default `{kind: "internal", name: <creator>}`.
    #[serde(default)]
    pub source: Option<Source>,
    /// Default `medium`.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Default from the severity: critical→p1, high→p2, medium→p3, low→p4.
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub restricted: Option<bool>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Username of the person who works the ticket.
    #[serde(default)]
    pub assignee: Option<String>,
}

impl CreateTicketRequest {
    /// Validates and normalizes; returns every problem at once.
    pub fn validate(&self) -> Result<ValidNewTicket, DomainError> {
        let mut errs = Vec::new();
        let title = required_text("title", &self.title, MAX_TITLE, &mut errs);
        optional_text(
            "description",
            self.description.as_deref(),
            MAX_TEXT,
            &mut errs,
        );
        if let Some(s) = &self.source {
            optional_text("source.name", s.name.as_deref(), MAX_SHORT, &mut errs);
            optional_text("source.contact", s.contact.as_deref(), MAX_SHORT, &mut errs);
        }
        let tags = normalize_tags(self.tags.as_deref().unwrap_or_default(), &mut errs);
        if !errs.is_empty() {
            return Err(DomainError::Validation(errs));
        }
        let severity = self.severity.unwrap_or(Severity::Medium);
        Ok(ValidNewTicket {
            title,
            description: self.description.clone().unwrap_or_default(),
            source: self.source.clone(),
            severity,
            priority: self.priority.unwrap_or(severity.default_priority()),
            restricted: self.restricted.unwrap_or(false),
            tags,
            assignee: self.assignee.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ValidNewTicket {
    pub title: String,
    pub description: String,
    pub source: Option<Source>,
    pub severity: Severity,
    pub priority: Priority,
    pub restricted: bool,
    pub tags: Vec<String>,
    pub assignee: Option<String>,
}

/// `PATCH /api/v1/tickets/{ref}`: the fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpdateTicketRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Tags added to the ticket's current ones (applied to the stored ticket, so a concurrent
    /// edit's tags are kept; `tags`, when also given, is applied first).
    #[serde(default)]
    pub add_tags: Option<Vec<String>>,
    /// A username, or `null` to unassign.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub assignee: Option<Option<String>>,
    /// The ticket owner (who accepts closure).
    #[serde(default)]
    pub owner: Option<String>,
    /// Root cause is human: a security incident in the narrow sense.
    #[serde(default)]
    pub incident: Option<bool>,
}

impl UpdateTicketRequest {
    /// Applies the edit to a copy of the ticket; returns it with the names of changed fields.
    pub fn apply(&self, t: &Ticket) -> Result<(Ticket, Vec<&'static str>), DomainError> {
        let mut errs = Vec::new();
        let mut n = t.clone();
        let mut changed = Vec::new();
        if let Some(title) = &self.title {
            n.title = required_text("title", title, MAX_TITLE, &mut errs);
        }
        if let Some(d) = &self.description {
            optional_text("description", Some(d), MAX_TEXT, &mut errs);
            n.description = d.clone();
        }
        if let Some(s) = self.severity {
            n.severity = s;
        }
        if let Some(p) = self.priority {
            n.priority = p;
        }
        if let Some(tags) = &self.tags {
            n.tags = normalize_tags(tags, &mut errs);
        }
        if let Some(more) = &self.add_tags {
            let mut bad = Vec::new();
            let more = normalize_tags(more, &mut bad);
            errs.extend(
                bad.into_iter()
                    .map(|e| FieldError::new(e.field.replacen("tags", "add_tags", 1), e.message)),
            );
            let mut all = n.tags.clone();
            all.extend(more);
            n.tags = normalize_tags(&all, &mut errs);
        }
        if let Some(a) = &self.assignee {
            n.assignee = a.clone();
        }
        if let Some(o) = &self.owner {
            n.owner = o.clone();
        }
        if let Some(i) = self.incident {
            n.incident = i;
        }
        if !errs.is_empty() {
            return Err(DomainError::Validation(errs));
        }
        for (name, differs) in [
            ("title", n.title != t.title),
            ("description", n.description != t.description),
            ("severity", n.severity != t.severity),
            ("priority", n.priority != t.priority),
            ("tags", n.tags != t.tags),
            ("assignee", n.assignee != t.assignee),
            ("owner", n.owner != t.owner),
            ("incident", n.incident != t.incident),
        ] {
            if differs {
                changed.push(name);
            }
        }
        Ok((n, changed))
    }
}

/// Body of `resolve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ResolveRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub resolution: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub problem_category: String,
}

/// Body of `reject-closure`, `reopen` and `mark-false-positive`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReasonRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub reason: String,
}

/// `POST /tickets/{ref}/reject-closure`: the reason, and optionally escalation with its report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RejectClosureRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub reason: String,
    /// Escalate the ticket to tier 2 at the same time (needs `report`).
    #[serde(default)]
    pub escalate: bool,
    #[serde(default)]
    pub report: Option<crate::response::EscalationReport>,
}

/// `PATCH /api/v1/users/{username}` (admin): the fields to change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    /// A title, or `null` to clear it.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub title: Option<Option<String>>,
    #[serde(default)]
    pub seniority: Option<i32>,
    #[serde(default)]
    pub on_duty: Option<bool>,
    /// An address, or `null` to clear it.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub clearances: Option<Vec<String>>,
    /// `true` disables the user and revokes every token they hold.
    #[serde(default)]
    pub disabled: Option<bool>,
}

impl UpdateUserRequest {
    /// Applies the edit to a copy of the user; returns it with the names of changed fields.
    pub fn apply(
        &self,
        u: &crate::user::User,
    ) -> Result<(crate::user::User, Vec<&'static str>), DomainError> {
        let mut errs = Vec::new();
        let mut n = u.clone();
        if let Some(roles) = &self.roles {
            if roles.is_empty() {
                errs.push(FieldError::new("roles", "at least one role is required"));
            }
            let mut r = roles.clone();
            r.sort();
            r.dedup();
            n.roles = r;
        }
        if let Some(t) = &self.title {
            optional_text("title", t.as_deref(), MAX_SHORT, &mut errs);
            n.title = t.clone();
        }
        if let Some(e) = &self.email {
            optional_text("email", e.as_deref(), MAX_SHORT, &mut errs);
            n.email = e.clone();
        }
        if let Some(s) = self.seniority {
            n.seniority = s;
        }
        if let Some(d) = self.on_duty {
            n.on_duty = d;
        }
        if let Some(d) = self.disabled {
            n.disabled = d;
        }
        if let Some(cs) = &self.clearances {
            for (i, c) in cs.iter().enumerate() {
                if c != crate::role::CLEARANCE_RESTRICTED {
                    errs.push(FieldError::new(
                        format!("clearances[{i}]"),
                        "unknown clearance (expected: restricted)",
                    ));
                }
            }
            let mut c = cs.clone();
            c.sort();
            c.dedup();
            n.clearances = c;
        }
        if !errs.is_empty() {
            return Err(DomainError::Validation(errs));
        }
        let mut changed = Vec::new();
        for (name, differs) in [
            ("roles", n.roles != u.roles),
            ("title", n.title != u.title),
            ("email", n.email != u.email),
            ("seniority", n.seniority != u.seniority),
            ("on_duty", n.on_duty != u.on_duty),
            ("disabled", n.disabled != u.disabled),
            ("clearances", n.clearances != u.clearances),
        ] {
            if differs {
                changed.push(name);
            }
        }
        Ok((n, changed))
    }
}

/// `POST /api/v1/tickets/{ref}/access`: put a user on a restricted ticket's access list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccessRequest {
    pub username: String,
    /// Why this person needs to see the ticket (kept in the log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `start` and `accept-closure` (optional comment).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CommentRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

/// Kinds of incident-log entries team members write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum LogKind {
    #[default]
    Note,
    Action,
    Evidence,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Note => "note",
            LogKind::Action => "action",
            LogKind::Evidence => "evidence",
        }
    }
}

/// `POST /api/v1/tickets/{ref}/log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateLogEntryRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub text: String,
    #[serde(default)]
    pub kind: LogKind,
}

impl CreateLogEntryRequest {
    pub fn validate(&self) -> Result<String, DomainError> {
        let mut errs = Vec::new();
        // keep the text verbatim (whitespace is evidence too), only require some content
        required_text("text", &self.text, MAX_TEXT, &mut errs);
        if errs.is_empty() {
            Ok(self.text.clone())
        } else {
            Err(DomainError::Validation(errs))
        }
    }
}

/// A ticket as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TicketView {
    pub id: crate::ids::TicketId,
    /// Human number, e.g. `SEC-000042`; accepted wherever an id is.
    pub number: String,
    pub title: String,
    pub description: String,
    pub source: Source,
    pub severity: Severity,
    pub priority: Priority,
    pub criticality: Criticality,
    /// 1 (first level) or 2 (second tier).
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
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: time::OffsetDateTime,
    /// Bumped by every change.
    /// Why the ticket is an escalation (a critical asset, change control, the plan, an
    /// escalation report); `null` on the normal path.
    pub escalation_reason: Option<String>,
    pub version: i64,
}

impl TicketView {
    pub fn new(t: Ticket, prefix: &str) -> Self {
        Self {
            id: t.id,
            number: format_number(prefix, t.number),
            title: t.title,
            description: t.description,
            source: t.source,
            severity: t.severity,
            priority: t.priority,
            criticality: t.criticality,
            tier: t.tier,
            status: t.status,
            owner: t.owner,
            assignee: t.assignee,
            restricted: t.restricted,
            tags: t.tags,
            resolution: t.resolution,
            problem_category: t.problem_category,
            false_positive: t.false_positive,
            incident: t.incident,
            created_by: t.created_by,
            created_at: t.created_at,
            updated_at: t.updated_at,
            escalation_reason: t.escalation_reason,
            version: t.version,
        }
    }
}

/// `SEC-000042`.
pub fn format_number(prefix: &str, n: i64) -> String {
    format!("{prefix}-{n:06}")
}

/// Parses `SEC-000042` (prefix case-insensitive) into 42.
pub fn parse_number(prefix: &str, s: &str) -> Option<i64> {
    let (p, digits) = s.rsplit_once('-')?;
    if !p.eq_ignore_ascii_case(prefix)
        || digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// One incident-log (timeline) entry: a note written by a person, or a recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LogEntryView {
    /// Position in the audit chain.
    pub seq: i64,
    pub id: crate::ids::AuditId,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: time::OffsetDateTime,
    pub actor: String,
    /// e.g. `log.note`, `ticket.created`, `ticket.resolve`.
    pub action: String,
    /// `note`, `action`, `evidence` for written entries; `change` for recorded changes.
    pub kind: String,
    pub text: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
    pub hash: String,
}

/// What a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum SearchItemType {
    Ticket,
    Event,
    Observable,
}

impl SearchItemType {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchItemType::Ticket => "ticket",
            SearchItemType::Event => "event",
            SearchItemType::Observable => "observable",
        }
    }
}

/// One item of `GET /search`: a ticket, an event or an observable the caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SearchItem {
    #[serde(rename = "type")]
    pub kind: SearchItemType,
    /// The ticket's, event's or observable's id.
    pub id: uuid::Uuid,
    /// Tickets only: their number, e.g. `SEC-000042`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Ticket title, event title or observable value (verbatim).
    pub title: String,
    /// About 160 characters around the first match of the matched field (for an incident-log
    /// match, of the entry's text), control characters removed.
    pub snippet: String,
    /// The field that matched: `title`, `description`, `number`, `log` (tickets), `title`,
    /// `host`, `source` (events), `value` (observables).
    pub field: String,
    /// Observables only: their kind (`ip`, `domain`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observable_kind: Option<String>,
}

/// `{items, next_cursor}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/users` (admin).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateUserRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
        )
    )]
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub seniority: Option<i32>,
    #[serde(default)]
    pub on_duty: Option<bool>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub clearances: Option<Vec<String>>,
    /// Omit to create a user without a password (token-only, e.g. a sensor).
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for CreateUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserRequest")
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl CreateUserRequest {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        if let Err(e) = crate::user::validate_username(&self.username) {
            errs.push(FieldError::new("username", e));
        }
        if self.roles.is_empty() {
            errs.push(FieldError::new("roles", "at least one role is required"));
        }
        optional_text("title", self.title.as_deref(), MAX_SHORT, &mut errs);
        optional_text("email", self.email.as_deref(), MAX_SHORT, &mut errs);
        if let Some(p) = &self.password
            && p.chars().count() < 12
        {
            errs.push(FieldError::new(
                "password",
                "must be at least 12 characters",
            ));
        }
        if let Some(cs) = &self.clearances {
            for (i, c) in cs.iter().enumerate() {
                if c != crate::role::CLEARANCE_RESTRICTED {
                    errs.push(FieldError::new(
                        format!("clearances[{i}]"),
                        "unknown clearance (expected: restricted)",
                    ));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errs))
        }
    }
}

/// A document as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DocumentView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: crate::ids::DocumentId,
    pub ticket_number: String,
    /// SHA-256 of the content, lowercase hex; re-checked on every download.
    pub sha256: String,
    pub size: i64,
    pub filename: String,
    pub content_type: String,
    pub description: Option<String>,
    pub source: Option<String>,
    pub collection_notes: Option<String>,
    pub added_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub added_at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_and_parse() {
        assert_eq!(format_number("SEC", 42), "SEC-000042");
        assert_eq!(format_number("SEC", 1_234_567), "SEC-1234567");
        assert_eq!(parse_number("SEC", "SEC-000042"), Some(42));
        assert_eq!(parse_number("SEC", "sec-42"), Some(42));
        assert_eq!(parse_number("SEC", "SEC-"), None);
        assert_eq!(parse_number("SEC", "SEC-0"), None);
        assert_eq!(parse_number("SEC", "INC-000042"), None);
        assert_eq!(parse_number("SEC", "SEC-4x"), None);
        assert_eq!(parse_number("SEC", "SEC-99999999999999999999"), None);
    }

    #[test]
    fn create_request_defaults_priority_from_severity() {
        let r: CreateTicketRequest =
            serde_json::from_str(r#"{"title":" x ","severity":"critical"}"#).unwrap();
        let v = r.validate().unwrap();
        assert_eq!(v.title, " x ", "user text is stored verbatim");
        assert_eq!(v.priority, Priority::P1);
        assert!(serde_json::from_str::<CreateTicketRequest>(r#"{"title":"x","bogus":1}"#).is_err());
    }

    #[test]
    fn update_request_distinguishes_null_from_absent() {
        let r: UpdateTicketRequest = serde_json::from_str(r#"{"assignee":null}"#).unwrap();
        assert_eq!(r.assignee, Some(None));
        let r: UpdateTicketRequest = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(r.assignee, None);
    }
}
