//! Storage contract: one read trait per aggregate, one atomic write entry point (`commit`) that
//! applies a change set together with its audit entries, the audit signer, and (feature
//! `testing`) the conformance suite every backend must pass. No SQL lives here.
#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
pub mod conformance;
pub mod search;
mod signer;
pub mod snapshot;

pub use search::{
    SearchEvents, SearchField, SearchFilter, SearchHit, SearchPosition, SearchStore, SearchTickets,
};
pub use signer::{AuditSigner, HeadFile, write_private};

use async_trait::async_trait;
use firebreak_domain::audit::{AuditDraft, AuditRecord, Checkpoint};
use firebreak_domain::event::{Event, ObservableRef};
use firebreak_domain::ids::{DocumentId, TicketId, TokenId, UserId};
use firebreak_domain::role::{Role, Scope};
use firebreak_domain::ticket::{Criticality, EventStatus, Severity, Ticket, TicketStatus};
use firebreak_domain::user::User;
use std::sync::Arc;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or optimistic-concurrency conflict.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or refuses writes (busy, read-only, disk full).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database refused a value (e.g. a character it cannot store).
    #[error("value refused by the database: {0}")]
    Invalid(String),
    /// The storage device is full.
    #[error("storage full: {0}")]
    Full(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user with the credential material the store keeps for them.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    /// PHC string (argon2id); `None` for users who cannot sign in with a password.
    pub password_hash: Option<String>,
    /// `<issuer> <sub>` for users an external identity provider created; they sign in only
    /// through it, matched on this, never on their name.
    pub external_id: Option<String>,
}

/// An API token as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub token_hash: String,
    /// Empty means "all the user's rights".
    pub scopes: Vec<Scope>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// Throttled: updated at most once a minute.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A sign-in session as stored: only the SHA-256 of the cookie secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: UserId,
    /// The anti-CSRF token bound to this session (sent back in `X-CSRF-Token` or a form field).
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    /// Throttled: updated at most once a minute; idle expiry counts from here.
    pub last_seen_at: OffsetDateTime,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
    /// Password accepted, second factor still owed: grants nothing but the second-factor step.
    pub mfa_pending: bool,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Failed sign-ins counted against one key (`user:<name>` or `addr:<ip>`), shared by all nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleRecord {
    pub key: String,
    pub failures: i64,
    pub window_start: OffsetDateTime,
    pub locked_until: Option<OffsetDateTime>,
}

/// A user's TOTP second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: UserId,
    /// Base32 secret.
    pub secret: String,
    /// `false` while enrolment awaits its first valid code.
    pub enabled: bool,
    /// The last time step accepted (a code is never accepted twice).
    pub last_step: i64,
}

/// A document's metadata and chain-of-custody header; the bytes live in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    pub id: DocumentId,
    pub ticket_id: TicketId,
    /// SHA-256 of the plaintext, lowercase hex: the content address.
    pub sha256: String,
    pub size: i64,
    /// As uploaded, cleaned for display; never used as a path.
    pub filename: String,
    pub content_type: String,
    pub description: Option<String>,
    /// Where the evidence came from (host, mailbox, person).
    pub source: Option<String>,
    pub collection_notes: Option<String>,
    pub added_by: String,
    pub added_at: OffsetDateTime,
}

/// A record of the response process (emergency, meeting, status report, change control,
/// notification, escalation report...): typed JSON in `data`, with the columns the process
/// queries on. The app owns the shapes; the store keeps them whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub id: uuid::Uuid,
    /// `emergency`, `meeting`, `status_report`, `change_control`, `notification`, ...
    pub kind: String,
    pub ticket_id: Option<TicketId>,
    /// The record this one belongs to (a meeting's emergency), if any.
    pub parent_id: Option<uuid::Uuid>,
    /// Free-form state the process filters on (`open`, `requested`, `final`...).
    pub status: String,
    /// A username the process filters on (a coordinator, a requester, a recipient).
    pub principal: Option<String>,
    /// The record itself, as JSON text.
    pub data: String,
    /// 1 on insert, bumped by every update.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Filters for listing workflow records; `None` means "any". Oldest first.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub kind: String,
    pub ticket_id: Option<TicketId>,
    pub parent_id: Option<uuid::Uuid>,
    pub status: Option<String>,
    pub principal: Option<String>,
    pub limit: u32,
}

