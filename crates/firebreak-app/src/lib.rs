//! Use cases. Every change goes through here: authenticate, authorize, validate, then one store
//! commit holding the change and its audit entries. Knows nothing of HTTP or SQL.
#![forbid(unsafe_code)]

pub mod assets;
pub mod auth;
pub mod automation;
pub mod backup;
pub mod documents;
mod error;
pub mod expr;
pub mod helpdesk;
pub mod intake;
pub mod intel;
pub mod live;
pub mod notify;
pub mod pdf;
pub mod plan;
pub mod playbook;
mod principal;
pub mod reports;
pub mod response;
pub mod search;
pub mod tickets;
pub mod trends;
mod users;
pub mod verify;

pub use error::AppError;
pub use principal::{Principal, SessionInfo};
pub use users::{CLI_ACTOR, NewUser, SYSTEM_ACTOR, TokenSpec, generate_password, hash_password};

use firebreak_store::DynStore;
use std::sync::Arc;
use time::OffsetDateTime;

pub type AppResult<T> = Result<T, AppError>;

/// Where time comes from; tests inject a fixed clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        firebreak_store::truncate_millis(OffsetDateTime::now_utc())
    }
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Prefix of ticket numbers (`SEC` gives `SEC-000042`).
    pub ticket_prefix: String,
    pub auth: auth::AuthConfig,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: u64,
    /// How long a worker's claim on a playbook run lasts: a run whose worker died is taken
    /// up again after this (`FIREBREAK_JOB_LEASE_SECS`, default 300).
    pub job_lease: time::Duration,
    /// Check every observable at intake against the local indicators
    /// (`FIREBREAK_INDICATOR_MATCHING=off` turns it off).
    pub match_indicators: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            ticket_prefix: "SEC".into(),
            auth: auth::AuthConfig::default(),
            max_document_bytes: 100 * 1024 * 1024,
            job_lease: automation::LEASE,
            match_indicators: true,
        }
    }
}

/// The application: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct App {
    store: DynStore,
    config: Arc<AppConfig>,
    clock: Arc<dyn Clock>,
    blobs: Option<Arc<documents::BlobStore>>,
    plan_cache: Arc<plan::PlanCache>,
    intake_cache: Arc<intake::IntakeCache>,
    trends_cache: Arc<trends::TrendsCache>,
    mailer: Option<Arc<dyn notify::Mailer>>,
    webhooks: Option<Arc<dyn notify::WebhookSender>>,
    playbook_cache: Arc<automation::PlaybookCache>,
    /// Inside a playbook step: the run's progress, committed with the step's own change.
    job_binding: Option<Arc<automation::JobBinding>>,
    http: Option<Arc<dyn intel::HttpClient>>,
    intel: Arc<intel::IntelState>,
    /// Woken when a commit enqueues jobs (the worker loop waits on it).
    job_signal: Arc<tokio::sync::Notify>,
    /// What committed, for open pages ([`live`]).
    live: Arc<live::Live>,
    /// When each (user, ticket) emergency-team read was last put on the record.
    team_reads: Arc<
        std::sync::Mutex<std::collections::HashMap<(String, uuid::Uuid), time::OffsetDateTime>>,
    >,
}

impl App {
    pub fn new(store: DynStore, config: AppConfig) -> Self {
        Self::with_clock(store, config, Arc::new(SystemClock))
    }

    pub fn with_clock(store: DynStore, config: AppConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            config: Arc::new(config),
            clock,
            blobs: None,
            plan_cache: Arc::default(),
            intake_cache: Arc::default(),
            trends_cache: Arc::default(),
            mailer: None,
            webhooks: None,
            playbook_cache: Arc::default(),
            job_binding: None,
            http: None,
            intel: Arc::default(),
            team_reads: Arc::default(),
            job_signal: Arc::default(),
            live: Arc::default(),
        }
    }

    /// Read access to the store. Writes are reachable only inside this crate, through use
    /// cases that authenticate, authorize and audit: the type has no `commit`.
    pub fn store(&self) -> &dyn firebreak_store::ReadStore {
        &*self.store
    }

    /// Every node's announcements ([`firebreak_store::change_topics`]) to pass to
    /// [`App::apply_announcement`]; `None` on a single-writer backend.
    pub async fn change_feed(&self) -> AppResult<Option<Box<dyn firebreak_store::ChangeFeed>>> {
        Ok(self.store.change_feed().await?)
    }

    /// Commits a change set and, once it has committed, tells this process's live pages what
    /// it changed. Every write of the use cases goes through here (most through
    /// `App::commit`, which adds the playbook runs first).
    pub(crate) async fn store_commit(
        &self,
        cs: firebreak_store::ChangeSet,
    ) -> firebreak_store::StoreResult<firebreak_store::CommitOutcome> {
        // one pass over the ops (one `IngestEvents` per intake batch), and only when a page
        // listens
        let topics = self
            .live
            .wanted()
            .then(|| firebreak_store::change_topics([&cs]));
        let out = self.store.commit(cs).await?;
        match topics {
            Some(t) => self.live.publish(&t),
            // a page that subscribed while this commit was under way would not hear of it:
            // it is told that anything may have changed
            None if self.live.wanted() => self.live.publish("*"),
            None => self.live.bump(),
        }
        Ok(out)
    }

    /// Listens to what commits ([`live`]): this process's commits on either backend, other
    /// nodes' on PostgreSQL. Topics only, never content. `missed`: whether anything was
    /// announced since `since`, a [`App::live_mark`] taken before a page read what it shows.
    pub fn subscribe_changes(&self, since: Option<&str>) -> (live::Subscription, bool) {
        self.live.subscribe_since(since)
    }

    /// Where this process's announcements stand, for a page to take before it reads.
    pub fn live_mark(&self) -> String {
        self.live.mark()
    }

    /// Acts on a commit heard through the change feed: [`App::apply_changes`], and, when
    /// another process made it, tells this process's live pages (its own commits were told at
    /// once, so hearing them back does not refresh a page twice).
    pub async fn apply_announcement(&self, a: &firebreak_store::Announcement) {
        self.apply_changes(&a.topics).await;
        if !a.own {
            self.live.publish(&a.topics);
        }
    }

    /// Acts on another node's commit: drops the caches it made stale and wakes the job worker
    /// for new runs, so a plan, playbook, suppression rule, asset or indicator changed on one
    /// node applies on every node at once instead of after the caches' 5 s.
    pub async fn apply_changes(&self, topics: &str) {
        let all = topics == "*";
        for t in topics.split(',') {
            let kind = t.strip_prefix("record:").unwrap_or("");
            if all || kind == "plan" {
                if let Ok(mut c) = self.plan_cache.0.write() {
                    *c = None;
                }
                self.intake_cache.invalidate();
            }
            if all || matches!(kind, "suppression_rule" | "asset") {
                self.intake_cache.invalidate();
            }
            if all || matches!(kind, "playbook" | "playbook_version" | "connector") {
                self.playbook_cache.invalidate();
            }
            if all || t == "jobs" {
                self.job_signal.notify_one();
            }
            if (all || t == "indicators")
                && let Err(e) = self.reload_indicators(false).await
            {
                tracing::warn!(error = %e, "reloading indicators after another node's change");
            }
        }
    }

    /// Which database backend is in use (`sqlite` or `postgres`).
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Database reachable and writer alive.
    pub async fn ready(&self) -> AppResult<()> {
        self.store.ping().await.map_err(AppError::from)
    }
}
