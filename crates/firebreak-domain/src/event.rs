//! Events: one report of something that may be a security problem, as it arrived (kept raw)
//! and normalized. The help desk works the queue of `new` events: opens a ticket from one or
//! more, merges them into an existing ticket, or dismisses them as false positives. Repeats of
//! an event (same fingerprint inside the dedup window) raise its `occurrences`; events matched
//! by a suppression rule are kept with status `suppressed`.

use crate::error::{DomainError, FieldError};
use crate::ids::TicketId;
pub use crate::ticket::EventStatus;
use crate::ticket::{Priority, Severity, SourceKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A match of one of the event's observables against the local indicator store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IndicatorHit {
    pub kind: String,
    pub value: String,
    /// The feed or person the indicator came from.
    pub source: String,
    /// 0-100.
    pub confidence: i32,
    pub description: Option<String>,
}

/// An observable as events and tickets refer to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ObservableRef {
    /// `ip`, `domain`, `url`, `email`, `md5`, `sha1`, `sha256`, `cve`, `filename`, `hostname`,
    /// `user`, `other`.
    pub kind: String,
    pub value: String,
}

impl ObservableRef {
    /// The observable's stable id: the same kind and value give the same id on every node.
    pub fn id(&self) -> Uuid {
        observable_id(&self.kind, &self.value)
    }
}

/// A deterministic id (UUID version 8) from the SHA-256 of `kind:value`.
pub fn observable_id(kind: &str, value: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(value.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// An inventory asset an event was matched to (by host name or address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventAsset {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub name: String,
    pub critical_production: bool,
    /// The event's host or address that matched.
    pub matched_on: String,
}

/// The person or organization that reported an event, when one did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Reporter {
    pub kind: SourceKind,
    #[serde(default)]
    pub name: Option<String>,
    /// Email address, phone number...
    #[serde(default)]
    pub contact: Option<String>,
}

/// What the response plan's classification said about an event on arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Classification {
    /// The plan rule that matched (its name), if any.
    pub rule: Option<String>,
    /// Open a ticket without waiting for the help desk.
    pub open_ticket: bool,
    pub priority: Priority,
    /// Why a ticket opened from this event starts as an escalation, if it does.
    pub escalation_reason: Option<String>,
}

/// Who took the event out of the queue, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Disposition {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    pub reason: Option<String>,
}

/// An event. `raw` is the record exactly as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Event {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub status: EventStatus,
    /// The sending tool or source name (`suricata`, `wazuh`, a webhook source, `email`...).
    pub source: String,
    pub source_kind: SourceKind,
    /// The source's own id of the event.
    pub source_ref: Option<String>,
    /// The rule or signature that fired.
    pub rule_id: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    /// The severity as the source expressed it.
    pub original_severity: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: OffsetDateTime,
    /// When the last repeat arrived.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: OffsetDateTime,
    /// How many times it arrived (1 + repeats inside the dedup window).
    pub occurrences: i64,
    pub host: Option<String>,
    pub observables: Vec<ObservableRef>,
    pub assets: Vec<EventAsset>,
    pub tags: Vec<String>,
    /// Source + rule + key fields, hashed: repeats share it.
    pub fingerprint: String,
    /// Normalized fields of the source (`src_ip`, `dest_ip`, `proto`...).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub reporter: Option<Reporter>,
    /// The user (or device token's user) that submitted it.
    pub reported_by: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub ticket_id: Option<TicketId>,
    /// The suppression rule that matched, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub suppressed_by: Option<Uuid>,
    pub classification: Option<Classification>,
    /// Local indicators its observables match (intake checks every observable).
    #[serde(default)]
    pub intel: Vec<IndicatorHit>,
    /// Who dismissed, merged or ticketed it.
    pub disposition: Option<Disposition>,
    /// When the source said the condition was over (Alertmanager `resolved`).
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub resolved_at: Option<OffsetDateTime>,
    pub raw: String,
    /// Bumped by every change (optimistic concurrency).
    pub version: i64,
}

/// The part of an event kept as JSON beside its indexed columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventDetails {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub original_severity: Option<String>,
    #[serde(default)]
    pub observables: Vec<ObservableRef>,
    #[serde(default)]
    pub assets: Vec<EventAsset>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub reporter: Option<Reporter>,
    #[serde(default)]
    pub classification: Option<Classification>,
    #[serde(default)]
    pub disposition: Option<Disposition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intel: Vec<IndicatorHit>,
}

/// [`EventDetails`] borrowed from an event: serialized as the same JSON without copying.
#[derive(Serialize)]
struct EventDetailsRef<'a> {
    description: &'a Option<String>,
    original_severity: &'a Option<String>,
    observables: &'a [ObservableRef],
    assets: &'a [EventAsset],
    tags: &'a [String],
    fields: &'a serde_json::Map<String, serde_json::Value>,
    reporter: &'a Option<Reporter>,
    classification: &'a Option<Classification>,
    disposition: &'a Option<Disposition>,
    #[serde(skip_serializing_if = "<[IndicatorHit]>::is_empty")]
    intel: &'a [IndicatorHit],
}