/// One change inside a change set.
#[derive(Debug, Clone)]
pub enum Op {
    /// Inserts a ticket; the store assigns `number` and sets `version` to 1.
    InsertTicket(Ticket),
    /// Replaces a ticket if its stored version is still `expected_version`; bumps the version.
    UpdateTicket {
        ticket: Ticket,
        expected_version: i64,
    },
    InsertUser(UserRecord),
    /// Inserts the first user, only if there are no users yet (`Conflict` otherwise). On
    /// PostgreSQL this runs under an advisory lock so nodes started together create one admin.
    InsertFirstUser(UserRecord),
    /// Replaces a user's profile, roles and disabled flag (not the password).
    UpdateUser(User),
    SetPassword {
        user_id: UserId,
        password_hash: String,
    },
    /// Sets only the disabled flag (no lost update against a concurrent role change).
    SetUserDisabled {
        user_id: UserId,
        disabled: bool,
    },
    /// Sets only the roles.
    SetUserRoles {
        user_id: UserId,
        roles: Vec<Role>,
    },
    InsertToken(TokenRecord),
    /// Adds a user to a ticket's access list (no-op when already there).
    GrantTicketAccess {
        ticket_id: TicketId,
        username: String,
        granted_by: String,
        at: OffsetDateTime,
    },
    /// Removes a user from a ticket's access list (`NotFound` when not there).
    RevokeTicketAccess {
        ticket_id: TicketId,
        username: String,
    },
    /// Revokes one token (`Some`) or every live token of a user (`None` token).
    RevokeTokens {
        user_id: UserId,
        token_id: Option<TokenId>,
        at: OffsetDateTime,
    },
    /// Records a token's use (no-op for unknown tokens).
    TouchToken {
        token_id: TokenId,
        at: OffsetDateTime,
    },
    InsertSession(SessionRecord),
    /// Records activity on a session (no-op for unknown sessions).
    TouchSession {
        id_hash: String,
        at: OffsetDateTime,
    },
    /// Revokes live sessions of a user: one (`only`), or all but one (`except`), or all.
    RevokeSessions {
        user_id: UserId,
        only: Option<String>,
        except: Option<String>,
        at: OffsetDateTime,
    },
    /// Counts a failed sign-in against `key`: a failure older than `window` starts a new
    /// count; reaching `limit` failures locks the key until `at + lock`.
    LoginFailure {
        key: String,
        at: OffsetDateTime,
        window: time::Duration,
        limit: i64,
        lock: time::Duration,
    },
    /// Forgets the failures counted against these keys (after a successful sign-in).
    ClearLoginFailures {
        keys: Vec<String>,
    },
    /// Starts (or restarts) TOTP enrolment, or removes the factor (`None`).
    SetTotp {
        user_id: UserId,
        secret: Option<String>,
    },
    /// Enables an enrolled factor.
    EnableTotp {
        user_id: UserId,
    },
    /// Accepts a TOTP time step: `Conflict` unless it is newer than the last one accepted.
    UseTotpStep {
        user_id: UserId,
        step: i64,
    },
    /// Replaces a user's recovery codes (SHA-256 hex of each).
    SetRecoveryCodes {
        user_id: UserId,
        code_hashes: Vec<String>,
    },
    /// Spends one unused recovery code (`NotFound` when there is none with this hash).
    UseRecoveryCode {
        user_id: UserId,
        code_hash: String,
        at: OffsetDateTime,
    },
    InsertDocument(DocumentRecord),
    /// Stores encrypted blob bytes in the database under their content address (no-op when
    /// already there). Used when no shared blob directory is configured.
    PutBlob {
        sha256: String,
        data: Vec<u8>,
    },
    /// Inserts a workflow record (its `version` is stored as 1).
    /// Events from intake, deduplicated by `dedup_key` against the stored ones (see
    /// [`NewEvent`]); one result per item in [`CommitOutcome::ingested`], in order. Dedup keys
    /// are distinct within one op.
    IngestEvents(Vec<NewEvent>),
    /// Replaces an event's status, ticket, suppression, details and `resolved_at` if its stored
    /// version is still `expected_version`; bumps the version.
    UpdateEvent {
        event: Box<Event>,
        expected_version: i64,
    },
    /// Links observables to a ticket (creating the observables that are new).
    LinkTicketObservables {
        ticket_id: TicketId,
        observables: Vec<ObservableRef>,
        at: OffsetDateTime,
    },
    /// Links observables to a stored event after intake (TheHive's `POST /alert/{id}/observable`),
    /// creating the observables that are new: they then count the event (`events`), and
    /// `observable_events` finds it. `NotFound` when there is no such event. Only the links:
    /// the event's own list (`Event::observables`, in its record) is changed by an
    /// [`Op::UpdateEvent`] in the same change set. A link the event already has is kept once.
    LinkEventObservables {
        event_id: uuid::Uuid,
        observables: Vec<ObservableRef>,
        at: OffsetDateTime,
    },
    InsertRecord(WorkflowRecord),
    /// Enqueues a job. With an `idempotency_key` already held by a stored job this is a no-op
    /// (the change set still commits): enqueuing is safe to repeat.
    EnqueueJob(JobRecord),
    /// Replaces a job's status, state, attempts, `run_at`, lock, error, ticket (a run that
    /// opened one) and `updated_at` if its
    /// stored version is still `expected_version` (`Conflict` otherwise, `NotFound` when
    /// absent); bumps the version.
    UpdateJob {
        job: JobRecord,
        expected_version: i64,
    },
    /// Inserts indicators, or updates the one with the same (`kind`, `value`, `source`):
    /// confidence, description, `valid_until` and `updated_at` are replaced, `id` and
    /// `created_at` kept.
    UpsertIndicators(Vec<IndicatorRecord>),
    /// Deletes every indicator of a source (a feed replaced wholesale); `NotFound` is never
    /// returned.
    DeleteIndicators {
        source: String,
    },
    /// Replaces a workflow record's status, principal, data and `updated_at` if its stored
    /// version is still `expected_version` (`Conflict` otherwise, `NotFound` when absent);
    /// bumps the version.
    UpdateRecord {
        record: WorkflowRecord,
        expected_version: i64,
    },
}

