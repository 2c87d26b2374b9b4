//! Automation: playbooks stored with every version kept, runs enqueued as jobs in the same
//! transaction as the change that triggers them (`App::commit`), claimed by workers under a
//! lease, executed step by step with each step's completion committed, so that a run resumed
//! after a crash never repeats a step whose effect committed. Approvals park a run until a
//! holder of the named role decides or the deadline passes; schedules fire once across nodes
//! (the slot is the job's idempotency key).

use crate::expr::ContextCondition;
use crate::playbook::{self, Action, OnError, Playbook, Step, TriggerKind};
use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::error::FieldError;
use firebreak_domain::event::Event;
use firebreak_domain::ids::{TicketId, UserId};
use firebreak_domain::role::{Role, groups};
use firebreak_domain::ticket::Ticket;
use firebreak_domain::user::User;
use firebreak_store::{
    ChangeSet, CommitOutcome, JobFilter, JobRecord, JobStatus, Op, RecordFilter, StoreError,
    StoreResult, WorkflowRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const K_PLAYBOOK: &str = "playbook";
pub const K_PLAYBOOK_VERSION: &str = "playbook_version";
pub const JOB_PLAYBOOK_RUN: &str = "playbook_run";
/// How long a claim lasts; a worker that dies leaves its runs claimable after this.
pub const LEASE: Duration = Duration::minutes(5);
/// How long a node trusts its copy of the playbooks (changes made on this node apply at once).
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest step output kept (bigger ones are cut, saying so).
const MAX_OUTPUT: usize = 16 * 1024;
/// Most versions listed.
const MAX_VERSIONS: u32 = 1000;

/// A playbook as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaybookView {
    pub name: String,
    pub version: i64,
    pub enabled: bool,
    pub description: String,
    pub trigger: String,
    pub yaml: String,
    pub updated_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One active playbook, compiled.
struct Active {
    pb: Playbook,
    version: i64,
    when: Option<ContextCondition>,
    cron: Option<playbook::Cron>,
}

#[derive(Default)]
pub struct PlaybookCache(RwLock<Option<(Instant, Arc<Vec<Active>>)>>);

impl PlaybookCache {
    pub fn invalidate(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

/// What a run is about, fixed when it is enqueued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPayload {
    pub playbook: String,
    pub version: i64,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observable: Option<Value>,
    pub requested_by: String,
}

/// A step's record in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// `done`, `skipped`, `failed` (and continued past), `waiting` (an approval).
    pub status: String,
    pub action: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub duration_ms: i64,
}

/// A run's progress, kept on its job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
    /// The ticket the run works on (given, or opened by the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Set while a worker executes the run: found set when a run is claimed again, it says the
    /// previous worker died mid-run, which counts as a failed attempt (a run that crashes its
    /// worker every time ends dead instead of looping).
    #[serde(default)]
    pub in_flight: bool,
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: Uuid,
    pub playbook: String,
    pub version: i64,
    pub trigger: String,
    pub status: &'static str,
    pub ticket_id: Option<TicketId>,
    pub event_id: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    pub steps: BTreeMap<String, StepRecord>,
    /// The approval it waits for, if any.
    pub waiting_for: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A decision on a waiting approval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    pub approve: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /playbooks/{name}/run`: a manual run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRun {
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub event: Option<Uuid>,
}

/// The job update a step's own commit must carry (exactly-once internal effects).
pub(crate) struct JobBinding {
    pending: Mutex<Option<(JobRecord, i64)>>,
}

impl JobBinding {
    /// Adds the pending job update to `cs`; returns it, to be put back if the commit fails.
    fn attach(&self, cs: &mut ChangeSet) -> Option<(JobRecord, i64)> {
        let taken = self.pending.lock().ok().and_then(|mut g| g.take());
        if let Some((job, expected_version)) = &taken {
            cs.ops.push(Op::UpdateJob {
                job: job.clone(),
                expected_version: *expected_version,
            });
        }
        taken
    }

    fn consumed(&self) -> bool {
        self.pending.lock().map(|g| g.is_none()).unwrap_or(false)
    }

    fn restore(&self, job: JobRecord, expected_version: i64) {
        if let Ok(mut g) = self.pending.lock() {
            *g = Some((job, expected_version));
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> AppResult<String> {
    serde_json::to_string(v).map_err(|e| AppError::Unexpected(anyhow::anyhow!("{e}")))
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Validation(vec![FieldError::new(field, message)])
}

fn cap_output(v: Value) -> Value {
    let text = v.to_string();
    if text.len() <= MAX_OUTPUT {
        v
    } else {
        json!({"truncated": true, "bytes": text.len(), "start": text.chars().take(1024).collect::<String>()})
    }
}

/// How a step sequence ended.
enum Flow {
    Continue,
    Stop(String),
    /// Waiting for an approval: the job is parked.
    Parked,
}

/// Why a step failed: worth retrying, or not.
enum StepError {
    Transient(String),
    Permanent(String),
    /// The run lost its claim (cancelled, or another worker took it): stop touching it.
    Lost,
}

impl From<AppError> for StepError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Unavailable(m) | AppError::Upstream(m) => StepError::Transient(m),
            AppError::Unexpected(m) => StepError::Transient(m.to_string()),
            AppError::Conflict {
                code: "conflict" | "concurrent_update",
                message,
            } => StepError::Transient(message),
            AppError::Validation(errs) => StepError::Permanent(
                errs.iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => StepError::Permanent(other.to_string()),
        }
    }
}

struct Run {
    job: JobRecord,
    payload: RunPayload,
    state: RunState,
    pb: Playbook,
    ctx: Map<String, Value>,
    principal: Principal,
}

impl Run {
    fn ticket_ref(&self) -> Option<String> {
        self.state.ticket_id.map(|t| t.0.to_string())
    }
}

impl App {
    /// Applies a change set: the single write path of every use case. Adds the jobs of the
    /// playbooks the change triggers, and (inside a run) the run's progress, so that both
    /// commit with the change or not at all.
    pub(crate) async fn commit(&self, mut cs: ChangeSet) -> StoreResult<CommitOutcome> {
        let bound = self.job_binding.as_ref().and_then(|b| b.attach(&mut cs));
        // a change whose runs cannot be prepared does not commit without them
        if let Err(e) = self.enqueue_triggered(&mut cs).await {
            if let (Some(b), Some((job, v))) = (&self.job_binding, bound) {
                b.restore(job, v);
            }
            return Err(match e {
                AppError::Unavailable(m) => StoreError::Unavailable(m),
                other => StoreError::Unavailable(format!("playbooks could not be loaded: {other}")),
            });
        }
        let enqueues = cs
            .ops
            .iter()
            .any(|op| matches!(op, Op::EnqueueJob(_) | Op::UpdateJob { .. }));
        match self.store_commit(cs).await {
            Ok(out) => {
                if enqueues {
                    self.job_signal.notify_one();
                }
                Ok(out)
            }
            Err(e) => {
                // inside a step: the step's change did not commit, so neither did "step done";
                // when the run's own version moved, the run lost its claim and retrying the
                // use case is pointless
                if let (Some(b), Some((job, v))) = (&self.job_binding, bound) {
                    let id = job.id;
                    b.restore(job, v);
                    if matches!(e, StoreError::Conflict(_))
                        && self
                            .store
                            .get_job(id)
                            .await
                            .map(|j| j.version != v)
                            .unwrap_or(true)
                    {
                        return Err(StoreError::Unavailable(
                            "the playbook run lost its claim".into(),
                        ));
                    }
                }
                Err(e)
            }
        }
    }

    /// Notified when a commit on this node enqueues or requeues a run.
    pub fn job_signal(&self) -> Arc<tokio::sync::Notify> {
        self.job_signal.clone()
    }

    fn playbook_principal(&self, name: &str) -> Principal {
        Principal {
            user: User {
                id: UserId(Uuid::nil()),
                username: format!("playbook:{name}"),
                roles: vec![Role::Helpdesk, Role::Responder, Role::SeniorResponder],
                title: Some("Automation".into()),
                seniority: 0,
                on_duty: true,
                email: None,
                disabled: false,
                clearances: vec!["restricted".into()],
                created_at: OffsetDateTime::UNIX_EPOCH,
            },
            scopes: vec![],
            token_id: None,
            session: None,
        }
    }

    // ----- playbooks -------------------------------------------------------------------

    async fn playbook_records(&self) -> AppResult<Vec<WorkflowRecord>> {
        Ok(self
            .store
            .list_records(&RecordFilter {
                kind: K_PLAYBOOK.into(),
                limit: 10_000,
                ..Default::default()
            })
            .await?)
    }

    async fn playbook_record(&self, name: &str) -> AppResult<WorkflowRecord> {
        self.store
            .list_records(&RecordFilter {
                kind: K_PLAYBOOK.into(),
                principal: Some(name.into()),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next()
            .ok_or(AppError::NotFound)
    }

    fn pb_view(rec: &WorkflowRecord) -> AppResult<PlaybookView> {
        serde_json::from_str(&rec.data).map_err(|e| {
            AppError::Unexpected(anyhow::anyhow!("playbook {} unreadable: {e}", rec.id))
        })
    }

    fn may_read_playbooks(p: &Principal) -> bool {
        p.can_read() && (p.is_admin() || p.has_any(groups::READERS))
    }

    pub async fn list_playbooks(&self, p: &Principal) -> AppResult<Vec<PlaybookView>> {
        if !Self::may_read_playbooks(p) {
            return Err(AppError::Forbidden(
                "playbooks are for the security team and admins".into(),
            ));
        }
        let mut out: Vec<PlaybookView> = self
            .playbook_records()
            .await?
            .iter()
            .map(Self::pb_view)
            .collect::<AppResult<_>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_playbook(&self, p: &Principal, name: &str) -> AppResult<PlaybookView> {
        if !Self::may_read_playbooks(p) {
            return Err(AppError::NotFound);
        }
        Self::pb_view(&self.playbook_record(name).await?)
    }

    /// Every stored version, newest first.
    pub async fn playbook_versions(
        &self,
        p: &Principal,
        name: &str,
    ) -> AppResult<Vec<PlaybookView>> {
        let rec = self.playbook_record(name).await?;
        if !Self::may_read_playbooks(p) {
            return Err(AppError::NotFound);
        }
        let mut out: Vec<PlaybookView> = self
            .store
            .list_records(&RecordFilter {
                kind: K_PLAYBOOK_VERSION.into(),
                parent_id: Some(rec.id),
                limit: MAX_VERSIONS,
                ..Default::default()
            })
            .await?
            .iter()
            .map(Self::pb_view)
            .collect::<AppResult<_>>()?;
        out.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(out)
    }

    async fn playbook_version(&self, name: &str, version: i64) -> AppResult<PlaybookView> {
        let rec = self.playbook_record(name).await?;
        let current = Self::pb_view(&rec)?;
        if current.version == version {
            return Ok(current);
        }
        self.store
            .list_records(&RecordFilter {
                kind: K_PLAYBOOK_VERSION.into(),
                parent_id: Some(rec.id),
                status: Some(format!("v{version}")),
                limit: 1,
                ..Default::default()
            })
            .await?
            .first()
            .map(Self::pb_view)
            .transpose()?
            .ok_or(AppError::NotFound)
    }

    /// Validates a playbook without storing it.
    pub fn validate_playbook(yaml: &str) -> Result<Playbook, AppError> {
        playbook::parse(yaml).map_err(|errs| {
            AppError::Validation(
                errs.into_iter()
                    .map(|e| FieldError::new(&e.path, e.message))
                    .collect(),
            )
        })
    }

    /// Stores a playbook (admin): a new one, or a new version of the one with its name
    /// (`expected_name`, from the URL, must match the YAML's when given). Old versions stay.
    pub async fn put_playbook(
        &self,
        p: &Principal,
        expected_name: Option<&str>,
        yaml: &str,
    ) -> AppResult<(PlaybookView, bool)> {
        if !p.is_admin() || !p.can_write() {
            return Err(AppError::Forbidden("only admins manage playbooks".into()));
        }
        if yaml.len() > 256 * 1024 {
            return Err(AppError::TooLarge("a playbook is at most 256 KiB".into()));
        }
        let pb = Self::validate_playbook(yaml)?;
        if let Some(n) = expected_name
            && n != pb.name
        {
            return Err(invalid(
                "name",
                format!("the YAML names {:?}, the URL {n:?}", pb.name),
            ));
        }
        let now = self.now();
        let existing = match self.playbook_record(&pb.name).await {
            Ok(r) => Some(r),
            Err(AppError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let version = match &existing {
            Some(r) => Self::pb_view(r)?.version + 1,
            None => 1,
        };
        let view = PlaybookView {
            name: pb.name.clone(),
            version,
            enabled: pb.enabled,
            description: pb.description.clone(),
            trigger: pb.trigger.on.as_str().into(),
            yaml: yaml.to_string(),
            updated_by: p.username().into(),
            updated_at: now,
        };
        let data = to_json(&view)?;
        let status = if pb.enabled { "enabled" } else { "disabled" };
        let mut cs = ChangeSet::new();
        let parent = match &existing {
            Some(r) => {
                cs = cs.op(Op::UpdateRecord {
                    record: WorkflowRecord {
                        status: status.into(),
                        data: data.clone(),
                        updated_at: now,
                        ..r.clone()
                    },
                    expected_version: r.version,
                });
                r.id
            }
            None => {
                let id = Uuid::now_v7();
                cs = cs.op(Op::InsertRecord(WorkflowRecord {
                    id,
                    kind: K_PLAYBOOK.into(),
                    ticket_id: None,
                    parent_id: None,
                    status: status.into(),
                    principal: Some(pb.name.clone()),
                    data: data.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                }));
                id
            }
        };
        cs = cs
            .op(Op::InsertRecord(WorkflowRecord {
                id: Uuid::now_v7(),
                kind: K_PLAYBOOK_VERSION.into(),
                ticket_id: None,
                parent_id: Some(parent),
                status: format!("v{version}"),
                principal: Some(pb.name.clone()),
                data,
                version: 1,
                created_at: now,
                updated_at: now,
            }))
            .audit(
                AuditDraft::new(p.username(), "playbook.saved", "playbook", parent).details(
                    json!({
                        "name": pb.name, "version": version, "enabled": pb.enabled,
                        "trigger": pb.trigger.on.as_str(),
                    }),
                ),
            );
        match self.commit(cs).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(AppError::Conflict {
                    code: "conflict",
                    message: "the playbook was changed at the same time; try again".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.playbook_cache.invalidate();
        Ok((view, existing.is_none()))
    }

    /// Stores a playbook for an operator on the database (`firebreak playbook import`),
    /// audited as the CLI.
    pub async fn import_playbook_as_operator(&self, yaml: &str) -> AppResult<(PlaybookView, bool)> {
        let p = Principal {
            user: User {
                id: UserId(Uuid::nil()),
                username: crate::CLI_ACTOR.into(),
                roles: vec![Role::Admin],
                title: None,
                seniority: 0,
                on_duty: true,
                email: None,
                disabled: false,
                clearances: vec![],
                created_at: OffsetDateTime::UNIX_EPOCH,
            },
            scopes: vec![],
            token_id: None,
            session: None,
        };
        self.put_playbook(&p, None, yaml).await
    }

    /// Turns a playbook on or off (a new version with `enabled` changed in the YAML header).
    pub async fn set_playbook_enabled(
        &self,
        p: &Principal,
        name: &str,
        enabled: bool,
    ) -> AppResult<PlaybookView> {
        if !p.is_admin() || !p.can_write() {
            return Err(AppError::Forbidden("only admins manage playbooks".into()));
        }
        let current = Self::pb_view(&self.playbook_record(name).await?)?;
        if current.enabled == enabled {
            return Ok(current);
        }
        let mut doc: Value = yaml_serde::from_str(&current.yaml).map_err(|e| {
            AppError::Unexpected(anyhow::anyhow!("stored playbook unreadable: {e}"))
        })?;
        if let Value::Object(m) = &mut doc {
            m.insert("enabled".into(), Value::Bool(enabled));
        }
        let yaml = yaml_serde::to_string(&doc)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("{e}")))?;
        Ok(self.put_playbook(p, Some(name), &yaml).await?.0)
    }

    async fn active_playbooks(&self) -> AppResult<Arc<Vec<Active>>> {
        if let Ok(g) = self.playbook_cache.0.read()
            && let Some((at, list)) = g.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(list.clone());
        }
        let mut list = Vec::new();
        for rec in self.playbook_records().await? {
            if rec.status != "enabled" {
                continue;
            }
            let view = Self::pb_view(&rec)?;
            match playbook::parse(&view.yaml) {
                Ok(pb) => {
                    let when = pb
                        .when
                        .as_deref()
                        .and_then(|w| ContextCondition::compile(w, playbook::VARIABLES).ok());
                    let cron = pb
                        .trigger
                        .cron
                        .as_deref()
                        .and_then(|c| playbook::Cron::parse(c).ok());
                    list.push(Active {
                        pb,
                        version: view.version,
                        when,
                        cron,
                    });
                }
                Err(e) => {
                    tracing::warn!(playbook = %view.name, errors = ?e, "stored playbook no longer validates; skipped")
                }
            }
        }
        let list = Arc::new(list);
        if let Ok(mut g) = self.playbook_cache.0.write() {
            *g = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    // ----- triggers --------------------------------------------------------------------

    fn ticket_json(&self, t: &Ticket) -> Value {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert(
                "number".into(),
                Value::String(firebreak_domain::api::format_number(
                    &self.config.ticket_prefix,
                    t.number,
                )),
            );
            m.insert("seq".into(), json!(t.number));
        }
        v
    }

    fn event_json(e: &Event) -> Value {
        serde_json::to_value(e).unwrap_or(Value::Null)
    }

    /// Builds the job (and its audit entry) for a playbook a change triggers, when its
    /// condition holds.
    #[allow(clippy::too_many_arguments)]
    fn triggered_job(
        &self,
        a: &Active,
        trigger: TriggerKind,
        key: String,
        ctx: &Map<String, Value>,
        payload: &RunPayload,
        ticket: Option<TicketId>,
        actor: &str,
    ) -> Option<(JobRecord, AuditDraft)> {
        if let Some(w) = &a.when {
            match w.eval(ctx) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    tracing::debug!(playbook = %a.pb.name, error = %e, "playbook condition did not evaluate; not run");
                    return None;
                }
            }
        }
        let now = self.now();
        let id = Uuid::now_v7();
        let payload_text = serde_json::to_string(payload).ok()?;
        let job = JobRecord {
            id,
            kind: JOB_PLAYBOOK_RUN.into(),
            idempotency_key: Some(key),
            status: JobStatus::Queued,
            ticket_id: ticket,
            payload: payload_text,
            state: "{}".into(),
            attempts: 0,
            max_attempts: a.pb.max_attempts as i32,
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut entry =
            AuditDraft::new(actor, "playbook.queued", "playbook_run", id).details(json!({
                "playbook": a.pb.name, "version": a.version, "trigger": trigger.as_str(),
                "event_id": payload.event_id,
            }));
        if let Some(t) = ticket {
            entry = entry.ticket(t);
        }
        Some((job, entry))
    }

    /// Adds to `cs` the runs of the playbooks its changes trigger.
    async fn enqueue_triggered(&self, cs: &mut ChangeSet) -> AppResult<()> {
        // quick exit: nothing in this change can trigger anything
        let interesting = cs.ops.iter().any(|op| {
            matches!(
                op,
                Op::InsertTicket(_)
                    | Op::UpdateTicket { .. }
                    | Op::LinkTicketObservables { .. }
                    | Op::IngestEvents(_)
            ) || matches!(op, Op::InsertRecord(r) if r.kind == "emergency")
        });
        if !interesting {
            return Ok(());
        }
        let active = self.active_playbooks().await?;
        if active.is_empty() {
            return Ok(());
        }
        let has = |k: TriggerKind| active.iter().any(|a| a.pb.trigger.on == k);
        let actor = cs
            .audit
            .first()
            .map(|a| a.actor.clone())
            .unwrap_or_else(|| crate::SYSTEM_ACTOR.to_string());
        let escalating = cs.audit.iter().any(|a| {
            matches!(
                a.action.as_str(),
                "ticket.escalate" | "ticket.request_escalation" | "ticket.request-escalation"
            )
        });
        let mut add: Vec<(JobRecord, AuditDraft)> = Vec::new();
        let base = |kind: TriggerKind, a: &Active| RunPayload {
            playbook: a.pb.name.clone(),
            version: a.version,
            trigger: kind.as_str().into(),
            event_id: None,
            ticket_id: None,
            emergency_id: None,
            observable: None,
            requested_by: actor.clone(),
        };
        for op in &cs.ops {
            match op {
                Op::InsertTicket(t)
                    if has(TriggerKind::TicketCreated) || has(TriggerKind::TicketEscalated) =>
                {
                    let mut ctx = Map::new();
                    ctx.insert("ticket".into(), self.ticket_json(t));
                    for a in active.iter() {
                        let kind = a.pb.trigger.on;
                        let fires = kind == TriggerKind::TicketCreated
                            || (kind == TriggerKind::TicketEscalated
                                && t.criticality
                                    == firebreak_domain::ticket::Criticality::Escalation);
                        if !fires {
                            continue;
                        }
                        let mut pl = base(kind, a);
                        pl.ticket_id = Some(t.id);
                        let key = format!("pb:{}:{}:ticket:{}", a.pb.name, kind.as_str(), t.id.0);
                        add.extend(self.triggered_job(a, kind, key, &ctx, &pl, Some(t.id), &actor));
                    }
                }
                Op::UpdateTicket { ticket: t, .. }
                    if escalating && has(TriggerKind::TicketEscalated) =>
                {
                    let mut ctx = Map::new();
                    ctx.insert("ticket".into(), self.ticket_json(t));
                    for a in active
                        .iter()
                        .filter(|a| a.pb.trigger.on == TriggerKind::TicketEscalated)
                    {
                        let mut pl = base(TriggerKind::TicketEscalated, a);
                        pl.ticket_id = Some(t.id);
                        // one run per escalation (a ticket de-escalated and escalated again runs again)
                        let key = format!(
                            "pb:{}:escalated:ticket:{}:v{}",
                            a.pb.name, t.id.0, t.version
                        );
                        add.extend(self.triggered_job(
                            a,
                            TriggerKind::TicketEscalated,
                            key,
                            &ctx,
                            &pl,
                            Some(t.id),
                            &actor,
                        ));
                    }
                }
                Op::InsertRecord(r)
                    if r.kind == "emergency" && has(TriggerKind::EmergencyDeclared) =>
                {
                    let mut ctx = Map::new();
                    ctx.insert(
                        "emergency".into(),
                        serde_json::from_str(&r.data).unwrap_or(Value::Null),
                    );
                    if let Some(tid) = r.ticket_id
                        && let Ok(t) = self.store.get_ticket(tid).await
                    {
                        ctx.insert("ticket".into(), self.ticket_json(&t));
                    }
                    for a in active
                        .iter()
                        .filter(|a| a.pb.trigger.on == TriggerKind::EmergencyDeclared)
                    {
                        let mut pl = base(TriggerKind::EmergencyDeclared, a);
                        pl.ticket_id = r.ticket_id;
                        pl.emergency_id = Some(r.id);
                        let key = format!("pb:{}:emergency:{}", a.pb.name, r.id);
                        add.extend(self.triggered_job(
                            a,
                            TriggerKind::EmergencyDeclared,
                            key,
                            &ctx,
                            &pl,
                            r.ticket_id,
                            &actor,
                        ));
                    }
                }
                Op::LinkTicketObservables {
                    ticket_id,
                    observables,
                    ..
                } if has(TriggerKind::ObservableAdded) => {
                    for o in observables {
                        let obs = json!({"kind": o.kind, "value": o.value});
                        let mut ctx = Map::new();
                        ctx.insert("observable".into(), obs.clone());
                        for a in active
                            .iter()
                            .filter(|a| a.pb.trigger.on == TriggerKind::ObservableAdded)
                        {
                            if !a.pb.trigger.kinds.is_empty()
                                && !a.pb.trigger.kinds.contains(&o.kind)
                            {
                                continue;
                            }
                            let mut pl = base(TriggerKind::ObservableAdded, a);
                            pl.ticket_id = Some(*ticket_id);
                            pl.observable = Some(obs.clone());
                            let key = format!(
                                "pb:{}:observable:{}:{}:{}",
                                a.pb.name, ticket_id.0, o.kind, o.value
                            );
                            add.extend(self.triggered_job(
                                a,
                                TriggerKind::ObservableAdded,
                                key,
                                &ctx,
                                &pl,
                                Some(*ticket_id),
                                &actor,
                            ));
                        }
                    }
                }
                Op::IngestEvents(events) if has(TriggerKind::EventReceived) => {
                    for ne in events {
                        if ne.resolve {
                            continue;
                        }
                        let mut ctx = Map::new();
                        ctx.insert("event".into(), Self::event_json(&ne.event));
                        for a in active
                            .iter()
                            .filter(|a| a.pb.trigger.on == TriggerKind::EventReceived)
                        {
                            let mut pl = base(TriggerKind::EventReceived, a);
                            pl.event_id = Some(ne.event.id);
                            // a repeat of a stored event counts on it and starts nothing: the
                            // run finds no event with this id and ends as a duplicate
                            let key = format!("pb:{}:event:{}", a.pb.name, ne.event.id);
                            add.extend(self.triggered_job(
                                a,
                                TriggerKind::EventReceived,
                                key,
                                &ctx,
                                &pl,
                                None,
                                &actor,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        // the run's own entries (started, each step) go on the record when it runs: a trigger
        // that repeats (the same key) enqueues nothing and must not write a "queued" entry
        for (job, _entry) in add {
            cs.ops.push(Op::EnqueueJob(job));
        }
        Ok(())
    }

    /// Starts a `manual` (or any) playbook on a ticket or an event now (responders and up).
    pub async fn run_playbook(
        &self,
        p: &Principal,
        name: &str,
        req: &ManualRun,
    ) -> AppResult<RunView> {
        if !p.can_write() || !(p.is_admin() || p.has_any(&[Role::Responder, Role::SeniorResponder]))
        {
            return Err(AppError::Forbidden(
                "running playbooks is for responders".into(),
            ));
        }
        let view = self.get_playbook(p, name).await?;
        if !view.enabled {
            return Err(AppError::Conflict {
                code: "playbook_disabled",
                message: format!("playbook {name} is disabled"),
            });
        }
        let pb = Self::validate_playbook(&view.yaml)?;
        let mut ctx = Map::new();
        let mut ticket = None;
        let mut event_id = None;
        if let Some(r) = &req.ticket {
            let t = self.find_ticket(p, r).await?;
            ctx.insert("ticket".into(), self.ticket_json(&t));
            ticket = Some(t.id);
        }
        if let Some(e) = req.event {
            let ev = self.find_event(p, &e.to_string()).await?;
            ctx.insert("event".into(), Self::event_json(&ev));
            event_id = Some(ev.id);
            if ticket.is_none() {
                ticket = ev.ticket_id;
            }
        }
        let a = Active {
            when: None,
            cron: None,
            version: view.version,
            pb,
        };
        let payload = RunPayload {
            playbook: name.into(),
            version: view.version,
            trigger: TriggerKind::Manual.as_str().into(),
            event_id,
            ticket_id: ticket,
            emergency_id: None,
            observable: None,
            requested_by: p.username().into(),
        };
        let key = format!("pb:{name}:manual:{}", Uuid::now_v7());
        let Some((job, entry)) = self.triggered_job(
            &a,
            TriggerKind::Manual,
            key,
            &ctx,
            &payload,
            ticket,
            p.username(),
        ) else {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "run could not be prepared"
            )));
        };
        let id = job.id;
        self.commit(ChangeSet::new().op(Op::EnqueueJob(job)).audit(entry))
            .await?;
        self.get_run(p, id).await
    }

    /// Enqueues the schedule slots that have come (once across nodes: the slot is the key).
    pub async fn fire_schedules(&self) -> AppResult<usize> {
        let active = self.active_playbooks().await?;
        let now = self.now();
        let mut cs = ChangeSet::new();
        for a in active
            .iter()
            .filter(|a| a.pb.trigger.on == TriggerKind::Schedule)
        {
            let Some(cron) = &a.cron else { continue };
            let Some(slot) = cron.next_after(now - Duration::seconds(61)) else {
                continue;
            };
            if slot > now {
                continue;
            }
            let payload = RunPayload {
                playbook: a.pb.name.clone(),
                version: a.version,
                trigger: TriggerKind::Schedule.as_str().into(),
                event_id: None,
                ticket_id: None,
                emergency_id: None,
                observable: None,
                requested_by: crate::SYSTEM_ACTOR.into(),
            };
            let key = format!(
                "pb:{}:schedule:{}",
                a.pb.name,
                firebreak_store::to_millis(slot)
            );
            if let Some((job, entry)) = self.triggered_job(
                a,
                TriggerKind::Schedule,
                key,
                &Map::new(),
                &payload,
                None,
                crate::SYSTEM_ACTOR,
            ) {
                // every node enqueues the slot; one row exists, so no audit entry here
                let _ = entry;
                cs = cs.op(Op::EnqueueJob(job));
            }
        }
        let n = cs.ops.len();
        if n > 0 {
            self.commit(cs).await?;
        }
        Ok(n)
    }

    // ----- runs ------------------------------------------------------------------------

    fn run_view(job: &JobRecord) -> AppResult<RunView> {
        let payload: RunPayload = serde_json::from_str(&job.payload)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("job {} payload: {e}", job.id)))?;
        let state: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        let waiting_for = state
            .steps
            .iter()
            .find(|(_, s)| s.status == "waiting")
            .map(|(id, s)| json!({"step": id, "approval": s.output}));
        Ok(RunView {
            id: job.id,
            playbook: payload.playbook,
            version: payload.version,
            trigger: payload.trigger,
            status: job.status.as_str(),
            ticket_id: state.ticket_id.or(job.ticket_id),
            event_id: payload.event_id,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            last_error: job.last_error.clone(),
            outcome: state.outcome,
            steps: state.steps,
            waiting_for,
            created_at: job.created_at,
            updated_at: job.updated_at,
        })
    }

    async fn may_see_run(&self, p: &Principal, job: &JobRecord) -> AppResult<bool> {
        if !Self::may_read_playbooks(p) {
            return Ok(false);
        }
        match job.ticket_id {
            Some(t) => match self.store.get_ticket(t).await {
                Ok(t) => self.can_see(p, &t).await,
                Err(StoreError::NotFound) => Ok(p.is_admin()),
                Err(e) => Err(e.into()),
            },
            None => Ok(true),
        }
    }

    pub async fn get_run(&self, p: &Principal, id: Uuid) -> AppResult<RunView> {
        let job = match self.store.get_job(id).await {
            Ok(j) => j,
            Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if !self.may_see_run(p, &job).await? {
            return Err(AppError::NotFound);
        }
        Self::run_view(&job)
    }

    /// Runs newest first, filtered; `ticket` limits to one ticket's runs.
    pub async fn list_runs(
        &self,
        p: &Principal,
        status: Option<&str>,
        ticket: Option<&str>,
        before: Option<(OffsetDateTime, Uuid)>,
        limit: u32,
    ) -> AppResult<Vec<RunView>> {
        if !Self::may_read_playbooks(p) {
            return Err(AppError::Forbidden(
                "playbook runs are for the security team and admins".into(),
            ));
        }
        let status = match status {
            Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
                invalid(
                    "status",
                    format!(
                        "expected one of: {}",
                        JobStatus::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?),
            None => None,
        };
        let ticket_id = match ticket {
            Some(r) => Some(self.find_ticket(p, r).await?.id),
            None => None,
        };
        let jobs = self
            .store
            .list_jobs(&JobFilter {
                kind: Some(JOB_PLAYBOOK_RUN.into()),
                status,
                ticket_id,
                before,
                limit: limit.clamp(1, 500),
            })
            .await?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in &jobs {
            if self.may_see_run(p, j).await? {
                out.push(Self::run_view(j)?);
            }
        }
        Ok(out)
    }

    async fn load_job_for_change(&self, p: &Principal, id: Uuid) -> AppResult<JobRecord> {
        let job = match self.store.get_job(id).await {
            Ok(j) => j,
            Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if !self.may_see_run(p, &job).await? {
            return Err(AppError::NotFound);
        }
        Ok(job)
    }

    async fn save_job_change(
        &self,
        job: JobRecord,
        expected: i64,
        entry: AuditDraft,
    ) -> AppResult<()> {
        match self
            .commit(
                ChangeSet::new()
                    .op(Op::UpdateJob {
                        job,
                        expected_version: expected,
                    })
                    .audit(entry),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(AppError::Conflict {
                code: "conflict",
                message: "the run changed at the same time; reload and try again".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn run_entry(actor: &str, action: &str, job: &JobRecord, details: Value) -> AuditDraft {
        let mut e = AuditDraft::new(actor, action, "playbook_run", job.id).details(details);
        let state: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        if let Some(t) = state.ticket_id.or(job.ticket_id) {
            e = e.ticket(t);
        }
        e
    }

    /// Cancels a run that has not ended (responders and admins); a step in flight finishes
    /// but nothing after it runs.
    pub async fn cancel_run(
        &self,
        p: &Principal,
        id: Uuid,
        reason: Option<&str>,
    ) -> AppResult<RunView> {
        if !p.can_write() || !(p.is_admin() || p.has_any(&[Role::Responder, Role::SeniorResponder]))
        {
            return Err(AppError::Forbidden(
                "cancelling runs is for responders and admins".into(),
            ));
        }
        let job = self.load_job_for_change(p, id).await?;
        if job.status.is_final() {
            return Err(AppError::Conflict {
                code: "run_ended",
                message: format!("the run has already ended ({})", job.status.as_str()),
            });
        }
        let mut j = job.clone();
        let mut st: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        st.in_flight = false;
        j.state = to_json(&st)?;
        j.status = JobStatus::Cancelled;
        j.locked_by = None;
        j.locked_until = None;
        j.updated_at = self.now();
        let entry = Self::run_entry(
            p.username(),
            "playbook.cancelled",
            &j,
            json!({"reason": reason}),
        );
        self.save_job_change(j, job.version, entry).await?;
        self.get_run(p, id).await
    }

    /// Sends a dead, failed or cancelled run back to the queue with fresh attempts (admins and
    /// senior responders); completed steps are not repeated.
    pub async fn retry_run(&self, p: &Principal, id: Uuid) -> AppResult<RunView> {
        if !p.can_write() || !(p.is_admin() || p.has_any(&[Role::SeniorResponder])) {
            return Err(AppError::Forbidden(
                "retrying runs is for senior responders and admins".into(),
            ));
        }
        let job = self.load_job_for_change(p, id).await?;
        if !matches!(
            job.status,
            JobStatus::Dead | JobStatus::Failed | JobStatus::Cancelled
        ) {
            return Err(AppError::Conflict {
                code: "run_not_ended",
                message: format!(
                    "only dead, failed or cancelled runs are retried; this one is {}",
                    job.status.as_str()
                ),
            });
        }
        let mut j = job.clone();
        let mut st: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        st.in_flight = false;
        j.state = to_json(&st)?;
        j.status = JobStatus::Queued;
        j.attempts = 0;
        j.run_at = self.now();
        j.last_error = None;
        j.updated_at = self.now();
        let entry = Self::run_entry(
            p.username(),
            "playbook.retried",
            &j,
            json!({"previous_status": job.status.as_str()}),
        );
        self.save_job_change(j, job.version, entry).await?;
        self.get_run(p, id).await
    }

    /// Approves or rejects the approval a run waits for: only holders of the role it names.
    pub async fn decide_approval(
        &self,
        p: &Principal,
        id: Uuid,
        d: &ApprovalDecision,
    ) -> AppResult<RunView> {
        let job = self.load_job_for_change(p, id).await?;
        let mut state: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        let Some((step_id, rec)) = state
            .steps
            .iter()
            .find(|(_, s)| s.status == "waiting")
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            return Err(AppError::Conflict {
                code: "not_waiting",
                message: "the run is not waiting for an approval".into(),
            });
        };
        if job.status != JobStatus::Waiting {
            return Err(AppError::Conflict {
                code: "not_waiting",
                message: format!("the run is {}, not waiting", job.status.as_str()),
            });
        }
        let role = rec
            .output
            .get("role")
            .and_then(Value::as_str)
            .and_then(Role::parse);
        let Some(role) = role else {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "approval without a role"
            )));
        };
        if !p.can_write() || !p.user.has_role(role) {
            return Err(self
                .deny(
                    p,
                    "playbook.approve",
                    None,
                    format!("this approval is for the {} role", role.as_str()),
                )
                .await);
        }
        let comment = d
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.chars().count() > 2000) {
            return Err(invalid("comment", "at most 2000 characters"));
        }
        let decision = if d.approve { "approved" } else { "rejected" };
        let mut output = rec.output.clone();
        if let Value::Object(m) = &mut output {
            m.insert("decision".into(), json!(decision));
            m.insert("decided_by".into(), json!(p.username()));
            m.insert("comment".into(), json!(comment));
        }
        state.steps.insert(
            step_id.clone(),
            StepRecord {
                status: "decided".into(),
                output,
                ..rec
            },
        );
        let mut j = job.clone();
        j.state = to_json(&state)?;
        j.status = JobStatus::Queued;
        j.run_at = self.now();
        j.updated_at = self.now();
        let entry = Self::run_entry(
            p.username(),
            if d.approve {
                "playbook.approved"
            } else {
                "playbook.rejected"
            },
            &j,
            json!({"step": step_id, "comment": comment}),
        );
        self.save_job_change(j, job.version, entry).await?;
        self.get_run(p, id).await
    }

    // ----- the worker ------------------------------------------------------------------

    /// Claims due runs and executes them (at most `limit`, up to 4 at a time); returns how
    /// many were claimed.
    pub async fn run_due_jobs(&self, worker: &str, limit: u32) -> AppResult<usize> {
        let jobs = self
            .store
            .claim_jobs(worker, self.now(), self.config.job_lease, limit.min(4))
            .await?;
        let n = jobs.len();
        let mut set = tokio::task::JoinSet::new();
        for job in jobs {
            while set.len() >= 4 {
                let _ = set.join_next().await;
            }
            let app = self.clone();
            set.spawn(async move { app.execute_job(job).await });
        }
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    async fn execute_job(&self, job: JobRecord) {
        let id = job.id;
        if job.kind != JOB_PLAYBOOK_RUN {
            let mut j = job.clone();
            j.status = JobStatus::Failed;
            j.last_error = Some(format!("no worker runs jobs of kind {:?}", job.kind));
            j.locked_by = None;
            j.locked_until = None;
            let _ = self
                .store_commit(ChangeSet::new().op(Op::UpdateJob {
                    expected_version: job.version,
                    job: j,
                }))
                .await;
            return;
        }
        // how long a due run waited for a worker (claims of expired leases count too)
        let waited = (self.now() - job.run_at).as_seconds_f64().max(0.0);
        metrics::histogram!("firebreak_playbook_queue_delay_seconds").record(waited);
        let started = std::time::Instant::now();
        if let Err(e) = self.execute_run(job).await {
            tracing::warn!(job = %id, error = %e, "playbook run could not be recorded");
        }
        let status = match self.store.get_job(id).await {
            Ok(j) => j.status.as_str(),
            Err(_) => "unknown",
        };
        metrics::histogram!("firebreak_playbook_execution_seconds").record(started.elapsed());
        metrics::counter!("firebreak_playbook_executions_total", "status" => status).increment(1);
    }

    async fn prepare_run(&self, job: JobRecord) -> Result<Run, (JobRecord, String)> {
        let payload: RunPayload = match serde_json::from_str(&job.payload) {
            Ok(p) => p,
            Err(e) => return Err((job, format!("unreadable payload: {e}"))),
        };
        let view = match self
            .playbook_version(&payload.playbook, payload.version)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                return Err((
                    job,
                    format!(
                        "playbook {} version {} not found: {e}",
                        payload.playbook, payload.version
                    ),
                ));
            }
        };
        let pb = match playbook::parse(&view.yaml) {
            Ok(pb) => pb,
            Err(e) => return Err((job, format!("playbook no longer validates: {e:?}"))),
        };
        let mut state: RunState = serde_json::from_str(&job.state).unwrap_or_default();
        if state.ticket_id.is_none() {
            state.ticket_id = payload.ticket_id;
        }
        let principal = self.playbook_principal(&pb.name);
        let mut ctx = Map::new();
        ctx.insert(
            "playbook".into(),
            json!({"name": pb.name, "version": payload.version}),
        );
        ctx.insert(
            "trigger".into(),
            json!({"kind": payload.trigger, "requested_by": payload.requested_by, "run_id": job.id}),
        );
        if let Some(o) = &payload.observable {
            ctx.insert("observable".into(), o.clone());
        }
        if let Some(eid) = payload.emergency_id
            && let Ok(r) = self.store.get_record(eid).await
        {
            ctx.insert(
                "emergency".into(),
                serde_json::from_str(&r.data).unwrap_or(Value::Null),
            );
        }
        Ok(Run {
            job,
            payload,
            state,
            pb,
            ctx,
            principal,
        })
    }

    /// Loads the run's event and ticket into its context (fresh at every step).
    async fn refresh_context(&self, run: &mut Run) -> Result<(), StepError> {
        if let Some(eid) = run.payload.event_id {
            match self.store.get_event(eid).await {
                Ok(e) => {
                    if run.state.ticket_id.is_none() {
                        run.state.ticket_id = e.ticket_id;
                    }
                    run.ctx.insert("event".into(), Self::event_json(&e));
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(StepError::Transient(e.to_string())),
            }
        }
        if let Some(tid) = run.state.ticket_id {
            match self.store.get_ticket(tid).await {
                Ok(t) => {
                    run.ctx.insert("ticket".into(), self.ticket_json(&t));
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(StepError::Transient(e.to_string())),
            }
        }
        let steps: Map<String, Value> = run
            .state
            .steps
            .iter()
            .map(|(k, v)| (k.clone(), v.output.clone()))
            .collect();
        run.ctx.insert("steps".into(), Value::Object(steps));
        Ok(())
    }

    /// Commits the run's job as it stands, with audit entries; `false` when the run lost its
    /// claim.
    async fn save_run(&self, run: &mut Run, entries: Vec<AuditDraft>) -> AppResult<bool> {
        let mut job = run.job.clone();
        job.state = to_json(&run.state)?;
        job.updated_at = self.now();
        if job.status == JobStatus::Running {
            // every save renews the claim: a long run is not taken for a dead one
            job.locked_until = Some(job.updated_at + self.config.job_lease);
        }
        if job.ticket_id.is_none() {
            job.ticket_id = run.state.ticket_id;
        }
        let mut cs = ChangeSet::new().op(Op::UpdateJob {
            job: job.clone(),
            expected_version: run.job.version,
        });
        for e in entries {
            cs = cs.audit(e);
        }
        match self.store_commit(cs).await {
            Ok(_) => {
                job.version += 1;
                run.job = job;
                Ok(true)
            }
            Err(StoreError::Conflict(_) | StoreError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn step_entry(run: &Run, action: &str, details: Value) -> AuditDraft {
        let mut e = AuditDraft::new(run.principal.username(), action, "playbook_run", run.job.id)
            .details(details);
        if let Some(t) = run.state.ticket_id {
            e = e.ticket(t);
        }
        e
    }

    async fn execute_run(&self, job: JobRecord) -> AppResult<()> {
        let mut run = match self.prepare_run(job).await {
            Ok(r) => r,
            Err((job, why)) => {
                let mut j = job.clone();
                j.status = JobStatus::Failed;
                j.last_error = Some(why.clone());
                j.locked_by = None;
                j.locked_until = None;
                let entry = Self::run_entry(
                    crate::SYSTEM_ACTOR,
                    "playbook.failed",
                    &j,
                    json!({"error": why}),
                );
                let _ = self.save_job_change(j, job.version, entry).await;
                return Ok(());
            }
        };
        // a repeat of an event that was stored already: nothing to do
        if run.payload.trigger == TriggerKind::EventReceived.as_str()
            && let Some(eid) = run.payload.event_id
            && run.state.steps.is_empty()
        {
            match self.store.get_event(eid).await {
                Err(StoreError::NotFound) => {
                    run.job.status = JobStatus::Succeeded;
                    run.job.locked_by = None;
                    run.job.locked_until = None;
                    run.state.outcome = Some("duplicate event: counted on the stored one".into());
                    self.save_run(&mut run, vec![]).await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        let crashed = run.state.in_flight;
        if crashed {
            run.job.attempts += 1;
            run.job.last_error = Some("the worker running it stopped mid-run".into());
        }
        if crashed && run.job.attempts >= run.job.max_attempts {
            run.state.in_flight = false;
            run.job.status = JobStatus::Dead;
            run.job.locked_by = None;
            run.job.locked_until = None;
            let entry = Self::step_entry(
                &run,
                "playbook.dead",
                json!({"error": "its worker stopped mid-run on every attempt", "attempts": run.job.attempts}),
            );
            self.save_run(&mut run, vec![entry]).await?;
            return Ok(());
        }
        run.state.in_flight = true;
        let first = run.job.attempts == 0 && run.state.steps.is_empty();
        let entry = Self::step_entry(
            &run,
            if first {
                "playbook.started"
            } else {
                "playbook.resumed"
            },
            json!({"playbook": run.pb.name, "version": run.payload.version, "trigger": run.payload.trigger, "attempt": run.job.attempts + 1, "steps_done": run.state.steps.len()}),
        );
        if !self.save_run(&mut run, vec![entry]).await? {
            return Ok(());
        }
        let steps = run.pb.steps.clone();
        let started = Instant::now();
        let result = Box::pin(self.exec_steps(&mut run, &steps)).await;
        let (status, action, details) = match result {
            Ok(Flow::Parked) => return Ok(()),
            Ok(Flow::Continue) => (
                JobStatus::Succeeded,
                "playbook.completed",
                json!({"outcome": run.state.outcome.clone().unwrap_or_else(|| "completed".into()), "duration_ms": started.elapsed().as_millis() as i64}),
            ),
            Ok(Flow::Stop(outcome)) => {
                run.state.outcome = Some(outcome.clone());
                (
                    JobStatus::Succeeded,
                    "playbook.completed",
                    json!({"outcome": outcome, "duration_ms": started.elapsed().as_millis() as i64}),
                )
            }
            Err(StepError::Lost) => return Ok(()),
            Err(StepError::Permanent(e)) => {
                run.job.last_error = Some(e.clone());
                (JobStatus::Failed, "playbook.failed", json!({"error": e}))
            }
            Err(StepError::Transient(e)) => {
                run.job.attempts += 1;
                run.job.last_error = Some(e.clone());
                if run.job.attempts >= run.job.max_attempts {
                    (
                        JobStatus::Dead,
                        "playbook.dead",
                        json!({"error": e, "attempts": run.job.attempts}),
                    )
                } else {
                    let delay = Duration::seconds(30 * (1i64 << run.job.attempts.min(8)));
                    run.job.run_at = self.now() + delay;
                    (
                        JobStatus::Queued,
                        "playbook.retrying",
                        json!({"error": e, "attempts": run.job.attempts, "retry_at": run.job.run_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
                    )
                }
            }
        };
        run.job.status = status;
        run.job.locked_by = None;
        run.job.locked_until = None;
        run.state.in_flight = false;
        let entry = Self::step_entry(&run, action, details);
        self.save_run(&mut run, vec![entry]).await?;
        Ok(())
    }

    async fn exec_steps(&self, run: &mut Run, steps: &[Step]) -> Result<Flow, StepError> {
        for step in steps {
            match Box::pin(self.exec_step(run, step)).await? {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Continue)
    }

    async fn exec_step(&self, run: &mut Run, step: &Step) -> Result<Flow, StepError> {
        if let Some(done) = run.state.steps.get(&step.id).cloned() {
            // completed before (this attempt or an earlier one): never repeated; a branch or
            // an approval goes on into the steps it chose
            return match (&step.action, done.status.as_str()) {
                (Action::Branch { cases, otherwise }, "done") => {
                    let chosen = done.output.get("case").and_then(Value::as_i64);
                    let steps = match chosen {
                        Some(i) if (i as usize) < cases.len() => cases[i as usize].1.clone(),
                        Some(_) => vec![],
                        None => otherwise.clone(),
                    };
                    self.exec_steps(run, &steps).await
                }
                (Action::Approval { .. }, "waiting" | "decided") => self.approval(run, step).await,
                (Action::Approval { .. }, "done") => {
                    self.after_approval(run, step, &done.output).await
                }
                (Action::Stop { .. }, "done") => Ok(Flow::Stop(
                    done.output
                        .get("outcome")
                        .and_then(Value::as_str)
                        .unwrap_or("stopped")
                        .into(),
                )),
                _ => Ok(Flow::Continue),
            };
        }
        self.refresh_context(run).await?;
        if let Some(w) = &step.when {
            let cond =
                ContextCondition::compile(w, playbook::VARIABLES).map_err(StepError::Permanent)?;
            let holds = cond.eval(&run.ctx).unwrap_or(false);
            if !holds {
                let rec = StepRecord {
                    status: "skipped".into(),
                    action: step.action.name().into(),
                    output: json!({"skipped": true}),
                    error: None,
                    duration_ms: 0,
                };
                run.state.steps.insert(step.id.clone(), rec);
                let entry = Self::step_entry(
                    run,
                    "playbook.step",
                    json!({"step": step.id, "action": step.action.name(), "status": "skipped", "reason": format!("`when` is false: {w}")}),
                );
                return self.saved(run, entry).await.map(|_| Flow::Continue);
            }
        }
        match &step.action {
            Action::Branch { cases, otherwise } => {
                let mut chosen: Option<usize> = None;
                for (i, (w, _)) in cases.iter().enumerate() {
                    let cond = ContextCondition::compile(w, playbook::VARIABLES)
                        .map_err(StepError::Permanent)?;
                    if cond.eval(&run.ctx).unwrap_or(false) {
                        chosen = Some(i);
                        break;
                    }
                }
                let output = match chosen {
                    Some(i) => json!({"case": i, "when": cases[i].0}),
                    None => json!({"case": null, "else": true}),
                };
                run.state.steps.insert(
                    step.id.clone(),
                    StepRecord {
                        status: "done".into(),
                        action: "branch".into(),
                        output: output.clone(),
                        error: None,
                        duration_ms: 0,
                    },
                );
                let entry = Self::step_entry(
                    run,
                    "playbook.step",
                    json!({"step": step.id, "action": "branch", "status": "done", "output": output}),
                );
                self.saved(run, entry).await?;
                let steps = match chosen {
                    Some(i) => cases[i].1.clone(),
                    None => otherwise.clone(),
                };
                self.exec_steps(run, &steps).await
            }
            Action::Approval { .. } => self.approval(run, step).await,
            _ => {
                let started = Instant::now();
                let result = self.perform(run, step).await;
                let duration_ms = started.elapsed().as_millis() as i64;
                let (rec, flow) = match result {
                    Ok((inputs, output, flow)) => (
                        StepRecord {
                            status: "done".into(),
                            action: step.action.name().into(),
                            output: cap_output(output),
                            error: None,
                            duration_ms,
                        },
                        (flow, inputs),
                    ),
                    Err(StepError::Lost) => return Err(StepError::Lost),
                    Err(StepError::Permanent(e) | StepError::Transient(e))
                        if step.on_error == OnError::Continue =>
                    {
                        (
                            StepRecord {
                                status: "failed".into(),
                                action: step.action.name().into(),
                                output: json!({"error": e}),
                                error: Some(e),
                                duration_ms,
                            },
                            (Flow::Continue, Value::Null),
                        )
                    }
                    Err(e) => {
                        let (kind, msg) = match &e {
                            StepError::Transient(m) => ("transient", m.clone()),
                            StepError::Permanent(m) => ("permanent", m.clone()),
                            StepError::Lost => ("lost", String::new()),
                        };
                        let entry = Self::step_entry(
                            run,
                            "playbook.step",
                            json!({"step": step.id, "action": step.action.name(), "status": "failed", "error": msg, "error_kind": kind, "duration_ms": duration_ms}),
                        );
                        self.saved(run, entry).await?;
                        return Err(e);
                    }
                };
                let (flow, inputs) = flow;
                let mut details = json!({"step": step.id, "action": step.action.name(), "status": rec.status, "inputs": inputs, "output": rec.output, "error": rec.error, "duration_ms": duration_ms});
                // a run that just opened its ticket: the steps before are put on the ticket's
                // timeline too
                if matches!(step.action, Action::OpenTicket { .. })
                    && rec.output.get("already").is_none()
                    && let Value::Object(m) = &mut details
                {
                    m.insert("playbook".into(), json!(run.pb.name));
                    m.insert(
                        "earlier_steps".into(),
                        serde_json::to_value(&run.state.steps).unwrap_or(Value::Null),
                    );
                }
                let entry = Self::step_entry(run, "playbook.step", details);
                run.state.steps.insert(step.id.clone(), rec);
                self.saved(run, entry).await?;
                Ok(flow)
            }
        }
    }

    async fn saved(&self, run: &mut Run, entry: AuditDraft) -> Result<(), StepError> {
        match self.save_run(run, vec![entry]).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StepError::Lost),
            Err(e) => Err(StepError::from(e)),
        }
    }

    /// An app whose next commit also marks `step` done on the run's job: the step's effect and
    /// its completion commit together (or neither does).
    fn bound(&self, run: &Run, step: &Step) -> Result<(App, Arc<JobBinding>), StepError> {
        let mut state = run.state.clone();
        state.steps.insert(
            step.id.clone(),
            StepRecord {
                status: "done".into(),
                action: step.action.name().into(),
                output: json!({"committed": true}),
                error: None,
                duration_ms: 0,
            },
        );
        let mut job = run.job.clone();
        job.state =
            serde_json::to_string(&state).map_err(|e| StepError::Permanent(e.to_string()))?;
        job.updated_at = self.now();
        if job.status == JobStatus::Running {
            job.locked_until = Some(job.updated_at + self.config.job_lease);
        }
        if job.ticket_id.is_none() {
            job.ticket_id = state.ticket_id;
        }
        let binding = Arc::new(JobBinding {
            pending: Mutex::new(Some((job, run.job.version))),
        });
        let mut app = self.clone();
        app.job_binding = Some(binding.clone());
        Ok((app, binding))
    }

    fn render(run: &Run, field: &str, template: &str) -> Result<String, StepError> {
        playbook::render(template, &run.ctx)
            .map_err(|e| StepError::Permanent(format!("{field}: {e}")))
    }

    fn need_ticket(run: &Run) -> Result<String, StepError> {
        run.ticket_ref().ok_or_else(|| {
            StepError::Permanent(
                "this step needs a ticket: the run has none (add an open_ticket step first)".into(),
            )
        })
    }

    /// Runs one action; returns its rendered inputs, its output and how the run goes on.
    async fn perform(&self, run: &mut Run, step: &Step) -> Result<(Value, Value, Flow), StepError> {
        let p = run.principal.clone();
        match &step.action {
            Action::IntelLookup {
                connectors,
                kinds,
                value,
                kind,
            } => {
                let value = match value {
                    Some(v) => Some(Self::render(run, "value", v)?),
                    None => None,
                };
                let inputs =
                    json!({"connectors": connectors, "kinds": kinds, "value": value, "kind": kind});
                let output = self
                    .lookup_for_run(
                        &run.ctx,
                        run.payload.event_id,
                        run.state.ticket_id,
                        connectors,
                        kinds,
                        value.as_deref(),
                        kind.as_deref(),
                    )
                    .await
                    .map_err(StepError::from)?;
                Ok((inputs, output, Flow::Continue))
            }
            Action::SetSeverity { severity } => {
                let s = Self::render(run, "severity", severity)?;
                let sev = firebreak_domain::ticket::Severity::parse(s.trim()).ok_or_else(|| {
                    StepError::Permanent(format!(
                        "severity: {s:?} is not one of {}",
                        firebreak_domain::ticket::Severity::expected()
                    ))
                })?;
                let inputs = json!({"severity": sev});
                if run.state.ticket_id.is_none() && run.payload.event_id.is_some() {
                    let out = self.set_event_severity(run, step, sev).await?;
                    return Ok((inputs, out, Flow::Continue));
                }
                let view = self
                    .edit_ticket(
                        run,
                        step,
                        &firebreak_domain::api::UpdateTicketRequest {
                            severity: Some(sev),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok((
                    inputs,
                    json!({"ticket": view.number, "severity": view.severity}),
                    Flow::Continue,
                ))
            }
            Action::SetPriority { priority } => {
                let s = Self::render(run, "priority", priority)?;
                let pr = firebreak_domain::ticket::Priority::parse(s.trim()).ok_or_else(|| {
                    StepError::Permanent(format!(
                        "priority: {s:?} is not one of {}",
                        firebreak_domain::ticket::Priority::expected()
                    ))
                })?;
                let view = self
                    .edit_ticket(
                        run,
                        step,
                        &firebreak_domain::api::UpdateTicketRequest {
                            priority: Some(pr),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok((
                    json!({"priority": pr}),
                    json!({"ticket": view.number, "priority": view.priority}),
                    Flow::Continue,
                ))
            }
            Action::SetField { field, value } => {
                let v = Self::render(run, "value", value)?;
                let mut req = firebreak_domain::api::UpdateTicketRequest::default();
                match field.as_str() {
                    "title" => req.title = Some(v.clone()),
                    "description" => req.description = Some(v.clone()),
                    _ => req.assignee = Some(Some(v.clone()).filter(|s| !s.trim().is_empty())),
                }
                let view = self.edit_ticket(run, step, &req).await?;
                Ok((
                    json!({"field": field, "value": v}),
                    json!({"ticket": view.number}),
                    Flow::Continue,
                ))
            }
            Action::AddTag { tag } => {
                let tag = Self::render(run, "tag", tag)?;
                // added to the stored tags inside the edit's retry loop: a tag someone adds at
                // the same moment is kept
                let view = self
                    .edit_ticket(
                        run,
                        step,
                        &firebreak_domain::api::UpdateTicketRequest {
                            add_tags: Some(vec![tag.clone()]),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok((
                    json!({"tag": tag}),
                    json!({"tags": view.tags}),
                    Flow::Continue,
                ))
            }
            Action::AddTask {
                title,
                description,
                assignee,
            } => {
                let title = Self::render(run, "title", title)?;
                let mut full = title.clone();
                if let Some(d) = description {
                    let d = Self::render(run, "description", d)?;
                    if !d.trim().is_empty() {
                        full = format!("{title}: {d}");
                    }
                }
                let owner = match assignee {
                    Some(a) => {
                        Some(Self::render(run, "assignee", a)?).filter(|s| !s.trim().is_empty())
                    }
                    None => None,
                };
                let t = Self::need_ticket(run)?;
                let (app, b) = self.bound(run, step)?;
                let task = app
                    .create_task(
                        &p,
                        &t,
                        &firebreak_domain::response::CreateTask {
                            title: full.clone(),
                            owner: owner.clone(),
                            due: None,
                        },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                Ok((
                    json!({"title": full, "owner": owner}),
                    json!({"task_id": task.id}),
                    Flow::Continue,
                ))
            }
            Action::AddLog { text, kind } => {
                let text = Self::render(run, "text", text)?;
                let t = Self::need_ticket(run)?;
                let kind_v: firebreak_domain::api::LogKind = serde_json::from_value(json!(kind))
                    .map_err(|e| StepError::Permanent(format!("kind: {e}")))?;
                let (app, b) = self.bound(run, step)?;
                let entry = app
                    .add_log_entry(
                        &p,
                        &t,
                        &firebreak_domain::api::CreateLogEntryRequest {
                            text: text.clone(),
                            kind: kind_v,
                        },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                Ok((
                    json!({"text": text, "kind": kind}),
                    serde_json::to_value(&entry).unwrap_or(Value::Null),
                    Flow::Continue,
                ))
            }
            Action::Notify {
                channel,
                to,
                title,
                text,
            } => {
                let title = Self::render(run, "title", title)?;
                let text = Self::render(run, "text", text)?;
                let mut targets = Vec::new();
                for t in to {
                    targets.push(Self::render(run, "to", t)?);
                }
                let inputs = json!({"channel": channel, "to": targets, "title": title});
                let out = self
                    .notify_for_run(run, step, channel, &targets, &title, &text)
                    .await?;
                Ok((inputs, out, Flow::Continue))
            }
            Action::Webhook { url, body } => {
                let url = Self::render(run, "url", url)?;
                let body = match body {
                    Some(b) => {
                        let text = playbook::render_json(b, &run.ctx)
                            .map_err(|e| StepError::Permanent(format!("body: {e}")))?;
                        serde_json::from_str::<Value>(&text).map_err(|e| {
                            StepError::Permanent(format!("body: does not render to JSON: {e}"))
                        })?;
                        text
                    }
                    None => json!({
                        "type": "firebreak.playbook",
                        "playbook": run.pb.name,
                        "run_id": run.job.id,
                        "step": step.id,
                        "ticket": run.ctx.get("ticket").and_then(|t| t.get("number")).cloned(),
                        "event": run.payload.event_id,
                    })
                    .to_string(),
                };
                let Some(sender) = self.webhooks.clone() else {
                    return Err(StepError::Permanent(
                        "no webhook sender is configured ([webhooks] in firebreak.toml)".into(),
                    ));
                };
                // the same id on every attempt: receivers deduplicate on it
                let msg_id = format!("{}.{}", run.job.id, step.id);
                match tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    sender.post(&msg_id, &url, &body),
                )
                .await
                {
                    Ok(Ok(())) => Ok((
                        json!({"url": url, "webhook_id": msg_id}),
                        json!({"delivered": true}),
                        Flow::Continue,
                    )),
                    Ok(Err(e)) => Err(StepError::Transient(format!("webhook: {e}"))),
                    Err(_) => Err(StepError::Transient("webhook: timed out after 30 s".into())),
                }
            }
            Action::CreateChangeControl {
                kind,
                description,
                systems,
            } => {
                let description = Self::render(run, "description", description)?;
                let mut sys = Vec::new();
                for s in systems {
                    sys.push(Self::render(run, "systems", s)?);
                }
                let kind_v: firebreak_domain::response::ChangeKind =
                    serde_json::from_value(json!(kind))
                        .map_err(|e| StepError::Permanent(format!("kind: {e}")))?;
                let t = Self::need_ticket(run)?;
                let (app, b) = self.bound(run, step)?;
                let cc = app
                    .create_change_control(
                        &p,
                        &t,
                        &firebreak_domain::response::CreateChangeControl {
                            kind: kind_v,
                            description: description.clone(),
                            systems: sys.clone(),
                        },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                Ok((
                    json!({"kind": kind, "description": description, "systems": sys}),
                    json!({"change_control_id": cc.id}),
                    Flow::Continue,
                ))
            }
            Action::OpenTicket { title, severity } => {
                if let Some(t) = run.state.ticket_id {
                    return Ok((
                        Value::Null,
                        json!({"ticket_id": t, "already": true}),
                        Flow::Continue,
                    ));
                }
                let Some(eid) = run.payload.event_id else {
                    return Err(StepError::Permanent(
                        "open_ticket needs an event: the run has none".into(),
                    ));
                };
                let title = match title {
                    Some(t) => {
                        Some(Self::render(run, "title", t)?).filter(|s| !s.trim().is_empty())
                    }
                    None => None,
                };
                let severity = match severity {
                    Some(s) => {
                        let s = Self::render(run, "severity", s)?;
                        Some(
                            firebreak_domain::ticket::Severity::parse(s.trim()).ok_or_else(
                                || {
                                    StepError::Permanent(format!(
                                        "severity: {s:?} is not a severity"
                                    ))
                                },
                            )?,
                        )
                    }
                    None => None,
                };
                let (app, b) = self.bound(run, step)?;
                let view = app
                    .ticket_from_events(
                        &p,
                        &firebreak_domain::event::TicketFromEvents {
                            events: vec![eid],
                            title: title.clone(),
                            description: None,
                            severity,
                            priority: None,
                            restricted: false,
                            tags: vec![],
                        },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                run.state.ticket_id = Some(view.id);
                Ok((
                    json!({"title": title, "severity": severity}),
                    json!({"ticket_id": view.id, "ticket": view.number}),
                    Flow::Continue,
                ))
            }
            Action::Escalate {
                reason,
                impact,
                systems,
                actions_taken,
            } => {
                let report = firebreak_domain::response::EscalationReport {
                    reason: Self::render(run, "reason", reason)?,
                    impact: Self::render(run, "impact", impact)?,
                    systems: systems
                        .iter()
                        .map(|s| Self::render(run, "systems", s))
                        .collect::<Result<_, _>>()?,
                    actions_taken: Self::render(run, "actions_taken", actions_taken)?,
                };
                let t = Self::need_ticket(run)?;
                let current = self.find_ticket(&p, &t).await?;
                if current.criticality != firebreak_domain::ticket::Criticality::Normal {
                    return Ok((
                        json!({"reason": report.reason}),
                        json!({"already": current.criticality}),
                        Flow::Continue,
                    ));
                }
                let inputs = serde_json::to_value(&report).unwrap_or(Value::Null);
                let (app, b) = self.bound(run, step)?;
                let view = app
                    .escalate(
                        &p,
                        &t,
                        &firebreak_domain::response::EscalateRequest { report },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                Ok((
                    inputs,
                    json!({"ticket": view.number, "criticality": view.criticality}),
                    Flow::Continue,
                ))
            }
            Action::DismissEvent { reason } => {
                let reason = Self::render(run, "reason", reason)?;
                let Some(eid) = run.payload.event_id else {
                    return Err(StepError::Permanent(
                        "dismiss_event needs an event: the run has none".into(),
                    ));
                };
                let (app, b) = self.bound(run, step)?;
                let out = app
                    .dismiss_events(
                        &p,
                        &firebreak_domain::event::DismissEvents {
                            events: vec![eid],
                            reason: reason.clone(),
                        },
                    )
                    .await?;
                self.after_bound(run, step, &b);
                Ok((
                    json!({"reason": reason}),
                    serde_json::to_value(&out).unwrap_or(Value::Null),
                    Flow::Continue,
                ))
            }
            Action::Stop { outcome } => {
                let outcome = Self::render(run, "outcome", outcome)?;
                Ok((
                    Value::Null,
                    json!({"outcome": outcome}),
                    Flow::Stop(outcome),
                ))
            }
            Action::Branch { .. } | Action::Approval { .. } => {
                Err(StepError::Permanent("not an action".into()))
            }
        }
    }

    /// A ticket edit by a step, committed together with the step's completion.
    async fn edit_ticket(
        &self,
        run: &mut Run,
        step: &Step,
        req: &firebreak_domain::api::UpdateTicketRequest,
    ) -> Result<firebreak_domain::api::TicketView, StepError> {
        let t = Self::need_ticket(run)?;
        let (app, b) = self.bound(run, step)?;
        let view = app.update_ticket(&run.principal, &t, req).await?;
        self.after_bound(run, step, &b);
        Ok(view)
    }

    /// After a bound use case: its commit carried the run's job update (version moved on).
    fn after_bound(&self, run: &mut Run, _step: &Step, b: &JobBinding) {
        if b.consumed() {
            run.job.version += 1;
        }
    }

    async fn set_event_severity(
        &self,
        run: &mut Run,
        step: &Step,
        sev: firebreak_domain::ticket::Severity,
    ) -> Result<Value, StepError> {
        let Some(eid) = run.payload.event_id else {
            return Err(StepError::Permanent("no event".into()));
        };
        for _ in 0..3 {
            let mut e = match self.store.get_event(eid).await {
                Ok(e) => e,
                Err(e) => return Err(StepError::Transient(e.to_string())),
            };
            let version = e.version;
            let before = e.severity;
            e.severity = sev;
            let (app, b) = self.bound(run, step)?;
            let cs = ChangeSet::new()
                .op(Op::UpdateEvent {
                    event: Box::new(e),
                    expected_version: version,
                })
                .audit(
                    AuditDraft::new(
                        run.principal.username(),
                        "event.severity_changed",
                        "event",
                        eid,
                    )
                    .details(json!({"from": before, "to": sev, "run": run.job.id})),
                );
            match app.commit(cs).await {
                Ok(_) => {
                    self.after_bound(run, step, &b);
                    return Ok(json!({"event": eid, "severity": sev}));
                }
                Err(StoreError::Conflict(_)) => {
                    if b.consumed() {
                        // the job's version was the conflict: the run lost its claim
                        return Err(StepError::Lost);
                    }
                    b.restore(run.job.clone(), run.job.version);
                }
                Err(e) => return Err(StepError::Transient(e.to_string())),
            }
        }
        Err(StepError::Transient("the event kept changing".into()))
    }

    async fn approval(&self, run: &mut Run, step: &Step) -> Result<Flow, StepError> {
        let Action::Approval {
            role,
            prompt,
            timeout_secs,
            ..
        } = &step.action
        else {
            return Ok(Flow::Continue);
        };
        let now = self.now();
        let existing = run.state.steps.get(&step.id).cloned();
        match existing {
            None => {
                self.refresh_context(run).await?;
                let prompt = Self::render(run, "prompt", prompt)?;
                let deadline = now + Duration::seconds(*timeout_secs);
                let output = json!({
                    "role": role.as_str(), "prompt": prompt,
                    "deadline": deadline.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                });
                run.state.steps.insert(
                    step.id.clone(),
                    StepRecord {
                        status: "waiting".into(),
                        action: "approval".into(),
                        output: output.clone(),
                        error: None,
                        duration_ms: 0,
                    },
                );
                run.job.status = JobStatus::Waiting;
                run.job.run_at = deadline;
                run.state.in_flight = false;
                run.job.locked_by = None;
                run.job.locked_until = None;
                let entry = Self::step_entry(
                    run,
                    "playbook.waiting",
                    json!({"step": step.id, "approval": output}),
                );
                self.saved(run, entry).await?;
                self.tell_approvers(run, *role, &prompt).await;
                Ok(Flow::Parked)
            }
            Some(rec) if rec.status == "waiting" => {
                // claimed while waiting: the deadline passed without a decision
                let mut output = rec.output.clone();
                if let Value::Object(m) = &mut output {
                    m.insert("decision".into(), json!("timed_out"));
                }
                self.finish_approval(run, step, output, rec).await
            }
            Some(rec) if rec.status == "decided" => {
                let output = rec.output.clone();
                self.finish_approval(run, step, output, rec).await
            }
            Some(rec) => self.after_approval(run, step, &rec.output).await,
        }
    }

    async fn finish_approval(
        &self,
        run: &mut Run,
        step: &Step,
        output: Value,
        rec: StepRecord,
    ) -> Result<Flow, StepError> {
        let decision = output
            .get("decision")
            .and_then(Value::as_str)
            .unwrap_or("timed_out")
            .to_string();
        run.state.steps.insert(
            step.id.clone(),
            StepRecord {
                status: "done".into(),
                output: output.clone(),
                ..rec
            },
        );
        let entry = Self::step_entry(
            run,
            "playbook.step",
            json!({"step": step.id, "action": "approval", "status": "done", "output": output, "decision": decision}),
        );
        self.saved(run, entry).await?;
        self.after_approval(run, step, &output).await
    }

    async fn after_approval(
        &self,
        run: &mut Run,
        step: &Step,
        output: &Value,
    ) -> Result<Flow, StepError> {
        let Action::Approval {
            on_reject,
            on_timeout,
            ..
        } = &step.action
        else {
            return Ok(Flow::Continue);
        };
        match output.get("decision").and_then(Value::as_str) {
            Some("approved") => Ok(Flow::Continue),
            Some("rejected") => match self.exec_steps(run, on_reject).await? {
                Flow::Continue => Ok(Flow::Stop("rejected".into())),
                other => Ok(other),
            },
            _ => match self.exec_steps(run, on_timeout).await? {
                Flow::Continue => Ok(Flow::Stop("approval timed out".into())),
                other => Ok(other),
            },
        }
    }

    /// Tells the holders of `role` in-app that a run waits for them (best effort).
    async fn tell_approvers(&self, run: &Run, role: Role, prompt: &str) {
        let Some(tid) = run.state.ticket_id else {
            return;
        };
        let Ok(t) = self.store.get_ticket(tid).await else {
            return;
        };
        let Ok(users) = self.store.list_users().await else {
            return;
        };
        let mut cs = ChangeSet::new();
        for u in users.iter().filter(|u| !u.disabled && u.has_role(role)) {
            // a restricted ticket's prompt goes only to those who may see the ticket
            let them = Principal {
                user: u.clone(),
                scopes: vec![],
                token_id: None,
                session: None,
            };
            if !self.can_see(&them, &t).await.unwrap_or(false) {
                continue;
            }
            if let Ok(rec) = self.notification_on(
                &t,
                None,
                &u.username,
                &format!("Approval needed ({}): {prompt}", run.pb.name),
                firebreak_domain::plan::Channel::InApp,
            ) {
                cs = cs.op(Op::InsertRecord(rec));
            }
        }
        if !cs.ops.is_empty()
            && let Err(e) = self.store_commit(cs).await
        {
            tracing::warn!(error = %e, "approvers could not be notified");
        }
    }

    async fn notify_for_run(
        &self,
        run: &mut Run,
        step: &Step,
        channel: &str,
        targets: &[String],
        title: &str,
        text: &str,
    ) -> Result<Value, StepError> {
        match channel {
            "slack" | "teams" | "webhook" => {
                let mut sent = Vec::new();
                for name in targets {
                    let link = run
                        .ctx
                        .get("ticket")
                        .and_then(|t| t.get("number"))
                        .and_then(Value::as_str)
                        .map(|n| format!("/tickets/{n}"));
                    self.post_to_connector(
                        name,
                        channel,
                        &format!("{}.{}", run.job.id, step.id),
                        title,
                        text,
                        link.as_deref(),
                        &run.ctx,
                    )
                    .await
                    .map_err(|e| StepError::Transient(format!("{name}: {e}")))?;
                    sent.push(name.clone());
                }
                Ok(json!({"sent": sent}))
            }
            _ => {
                let t = Self::need_ticket(run)?;
                let ticket = self.find_ticket(&run.principal, &t).await?;
                let users = self
                    .store
                    .list_users()
                    .await
                    .map_err(|e| StepError::Transient(e.to_string()))?;
                let mut recipients = Vec::new();
                for target in targets {
                    if let Some(r) = target.strip_prefix("role:").and_then(Role::parse) {
                        recipients.extend(
                            users
                                .iter()
                                .filter(|u| !u.disabled && u.has_role(r))
                                .map(|u| u.username.clone()),
                        );
                    } else if users.iter().any(|u| u.username == *target && !u.disabled) {
                        recipients.push(target.clone());
                    } else {
                        return Err(StepError::Permanent(format!(
                            "to: no active user {target:?}"
                        )));
                    }
                }
                recipients.sort();
                recipients.dedup();
                let ch = if channel == "email" {
                    firebreak_domain::plan::Channel::Email
                } else {
                    firebreak_domain::plan::Channel::InApp
                };
                let full = if text.trim().is_empty() {
                    title.to_string()
                } else {
                    format!("{title}: {text}")
                };
                let (app, b) = self.bound(run, step)?;
                let mut cs = ChangeSet::new();
                for r in &recipients {
                    cs = cs.op(Op::InsertRecord(
                        self.notification_on(&ticket, None, r, &full, ch)?,
                    ));
                }
                cs = cs.audit(
                    AuditDraft::new(
                        run.principal.username(),
                        "notification.sent",
                        "ticket",
                        ticket.id,
                    )
                    .ticket(ticket.id)
                    .details(json!({"channel": channel, "recipients": recipients, "title": title})),
                );
                app.commit(cs)
                    .await
                    .map_err(|e| StepError::from(AppError::from(e)))?;
                self.after_bound(run, step, &b);
                Ok(json!({"recipients": recipients, "channel": channel}))
            }
        }
    }
}

/// What a playbook would do with an event, touching nothing (`firebreak playbook test`):
/// whether it would run, and a line per step. Steps that depend on results only a real run
/// has (intel verdicts, approvals) show every path they could take.
pub fn dry_run(pb: &Playbook, event: &Value) -> (bool, Vec<String>) {
    let mut ctx = Map::new();
    ctx.insert("event".into(), event.clone());
    ctx.insert("playbook".into(), json!({"name": pb.name, "version": 0}));
    ctx.insert(
        "trigger".into(),
        json!({"kind": pb.trigger.on.as_str(), "requested_by": "playbook-test"}),
    );
    ctx.insert("steps".into(), json!({}));
    let mut lines = Vec::new();
    if !pb.enabled {
        lines.push("the playbook is disabled: nothing would run".into());
        return (false, lines);
    }
    if pb.trigger.on != TriggerKind::EventReceived && pb.trigger.on != TriggerKind::Manual {
        lines.push(format!(
            "note: the trigger is {}, not event_received: the event stands in for what would start it",
            pb.trigger.on.as_str()
        ));
    }
    if let Some(w) = &pb.when {
        match ContextCondition::compile(w, playbook::VARIABLES).and_then(|c| c.eval(&ctx)) {
            Ok(true) => lines.push(format!("condition holds: {w}")),
            Ok(false) => {
                lines.push(format!(
                    "nothing would run: the condition is false for this event: {w}"
                ));
                return (false, lines);
            }
            Err(e) => {
                lines.push(format!(
                    "nothing would run: the condition does not evaluate for this event ({e}): {w}"
                ));
                return (false, lines);
            }
        }
    }
    lines.push(format!(
        "would run {} ({} step(s)):",
        pb.name,
        pb.steps.len()
    ));
    describe_steps(&pb.steps, &ctx, 1, &mut lines);
    (true, lines)
}

fn describe_steps(steps: &[Step], ctx: &Map<String, Value>, depth: usize, lines: &mut Vec<String>) {
    let pad = "  ".repeat(depth);
    for step in steps {
        let mut head = format!("{pad}- {} ({})", step.id, step.action.name());
        if let Some(w) = &step.when {
            let verdict =
                match ContextCondition::compile(w, playbook::VARIABLES).and_then(|c| c.eval(ctx)) {
                    Ok(true) => "holds".to_string(),
                    Ok(false) => "is false: skipped".to_string(),
                    Err(_) => "depends on a real run".to_string(),
                };
            head.push_str(&format!(" when {w} [{verdict}]"));
        }
        let r = |t: &str| playbook::render(t, ctx).unwrap_or_else(|e| format!("<{e}>"));
        let detail = match &step.action {
            Action::IntelLookup {
                connectors,
                kinds,
                value,
                ..
            } => format!(
                "look up {} with {}",
                match value {
                    Some(v) => r(v),
                    None => {
                        let obs: Vec<String> = ctx
                            .get("event")
                            .and_then(|e| e.get("observables"))
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter(|o| {
                                        kinds.is_empty()
                                            || kinds.iter().any(|k| {
                                                o.get("kind").and_then(Value::as_str) == Some(k)
                                            })
                                    })
                                    .filter_map(|o| {
                                        Some(format!(
                                            "{}:{}",
                                            o.get("kind")?.as_str()?,
                                            o.get("value")?.as_str()?
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        if obs.is_empty() {
                            "no observables of the event".into()
                        } else {
                            obs.join(", ")
                        }
                    }
                },
                if connectors.is_empty() {
                    "every intel connector and the local indicators".to_string()
                } else {
                    connectors.join(", ")
                }
            ),
            Action::SetSeverity { severity } => format!("set severity to {}", r(severity)),
            Action::SetPriority { priority } => format!("set priority to {}", r(priority)),
            Action::SetField { field, value } => format!("set {field} to {:?}", r(value)),
            Action::AddTag { tag } => format!("tag the ticket {:?}", r(tag)),
            Action::AddTask { title, .. } => format!("add the task {:?}", r(title)),
            Action::AddLog { text, kind } => format!("log ({kind}) {:?}", r(text)),
            Action::Notify {
                channel, to, title, ..
            } => format!(
                "notify {} by {channel}: {:?}",
                to.iter().map(|t| r(t)).collect::<Vec<_>>().join(", "),
                r(title)
            ),
            Action::Webhook { url, .. } => format!("POST a signed webhook to {}", r(url)),
            Action::CreateChangeControl {
                kind, description, ..
            } => format!("request a {kind} change control: {:?}", r(description)),
            Action::Approval {
                role,
                prompt,
                timeout_secs,
                on_reject,
                on_timeout,
            } => {
                lines.push(format!(
                    "{head}: wait up to {} h for a {} to approve {:?}",
                    timeout_secs / 3600,
                    role.as_str(),
                    r(prompt)
                ));
                if !on_reject.is_empty() {
                    lines.push(format!("{pad}  if rejected:"));
                    describe_steps(on_reject, ctx, depth + 2, lines);
                }
                if !on_timeout.is_empty() {
                    lines.push(format!("{pad}  if no one decides in time:"));
                    describe_steps(on_timeout, ctx, depth + 2, lines);
                }
                continue;
            }
            Action::Branch { cases, otherwise } => {
                lines.push(format!("{head}: the first case that holds:"));
                let mut decided = false;
                for (w, steps) in cases {
                    let v = match ContextCondition::compile(w, playbook::VARIABLES)
                        .and_then(|c| c.eval(ctx))
                    {
                        Ok(true) if !decided => {
                            decided = true;
                            "holds"
                        }
                        Ok(true) => "holds, but an earlier case is taken",
                        Ok(false) => "is false",
                        Err(_) => "depends on a real run",
                    };
                    lines.push(format!("{pad}  when {w} [{v}]:"));
                    describe_steps(steps, ctx, depth + 2, lines);
                }
                if !otherwise.is_empty() {
                    lines.push(format!("{pad}  else:"));
                    describe_steps(otherwise, ctx, depth + 2, lines);
                }
                continue;
            }
            Action::OpenTicket { title, severity } => format!(
                "open a ticket from the event{}{}",
                title
                    .as_ref()
                    .map(|t| format!(" titled {:?}", r(t)))
                    .unwrap_or_default(),
                severity
                    .as_ref()
                    .map(|s| format!(" at severity {}", r(s)))
                    .unwrap_or_default()
            ),
            Action::Escalate { reason, .. } => format!("escalate the ticket: {:?}", r(reason)),
            Action::DismissEvent { reason } => {
                format!("dismiss the event as a false positive: {:?}", r(reason))
            }
            Action::Stop { outcome } => format!("stop: {}", r(outcome)),
        };
        lines.push(format!("{head}: {detail}"));
    }
}