impl Event {
    /// The details as stored (JSON), written straight from the event.
    pub fn details_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&EventDetailsRef {
            description: &self.description,
            original_severity: &self.original_severity,
            observables: &self.observables,
            assets: &self.assets,
            tags: &self.tags,
            fields: &self.fields,
            reporter: &self.reporter,
            classification: &self.classification,
            disposition: &self.disposition,
            intel: &self.intel,
        })
    }

    pub fn details(&self) -> EventDetails {
        EventDetails {
            description: self.description.clone(),
            original_severity: self.original_severity.clone(),
            observables: self.observables.clone(),
            assets: self.assets.clone(),
            tags: self.tags.clone(),
            fields: self.fields.clone(),
            reporter: self.reporter.clone(),
            classification: self.classification.clone(),
            disposition: self.disposition.clone(),
            intel: self.intel.clone(),
        }
    }

    pub fn set_details(&mut self, d: EventDetails) {
        self.description = d.description;
        self.original_severity = d.original_severity;
        self.observables = d.observables;
        self.assets = d.assets;
        self.tags = d.tags;
        self.fields = d.fields;
        self.reporter = d.reporter;
        self.classification = d.classification;
        self.disposition = d.disposition;
        self.intel = d.intel;
    }

    /// Whether the help desk can still act on it (open a ticket, merge, dismiss).
    pub fn in_queue(&self) -> bool {
        matches!(
            self.status,
            EventStatus::New | EventStatus::Suppressed | EventStatus::Resolved
        )
    }
}

fn check_text(
    errs: &mut Vec<FieldError>,
    field: &str,
    v: Option<&str>,
    max: usize,
    required: bool,
) {
    match v {
        None if required => errs.push(FieldError::new(field, "is required")),
        None => {}
        Some(s) if required && s.trim().is_empty() => {
            errs.push(FieldError::new(field, "must not be blank"))
        }
        Some(s) if s.chars().count() > max => errs.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        )),
        Some(s) if s.contains('\0') => {
            errs.push(FieldError::new(field, "must not contain NUL characters"))
        }
        Some(_) => {}
    }
}

/// A report filed through the API (or the web form) by a person, or for one (the help desk
/// taking a phone call).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReportEvent {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Default `medium`.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Who reports it. Default: the signed-in user, as an employee.
    #[serde(default)]
    pub reporter: Option<Reporter>,
    /// The host concerned, if known.
    #[serde(default)]
    pub host: Option<String>,
    /// When it happened (RFC 3339). Default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub occurred_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Observables the reporter names (more are extracted from the text).
    #[serde(default)]
    pub observables: Vec<ObservableRef>,
}

impl ReportEvent {
    pub fn check(&self) -> Result<(), DomainError> {
        let mut errs = Vec::new();
        check_text(&mut errs, "title", Some(&self.title), 300, true);
        check_text(
            &mut errs,
            "description",
            self.description.as_deref(),
            65_536,
            false,
        );
        check_text(&mut errs, "host", self.host.as_deref(), 255, false);
        if let Some(r) = &self.reporter {
            check_text(&mut errs, "reporter.name", r.name.as_deref(), 200, false);
            check_text(
                &mut errs,
                "reporter.contact",
                r.contact.as_deref(),
                320,
                false,
            );
        }
        if self.tags.len() > 50 {
            errs.push(FieldError::new("tags", "at most 50 tags"));
        }
        for (i, t) in self.tags.iter().enumerate() {
            check_text(&mut errs, &format!("tags[{i}]"), Some(t), 64, true);
        }
        if self.observables.len() > 500 {
            errs.push(FieldError::new("observables", "at most 500 observables"));
        }
        for (i, o) in self.observables.iter().enumerate() {
            check_text(
                &mut errs,
                &format!("observables[{i}].kind"),
                Some(&o.kind),
                32,
                true,
            );
            check_text(
                &mut errs,
                &format!("observables[{i}].value"),
                Some(&o.value),
                2048,
                true,
            );
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errs))
        }
    }
}

/// `POST /events/{id}/dismiss` (and the bulk form): a false positive, with the reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DismissEvents {
    /// The events (bulk form only; the single form takes the id from the path).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub events: Vec<Uuid>,
    pub reason: String,
}

/// `POST /events/ticket`: open one ticket from one or more events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TicketFromEvents {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub events: Vec<Uuid>,
    /// Default: the first event's title.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Default: the highest of the events' severities.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Default: from the classification, else from the severity.
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `POST /events/merge`: add events to an existing ticket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MergeEvents {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub events: Vec<Uuid>,
    /// The ticket's id or number.
    pub ticket: String,
}