/// The channel a PostgreSQL commit announces its [`change_topics`] on (`NOTIFY`, delivered to
/// every node at COMMIT), so caches, the job worker and open pages on other nodes act at once.
pub const CHANGES_CHANNEL: &str = "firebreak_changes";

/// What change sets change that nodes keep in memory, wait for or show on a live page: `jobs`
/// (a job was enqueued or queued again), `indicators`, `record:<kind>` for workflow records,
/// `tickets` (a ticket inserted or updated, its access list, observables, documents or records
/// changed, or an entry written to its log) and `events` (intake, or an event changed).
/// Identity changes and reads (a download, a denial, a read by an emergency team, which are
/// audited with the ticket) announce nothing: a live page that re-reads must not announce, or
/// it would refresh itself forever. Topics never carry an id or a title: a page learns that
/// something of a kind changed and re-reads it with its own user's visibility. One `events`
/// per commit however many events it holds. Sorted, comma-joined.
pub fn change_topics<'a>(sets: impl IntoIterator<Item = &'a ChangeSet>) -> String {
    let mut topics = std::collections::BTreeSet::new();
    for cs in sets {
        for op in &cs.ops {
            match op {
                Op::EnqueueJob(_) => {
                    topics.insert("jobs".to_string());
                }
                Op::UpdateJob { job, .. } if job.status == JobStatus::Queued => {
                    topics.insert("jobs".to_string());
                }
                Op::UpsertIndicators(_) | Op::DeleteIndicators { .. } => {
                    topics.insert("indicators".to_string());
                }
                Op::InsertRecord(r) | Op::UpdateRecord { record: r, .. } => {
                    topics.insert(format!("record:{}", r.kind));
                    if r.ticket_id.is_some() {
                        topics.insert("tickets".to_string());
                    }
                }
                Op::InsertTicket(_)
                | Op::UpdateTicket { .. }
                | Op::GrantTicketAccess { .. }
                | Op::RevokeTicketAccess { .. }
                | Op::LinkTicketObservables { .. }
                | Op::InsertDocument(_) => {
                    topics.insert("tickets".to_string());
                }
                Op::IngestEvents(_) | Op::LinkEventObservables { .. } => {
                    topics.insert("events".to_string());
                }
                Op::UpdateEvent { event, .. } => {
                    topics.insert("events".to_string());
                    if event.ticket_id.is_some() {
                        topics.insert("tickets".to_string());
                    }
                }
                _ => {}
            }
        }
        // a log entry is an audit entry of its own, with no op
        if cs
            .audit
            .iter()
            .any(|a| a.ticket_id.is_some() && a.action.starts_with("log."))
        {
            topics.insert("tickets".to_string());
        }
    }
    topics.into_iter().collect::<Vec<_>>().join(",")
}

/// A random tag naming one process's announcements ([`announcement_payload`]), so that a node
/// can tell its own commits, which its `LISTEN` hears too, from other nodes'.
pub fn new_origin() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The `NOTIFY` payload of a commit: its topics and then `@<origin>`, a topic no node acts on
/// (so a node that does not know it ignores it).
pub fn announcement_payload(topics: &str, origin: &str) -> String {
    format!("{topics},@{origin}")
}

/// A commit as a node hears of it: its topics ([`change_topics`], or `*` when the connection
/// was lost and anything may have changed meanwhile), and whether this process made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub topics: String,
    pub own: bool,
}

impl Announcement {
    /// Anything may have changed (a lost connection, a lagging listener).
    pub fn anything() -> Self {
        Self {
            topics: "*".into(),
            own: false,
        }
    }

    /// Reads a payload ([`announcement_payload`]) heard by the process whose tag is `origin`;
    /// a payload without a tag (an older node) is another's.
    pub fn parse(payload: &str, origin: &str) -> Self {
        let (topics, from) = match payload.rsplit_once(",@") {
            Some((t, o)) => (t, Some(o)),
            None => (payload, None),
        };
        Self {
            topics: topics.to_string(),
            own: from == Some(origin),
        }
    }
}

/// Announcements of commits (see [`CHANGES_CHANNEL`]), this process's own included.
#[async_trait]
pub trait ChangeFeed: Send {
    async fn next(&mut self) -> Announcement;
}

/// One event from intake. The store looks its `dedup_key` up: with no entry, or an entry whose
/// last repeat is older than `window_start`, `event` is inserted (with its observables linked)
/// and becomes the key's event; otherwise the key's event gets `event.occurrences` more
/// occurrences and `last_seen`. With `resolve`, the key's event (if any) gets `resolved_at`
/// (status `resolved` if it was `new`) and the key is released; with no such event, `event`
/// itself is inserted as the record of the resolution.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub dedup_key: String,
    pub window_start: OffsetDateTime,
    pub resolve: bool,
    /// The event's details as JSON ([`Event::details_json`]) when the caller serialized them
    /// already: done on the caller's threads, it keeps the single SQLite writer's work short.
    pub details: Option<String>,
    /// The backend's own stored form of the raw record and the details, when
    /// [`Store::prepare_event`] made one on the caller's threads (SQLite: both compressed with
    /// the database's dictionary). A backend that cannot read it stores the event as it is.
    pub packed: Option<Vec<u8>>,
}

impl NewEvent {
    /// The details as stored: the caller's, or serialized now.
    pub fn details(&self) -> StoreResult<std::borrow::Cow<'_, str>> {
        match &self.details {
            Some(d) => Ok(std::borrow::Cow::Borrowed(d.as_str())),
            None => self
                .event
                .details_json()
                .map(std::borrow::Cow::Owned)
                .map_err(|x| StoreError::Other(x.into())),
        }
    }
}

/// What happened to one [`NewEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The stored event it created or counted on.
    pub event_id: uuid::Uuid,
    pub created: bool,
    /// A resolution that found its event.
    pub resolved: bool,
}

/// Changes applied atomically: all ops and all audit entries commit together or not at all.
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    pub ops: Vec<Op>,
    pub audit: Vec<AuditDraft>,
}

impl ChangeSet {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn op(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
    pub fn audit(mut self, entry: AuditDraft) -> Self {
        self.audit.push(entry);
        self
    }
}

/// What a commit produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The numbers assigned to the `InsertTicket` ops, in order.
    pub ticket_numbers: Vec<i64>,
    /// The sequence numbers of the audit entries written, in order.
    pub audit_seqs: Vec<i64>,
    /// One per [`NewEvent`] of the `IngestEvents` ops, in order.
    pub ingested: Vec<Ingested>,
}

/// Filters for listing tickets; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub criticality: Option<Criticality>,
    pub severity: Option<Severity>,
    pub assignee: Option<String>,
    pub tag: Option<String>,
    /// Case-insensitive substring of title or description.
    pub text: Option<String>,
    /// Tickets with a number strictly below this one (cursor pagination, newest first).
    pub before_number: Option<i64>,
    pub limit: u32,
    /// Visibility: when set, only tickets this principal may see.
    pub visible_to: Option<Visibility>,
}