/// The outcome of a bulk help-desk action: what was done, and what could not be, per event.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BulkOutcome {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub done: Vec<Uuid>,
    pub failed: Vec<BulkFailure>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BulkFailure {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub event: Uuid,
    pub code: String,
    pub message: String,
}

/// A suppression rule: events it matches are kept with status `suppressed`, out of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SuppressionRule {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub name: String,
    /// A CEL expression over `event` (`event.source == "ids" && event.rule_id == "2100498"`).
    pub condition: String,
    pub reason: String,
    /// A username.
    pub owner: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    pub enabled: bool,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    /// Events it suppressed (distinct events; repeats add to `hit_occurrences`).
    #[serde(default)]
    pub hits: i64,
    #[serde(default)]
    pub hit_occurrences: i64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_hit: Option<OffsetDateTime>,
}

impl SuppressionRule {
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.enabled && self.expires_at.is_none_or(|e| e > now)
    }
}

/// `POST /suppression-rules` and `PUT /suppression-rules/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SuppressionRuleBody {
    pub name: String,
    pub condition: String,
    pub reason: String,
    /// Default: the creator.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl SuppressionRuleBody {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_text(&mut errs, "name", Some(&self.name), 200, true);
        check_text(&mut errs, "condition", Some(&self.condition), 4000, true);
        check_text(&mut errs, "reason", Some(&self.reason), 2000, true);
        check_text(&mut errs, "owner", self.owner.as_deref(), 200, false);
        errs
    }
}

/// What an intake request did: every record is accounted for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IngestSummary {
    /// Records read.
    pub received: u64,
    /// New events created.
    pub created: u64,
    /// Repeats counted on an existing event.
    pub duplicates: u64,
    /// Events kept as `suppressed` (new ones and repeats).
    pub suppressed: u64,
    /// Resolutions applied (Alertmanager `resolved`).
    pub resolved: u64,
    /// Records of kinds not turned into events (EVE `flow`, `stats`...).
    pub skipped: u64,
    /// Tickets opened automatically by the plan's classification.
    pub tickets_opened: u64,
    /// Records refused, all of them (`errors` lists at most 1000).
    #[serde(default)]
    pub refused: u64,
    /// Records refused, by line (or record) number (at most 1000 listed).
    pub errors: Vec<LineError>,
    /// The events created or counted, in input order (at most 1000 listed).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub events: Vec<Uuid>,
}

impl IngestSummary {
    /// Adds another part's counts (not its lists of errors and events, which callers merge
    /// with their own limits and line numbers).
    pub fn add_counts(&mut self, part: &IngestSummary) {
        self.received += part.received;
        self.created += part.created;
        self.duplicates += part.duplicates;
        self.suppressed += part.suppressed;
        self.resolved += part.resolved;
        self.skipped += part.skipped;
        self.tickets_opened += part.tickets_opened;
        self.refused += part.refused;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LineError {
    /// 1-based line (or record) number.
    pub line: u64,
    pub field: String,
    pub message: String,
}

/// An observable with where it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Observable {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub kind: String,
    pub value: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: OffsetDateTime,
    /// Events that mention it.
    pub events: i64,
    /// Tickets that mention it (visible or not: the ids are listed only for visible ones).
    pub tickets: i64,
}

/// `POST /tickets/{ref}/observables`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AddObservable {
    /// Default: guessed from the value.
    #[serde(default)]
    pub kind: Option<String>,
    pub value: String,
    /// What it is or why it matters (kept in the incident log with it).
    #[serde(default)]
    pub description: Option<String>,
    /// An indicator of compromise, as the analyst (or TheHive's `ioc`) says.
    #[serde(default)]
    pub ioc: Option<bool>,
}

/// An observable with the events and (visible) tickets that mention it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ObservableDetail {
    #[serde(flatten)]
    pub observable: Observable,
    /// The newest events that mention it (at most 100).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub event_ids: Vec<Uuid>,
    /// Numbers of the tickets that mention it and that the caller may see.
    pub ticket_numbers: Vec<String>,
}

/// `POST /tickets/{ref}/communications`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateCommunication {
    /// `email`, `im`, `phone`, `meeting`, `other`.
    pub channel: String,
    /// `inbound` or `outbound`.
    #[serde(default = "inbound")]
    pub direction: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub occurred_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: String,
    /// Ids of documents already attached to the ticket.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub attachments: Vec<Uuid>,
}

fn inbound() -> String {
    "inbound".into()
}

/// A communication captured on a ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Communication {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub channel: String,
    pub direction: String,
    pub from: Option<String>,
    pub to: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub occurred_at: OffsetDateTime,
    pub subject: Option<String>,
    pub body: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub attachments: Vec<Uuid>,
    /// Email `Message-ID`, when captured from a mail.
    #[serde(default)]
    pub message_id: Option<String>,
    pub recorded_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub recorded_at: OffsetDateTime,
}