/// Whose tickets a listing may show (restricted tickets and per-role limits).
#[derive(Debug, Clone)]
pub struct Visibility {
    pub username: String,
    /// May see restricted tickets (admin or clearance).
    pub restricted_ok: bool,
    /// Sees only tickets they created, own or are assigned (reporters, executives).
    pub only_own: bool,
}

/// One entry of a restricted ticket's access list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessGrant {
    pub username: String,
    pub granted_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
}

#[async_trait]
pub trait TicketStore: Send + Sync {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Ticket>;
    async fn get_ticket_by_number(&self, number: i64) -> StoreResult<Ticket>;
    /// Newest first (by number).
    async fn list_tickets(&self, filter: &TicketFilter) -> StoreResult<Vec<Ticket>>;
    /// The ticket's access list, by username.
    async fn ticket_access(&self, ticket: TicketId) -> StoreResult<Vec<AccessGrant>>;
    async fn has_ticket_access(&self, ticket: TicketId, username: &str) -> StoreResult<bool>;
    /// A few fields of every ticket opened at or after `since`, oldest first (the overview's
    /// trends; no ticket content).
    async fn ticket_facts(&self, since: OffsetDateTime) -> StoreResult<Vec<TicketFacts>>;
}

/// What the overview's trends need of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub status: TicketStatus,
    pub criticality: Criticality,
    pub source_kind: String,
    pub problem_category: Option<String>,
    pub false_positive: bool,
    /// Only cleared staff may see it.
    pub restricted: bool,
    /// When work on it first started (its first `ticket.start` in the audit chain).
    pub started_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn get_user(&self, id: UserId) -> StoreResult<UserRecord>;
    async fn get_user_by_name(&self, username: &str) -> StoreResult<UserRecord>;
    async fn get_user_by_external_id(&self, external_id: &str) -> StoreResult<UserRecord>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn count_users(&self) -> StoreResult<i64>;
    async fn get_token_by_hash(&self, token_hash: &str) -> StoreResult<TokenRecord>;
    /// A token and its user in one read (authentication on every request).
    async fn get_token_with_user(&self, token_hash: &str)
    -> StoreResult<(TokenRecord, UserRecord)>;
    async fn list_tokens(&self, user_id: UserId) -> StoreResult<Vec<TokenRecord>>;
    /// A session and its user in one read (authentication on every request).
    async fn get_session_with_user(
        &self,
        id_hash: &str,
    ) -> StoreResult<(SessionRecord, UserRecord)>;
    /// The throttle state of these keys (absent keys are omitted).
    async fn login_throttle(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>>;
    async fn get_totp(&self, user_id: UserId) -> StoreResult<Option<TotpRecord>>;
    /// How many unused recovery codes the user has left.
    async fn recovery_codes_left(&self, user_id: UserId) -> StoreResult<i64>;
}

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    async fn get_record(&self, id: uuid::Uuid) -> StoreResult<WorkflowRecord>;
    /// Records matching every given filter, oldest first (`created_at`, then `id`), at most
    /// `limit` (0 means 1000).
    async fn list_records(&self, filter: &RecordFilter) -> StoreResult<Vec<WorkflowRecord>>;
    /// A summary of the records of `kinds` that changes whenever one of them is created,
    /// updated or deleted: a cache of them is read again only when it moves.
    async fn records_marker(&self, kinds: &[&str]) -> StoreResult<RecordsMarker>;
}

/// See [`WorkflowStore::records_marker`]: how many records, the sum of their versions (every
/// update adds one) and the latest `updated_at` (a record deleted and another created keep the
/// count and may keep the sum, not the latest time), in epoch milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordsMarker {
    pub count: i64,
    pub versions: i64,
    pub latest_update_ms: i64,
}

/// A durable job (a playbook run): claimed by one worker at a time under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: uuid::Uuid,
    /// What runs it (`playbook_run`).
    pub kind: String,
    /// Unique among stored jobs when set: a second enqueue with the same key is a no-op.
    pub idempotency_key: Option<String>,
    pub status: JobStatus,
    /// The ticket whose timeline shows the job, if any.
    pub ticket_id: Option<TicketId>,
    /// What to run, as JSON text (fixed at enqueue).
    pub payload: String,
    /// Progress, as JSON text (completed steps and their outputs).
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not to be claimed before this (backoff, a wait's deadline).
    pub run_at: OffsetDateTime,
    /// The worker holding the claim and until when; a lease that ran out is claimable again
    /// (its worker died).
    pub locked_by: Option<String>,
    pub locked_until: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// 1 on insert, bumped by every update (claims included).
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for a worker once `run_at` has come.
    Queued,
    /// Claimed by `locked_by` until `locked_until`.
    Running,
    /// Waiting for a decision (an approval) until `run_at`, its deadline.
    Waiting,
    Succeeded,
    /// Ended by a failed step the playbook does not continue past.
    Failed,
    /// Gave up after `max_attempts` (the dead-letter state).
    Dead,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Waiting,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    /// No worker will touch it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Dead | JobStatus::Cancelled
        )
    }
}

/// Filters for listing jobs, newest first; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub kind: Option<String>,
    pub status: Option<JobStatus>,
    pub ticket_id: Option<TicketId>,
    /// Jobs created strictly before this one in the order (cursor: created_at, id).
    pub before: Option<(OffsetDateTime, uuid::Uuid)>,
    /// 0 means 100.
    pub limit: u32,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn get_job(&self, id: uuid::Uuid) -> StoreResult<JobRecord>;
    /// Newest first (created_at, then id, descending).
    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>>;
    /// How many jobs have each status (statuses with none are left out).
    async fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, i64)>>;
}

/// A threat indicator from a local feed (STIX, MISP, CSV, or entered by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorRecord {
    pub id: uuid::Uuid,
    /// Observable kind: `ip`, `domain`, `url`, `email`, `md5`, `sha1`, `sha256`, `filename`,
    /// `cve`, ... (the same names observables use).
    pub kind: String,
    /// Normalized the way observables are (lowercase where case does not matter).
    pub value: String,
    /// 0-100.
    pub confidence: i32,
    /// The feed or person it came from.
    pub source: String,
    pub description: Option<String>,
    /// Ignored after this (expired indicators are kept, not matched).
    pub valid_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Filters for listing indicators in (kind, value, source) order.
#[derive(Debug, Clone, Default)]
pub struct IndicatorFilter {
    pub kind: Option<String>,
    pub source: Option<String>,
    /// Only those whose `valid_until` is unset or after this.
    pub valid_at: Option<OffsetDateTime>,
    /// Cursor: strictly after this (kind, value, source).
    pub after: Option<(String, String, String)>,
    /// 0 means 1000.
    pub limit: u32,
}

#[async_trait]
pub trait IndicatorStore: Send + Sync {
    /// Every indicator with this kind and value (one per source).
    async fn find_indicators(&self, kind: &str, value: &str) -> StoreResult<Vec<IndicatorRecord>>;
    /// Every indicator whose (kind, value) is one of `keys`, in (kind, value, source) order: one
    /// query for a whole intake batch's candidate matches.
    async fn find_indicators_any(
        &self,
        keys: &[(String, String)],
    ) -> StoreResult<Vec<IndicatorRecord>> {
        let mut out = Vec::new();
        for (k, v) in keys {
            out.extend(self.find_indicators(k, v).await?);
        }
        Ok(out)
    }
    async fn list_indicators(&self, filter: &IndicatorFilter) -> StoreResult<Vec<IndicatorRecord>>;
    async fn count_indicators(&self) -> StoreResult<i64>;
    /// (kind, value) of every indicator valid at `valid_at`, in pages after a position (the
    /// returned `i64`, opaque): loading 10,000,000 of them into memory must not hold a
    /// transaction open or load them all at once.
    async fn indicator_keys(
        &self,
        valid_at: OffsetDateTime,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<(String, String)>, i64)>;
    /// A number that changes whenever indicators are added, changed or deleted (nodes reload
    /// their in-memory matcher when it moves).
    async fn indicator_generation(&self) -> StoreResult<i64>;
}

/// Filters for listing events, newest first; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub source: Option<String>,
    pub ticket_id: Option<TicketId>,
    /// Only events this user submitted (reporters see their own).
    pub reported_by: Option<String>,
    pub suppressed_by: Option<uuid::Uuid>,
    pub severity: Option<Severity>,
    /// Case-insensitive substring of the title.
    pub text: Option<String>,
    /// Events whose position is strictly below this (cursor pagination).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// Filters for listing observables, most recently seen first.
#[derive(Debug, Clone, Default)]
pub struct ObservableFilter {
    pub kind: Option<String>,
    /// Case-insensitive substring of the value.
    pub text: Option<String>,
    /// Only those linked to this ticket.
    pub ticket_id: Option<TicketId>,
    /// Only those linked to this event.
    pub event_id: Option<uuid::Uuid>,
    /// Cursor: strictly after this (last_seen millis, id) in the order.
    pub after: Option<(i64, uuid::Uuid)>,
    pub limit: u32,
}

/// Hit counters of one suppression rule, derived from the events it suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionHits {
    pub rule_id: uuid::Uuid,
    pub events: i64,
    pub occurrences: i64,
    pub last_hit: OffsetDateTime,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn get_event(&self, id: uuid::Uuid) -> StoreResult<Event>;
    /// Newest first, with each event's position for the next page's `before_seq`.
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<(i64, Event)>>;
    /// How many events have each status.
    async fn count_events(&self) -> StoreResult<Vec<(EventStatus, i64)>>;
    async fn suppression_hits(&self) -> StoreResult<Vec<SuppressionHits>>;
    async fn get_observable(&self, id: uuid::Uuid) -> StoreResult<ObservableRecord>;
    async fn list_observables(
        &self,
        filter: &ObservableFilter,
    ) -> StoreResult<Vec<ObservableRecord>>;
    /// The tickets that mention an observable.
    async fn observable_tickets(&self, id: uuid::Uuid) -> StoreResult<Vec<TicketId>>;
    /// The events that mention an observable, newest first, at most `limit`.
    async fn observable_events(&self, id: uuid::Uuid, limit: u32) -> StoreResult<Vec<uuid::Uuid>>;
}

/// An observable with its counts of linked events and tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservableRecord {
    pub id: uuid::Uuid,
    pub kind: String,
    pub value: String,
    pub first_seen: OffsetDateTime,
    pub last_seen: OffsetDateTime,
    pub events: i64,
    pub tickets: i64,
}

#[async_trait]
pub trait DocumentStore: Send + Sync {
    async fn get_document(&self, id: DocumentId) -> StoreResult<DocumentRecord>;
    /// A ticket's documents, oldest first.
    async fn list_documents(&self, ticket: TicketId) -> StoreResult<Vec<DocumentRecord>>;
    /// Encrypted blob bytes stored in the database (`NotFound` when absent).
    async fn get_blob(&self, sha256: &str) -> StoreResult<Vec<u8>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Entries with `seq > after`, oldest first, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// A ticket's timeline: its entries, oldest first, after `after`.
    async fn ticket_audit(
        &self,
        ticket: TicketId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// Signed checkpoints with `seq > after`, oldest first.
    async fn checkpoints_after(&self, after: i64) -> StoreResult<Vec<Checkpoint>>;
    /// The newest signed checkpoint, if any.
    async fn last_checkpoint(&self) -> StoreResult<Option<Checkpoint>>;
}

/// Every read of the storage contract, and nothing that writes: what layers above the
/// application get (`App::store`), so that no handler can change anything except through a use
/// case that authorizes it.
pub trait ReadStore:
    TicketStore
    + UserStore
    + AuditStore
    + DocumentStore
    + WorkflowStore
    + EventStore
    + JobStore
    + IndicatorStore
    + SearchStore
{
}

impl<
    T: TicketStore
        + UserStore
        + AuditStore
        + DocumentStore
        + WorkflowStore
        + EventStore
        + JobStore
        + IndicatorStore
        + SearchStore
        + ?Sized,
> ReadStore for T
{
}

/// The whole storage contract, as the application sees it.
#[async_trait]
pub trait Store: ReadStore {
    /// Applies a change set and its audit entries in one transaction; returns after COMMIT.
    async fn commit(&self, changes: ChangeSet) -> StoreResult<CommitOutcome>;
    /// Readies an intake item on the caller's thread, so that the writer has less to do: its
    /// details serialized ([`NewEvent::details`]) and, where the backend has one, its stored
    /// form ([`NewEvent::packed`]). Optional: items left as they are are stored the same.
    fn prepare_event(&self, item: &mut NewEvent) -> StoreResult<()> {
        if item.details.is_none() {
            item.details = Some(item.details()?.into_owned());
        }
        Ok(())
    }
    /// Claims up to `limit` jobs for `worker` until `now + lease`: queued ones whose `run_at`
    /// has come, waiting ones whose deadline (`run_at`) has passed, and running ones whose
    /// lease ran out, oldest `run_at` first. Each claimed job becomes `running`, gets the lock
    /// and a bumped version; two concurrent claims never return the same job (PostgreSQL:
    /// `FOR UPDATE SKIP LOCKED`; SQLite: the single writer).
    async fn claim_jobs(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<JobRecord>>;
    /// Writes every table to `sink` from one consistent read ([`snapshot`]), while others write.
    async fn export_snapshot(&self, sink: &mut dyn snapshot::SnapshotSink) -> StoreResult<()>;
    /// Replaces every table with a snapshot's rows in one transaction and checks the foreign
    /// keys before COMMIT; counters are rebuilt by the triggers. For an empty database (restore).
    async fn import_snapshot(
        &self,
        source: Box<dyn snapshot::SnapshotSource>,
    ) -> StoreResult<snapshot::ImportReport>;
    /// Whether anything was written yet (a user, ticket, event or audit entry).
    async fn holds_data(&self) -> StoreResult<bool>;
    /// Structural checks a backup verification runs: SQLite's `integrity_check` and
    /// `foreign_key_check`; on both, the maintained counters against the events they count.
    /// Empty when all is well; otherwise one line per problem.
    async fn integrity_check(&self) -> StoreResult<Vec<String>>;
    /// Announcements of every node's commits ([`change_topics`]); `None` where one process is
    /// the only writer (SQLite), which invalidates its own caches and tells its own pages.
    async fn change_feed(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }
    /// Cheap liveness check of the database.
    async fn ping(&self) -> StoreResult<()>;
    /// Which backend this is (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;
    /// Stops background work (the SQLite writer) after draining what was accepted.
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

/// Roles serialized for storage: comma-free snake_case names.
pub fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn roles_from_text(s: &str) -> Vec<Role> {
    s.split(',').filter_map(Role::parse).collect()
}

pub fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn scopes_from_text(s: &str) -> Vec<Scope> {
    s.split(',').filter_map(Scope::parse).collect()
}

/// Milliseconds since the epoch, the stored resolution of every timestamp.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Truncates a timestamp to the stored (millisecond) resolution.
pub fn truncate_millis(t: OffsetDateTime) -> OffsetDateTime {
    from_millis(to_millis(t))
}

/// Escapes `%`, `_` and `\` so user text matches literally in `LIKE`/`ILIKE ... ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, ticket: Option<TicketId>) -> WorkflowRecord {
        WorkflowRecord {
            id: uuid::Uuid::nil(),
            kind: kind.into(),
            ticket_id: ticket,
            parent_id: None,
            status: "open".into(),
            principal: None,
            data: "{}".into(),
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn topics_name_kinds_of_change_never_their_content() {
        let t = TicketId(uuid::Uuid::nil());
        let check = |sets: &[ChangeSet], want: &str| {
            assert_eq!(change_topics(sets), want);
        };
        // intake: one topic however many events
        check(&[ChangeSet::new().op(Op::IngestEvents(vec![]))], "events");
        // a log entry is only an audit entry
        let log = AuditDraft::new("ann", "log.note", "ticket", t).ticket(t);
        check(&[ChangeSet::new().audit(log)], "tickets");
        // reads audited with the ticket announce nothing (a live page re-reading would loop)
        for action in [
            "ticket.read_by_emergency_team",
            "document.downloaded",
            "authz.denied",
        ] {
            let read = AuditDraft::new("ann", action, "ticket", t).ticket(t);
            check(&[ChangeSet::new().audit(read)], "");
        }
        // a record of a ticket is both
        check(
            &[
                ChangeSet::new().op(Op::InsertRecord(record("task", Some(t)))),
                ChangeSet::new().op(Op::InsertRecord(record("plan", None))),
            ],
            "record:plan,record:task,tickets",
        );
    }

    #[test]
    fn an_announcement_says_whether_this_process_made_it() {
        let me = new_origin();
        let other = new_origin();
        assert_ne!(me, other);
        let p = announcement_payload("events,tickets", &me);
        assert_eq!(
            Announcement::parse(&p, &me),
            Announcement {
                topics: "events,tickets".into(),
                own: true
            }
        );
        assert!(!Announcement::parse(&p, &other).own);
        // an older node's payload has no tag
        let old = Announcement::parse("jobs", &me);
        assert_eq!(old.topics, "jobs");
        assert!(!old.own);
    }
}
