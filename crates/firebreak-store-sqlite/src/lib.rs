//! SQLite backend: one writer task with group commit (many change sets per transaction, each in
//! its own savepoint, answered only after COMMIT with `synchronous=FULL`), and a read-only pool.
//! Owns every SQL statement for SQLite; nothing above it sees sqlx.
#![forbid(unsafe_code)]

mod dedup;
mod jobs;
mod pack;
mod rows;
mod search;
mod snapshot;
mod writer;

use async_trait::async_trait;
use firebreak_domain::audit::{AuditRecord, Checkpoint};
use firebreak_domain::event::Event;
use firebreak_domain::ids::{DocumentId, TicketId, UserId};
use firebreak_domain::ticket::{EventStatus, Ticket};
use firebreak_domain::user::User;
use firebreak_store::{
    AccessGrant, AuditSigner, AuditStore, ChangeSet, CommitOutcome, DocumentRecord, DocumentStore,
    EventFilter, EventStore, JobRecord, ObservableFilter, ObservableRecord, RecordFilter,
    RecordsMarker, SessionRecord, Store, StoreError, StoreResult, SuppressionHits, ThrottleRecord,
    TicketFilter, TicketStore, TokenRecord, TotpRecord, UserRecord, UserStore, WorkflowRecord,
    WorkflowStore, from_millis, like_escape, to_millis,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use writer::MAX_BATCH;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The migration versions this backend ships (checked against PostgreSQL's by a tidy test).
pub fn migration_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

pub struct SqliteStore {
    read: SqlitePool,
    /// events' compression dictionaries (`pack.rs`), shared with the writer
    packer: Arc<pack::Packer>,
    sender: Mutex<Option<mpsc::Sender<writer::Request>>>,
    writer: tokio::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The background WAL checkpointer and its stop flag.
    checkpointer: Mutex<
        Option<(
            std::thread::JoinHandle<()>,
            Arc<std::sync::atomic::AtomicBool>,
        )>,
    >,
}

fn connect_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .statement_cache_capacity(256))
}

/// Tuning of the SQLite backend; [`SqliteStore::open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Rows gathered in a second level (`event_dedup_pending`, `observable_pending`) before
    /// the writer merges it into its table in key order (new observables: 40,000 at most).
    pub merge_at: i64,
    /// WAL size past which the writer checkpoints the WAL itself between batches and starts
    /// it over (512 MiB).
    pub wal_limit: u64,
    /// Events sampled before their compression dictionary is made (2,000; `pack.rs`).
    pub dict_samples: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            merge_at: writer::MERGE_AT,
            wal_limit: writer::WAL_LIMIT,
            dict_samples: pack::SAMPLES,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` (`sqlite://path`).
    pub async fn open(url: &str, signer: Arc<AuditSigner>) -> anyhow::Result<Self> {
        Self::open_with(url, signer, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open`] with options.
    pub async fn open_with(
        url: &str,
        signer: Arc<AuditSigner>,
        options: SqliteOptions,
    ) -> anyhow::Result<Self> {
        let path = file_path(url)?;
        let opts = connect_options(url)?.create_if_missing(true);
        let mut conn = opts.connect().await?;
        MIGRATOR.run(&mut conn).await?;
        let packer = Arc::new(pack::Packer::new(options.dict_samples));
        pack::take_up_newest(&packer, &mut conn).await?;
        conn.close().await?;
        // Durability is asserted, not assumed (RELIABILITY.md G2): `writer::open` checks it.
        let writer_conn = tokio::task::spawn_blocking(move || writer::open(&path)).await??;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(connect_options(url)?.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn({
                let path = file_path(url)?;
                let packer = packer.clone();
                move || writer::run(&path, writer_conn, rx, &signer, &options, &packer)
            })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = {
            let (stop, path) = (stop.clone(), file_path(url)?);
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || writer::checkpoint_loop(&path, &stop))?
        };
        Ok(Self {
            read,
            packer,
            sender: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some((checkpointer, stop))),
        })
    }
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn ticket_facts(
        &self,
        since: time::OffsetDateTime,
    ) -> StoreResult<Vec<firebreak_store::TicketFacts>> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            Option<String>,
            bool,
            bool,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.created_at, t.updated_at, t.status, t.criticality, t.source_kind, t.problem_category, t.false_positive, t.restricted, \
             (SELECT MIN(a.occurred_at) FROM audit_log a WHERE a.ticket_id = t.id AND a.action = 'ticket.start') \
             FROM tickets t WHERE t.created_at >= ?1 ORDER BY t.number",
        )
        .bind(firebreak_store::to_millis(since))
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, u, st, cr, sk, pc, fp, rs, started)| {
                Some(firebreak_store::TicketFacts {
                    started_at: started.map(firebreak_store::from_millis),
                    created_at: firebreak_store::from_millis(c),
                    updated_at: firebreak_store::from_millis(u),
                    status: firebreak_domain::ticket::TicketStatus::parse(&st)?,
                    criticality: firebreak_domain::ticket::Criticality::parse(&cr)?,
                    source_kind: sk,
                    problem_category: pc,
                    false_positive: fp,
                    restricted: rs,
                })
            })
            .collect())
    }

    async fn get_ticket(&self, id: TicketId) -> StoreResult<Ticket> {
        let row = sqlx::query("SELECT * FROM tickets WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::ticket(&row)
    }

    async fn get_ticket_by_number(&self, number: i64) -> StoreResult<Ticket> {
        let row = sqlx::query("SELECT * FROM tickets WHERE number = ?")
            .bind(number)
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::ticket(&row)
    }

    async fn ticket_access(&self, ticket: TicketId) -> StoreResult<Vec<AccessGrant>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT username, granted_by, granted_at FROM ticket_access WHERE ticket_id = ? ORDER BY username")
                .bind(ticket.to_string())
                .fetch_all(&self.read)
                .await
                .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .map(|(username, granted_by, at)| AccessGrant {
                username,
                granted_by,
                granted_at: firebreak_store::from_millis(at),
            })
            .collect())
    }

    async fn has_ticket_access(&self, ticket: TicketId, username: &str) -> StoreResult<bool> {
        let row: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM ticket_access WHERE ticket_id = ? AND username = ?")
                .bind(ticket.to_string())
                .bind(username)
                .fetch_optional(&self.read)
                .await
                .map_err(rows::err)?;
        Ok(row.is_some())
    }

    async fn list_tickets(&self, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM tickets WHERE 1=1");
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(s) = f.criticality {
            q.push(" AND criticality = ").push_bind(s.as_str());
        }
        if let Some(s) = f.severity {
            q.push(" AND severity = ").push_bind(s.as_str());
        }
        if let Some(a) = &f.assignee {
            q.push(" AND assignee = ").push_bind(a.clone());
        }
        if let Some(tag) = &f.tag {
            q.push(" AND id IN (SELECT ticket_id FROM ticket_tags WHERE tag = ")
                .push_bind(tag.clone())
                .push(")");
        }
        if let Some(text) = &f.text {
            let pat = format!("%{}%", firebreak_store::like_escape(text));
            q.push(" AND (title LIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' OR description LIKE ");
            q.push_bind(pat).push(" ESCAPE '\\')");
        }
        if let Some(v) = &f.visible_to {
            if !v.restricted_ok {
                q.push(" AND (restricted = 0 OR ");
                push_involved(&mut q, &v.username);
                q.push(")");
            }
            if v.only_own {
                q.push(" AND ");
                push_involved(&mut q, &v.username);
            }
        }
        if let Some(n) = f.before_number {
            q.push(" AND number < ").push_bind(n);
        }
        q.push(" ORDER BY number DESC LIMIT ")
            .push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::ticket).collect()
    }
}

/// The database file named by a `sqlite://PATH[?options]` URL.
fn file_path(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or_default();
    anyhow::ensure!(
        !path.is_empty() && path != ":memory:",
        "a SQLite database file is required (got {url:?})"
    );
    Ok(path.to_string())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn get_user(&self, id: UserId) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn get_user_by_external_id(&self, external_id: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE external_id = ?")
            .bind(external_id)
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn get_user_by_name(&self, username: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.read)
            .await
            .map_err(rows::err)?;
        rows.iter().map(|r| rows::user(r).map(|u| u.user)).collect()
    }

    async fn count_users(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.read)
            .await
            .map_err(rows::err)?;
        Ok(n)
    }

    async fn get_token_by_hash(&self, token_hash: &str) -> StoreResult<TokenRecord> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::token(&row)
    }

    async fn get_token_with_user(
        &self,
        token_hash: &str,
    ) -> StoreResult<(TokenRecord, UserRecord)> {
        let row = sqlx::query(
            "SELECT t.id AS t_id, t.user_id AS t_user_id, t.name AS t_name, t.token_hash AS t_token_hash, t.scopes AS t_scopes, \
             t.created_at AS t_created_at, t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, \
             t.last_used_at AS t_last_used_at, u.* \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(rows::err)?
        .ok_or(StoreError::NotFound)?;
        Ok((rows::token_prefixed(&row, "t_")?, rows::user(&row)?))
    }

    async fn list_tokens(&self, user_id: UserId) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created_at")
            .bind(user_id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(rows::err)?;
        rows.iter().map(rows::token).collect()
    }

    async fn get_session_with_user(
        &self,
        id_hash: &str,
    ) -> StoreResult<(SessionRecord, UserRecord)> {
        let row = sqlx::query(
            "SELECT s.id_hash AS s_id_hash, s.user_id AS s_user_id, s.csrf_token AS s_csrf_token, \
             s.created_at AS s_created_at, s.last_seen_at AS s_last_seen_at, s.expires_at AS s_expires_at, \
             s.mfa_pending AS s_mfa_pending, s.client_addr AS s_client_addr, s.user_agent AS s_user_agent, \
             s.revoked_at AS s_revoked_at, u.* \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
        )
        .bind(id_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(rows::err)?
        .ok_or(StoreError::NotFound)?;
        Ok((rows::session_prefixed(&row, "s_")?, rows::user(&row)?))
    }

    async fn login_throttle(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM login_throttle WHERE key IN (");
        let mut list = q.separated(", ");
        for key in keys {
            list.push_bind(key.clone());
        }
        q.push(") ORDER BY key");
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::throttle).collect()
    }

    async fn get_totp(&self, user_id: UserId) -> StoreResult<Option<TotpRecord>> {
        let row = sqlx::query("SELECT * FROM user_totp WHERE user_id = ?")
            .bind(user_id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?;
        row.as_ref().map(rows::totp).transpose()
    }

    async fn recovery_codes_left(&self, user_id: UserId) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
        )
        .bind(user_id.to_string())
        .fetch_one(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(n)
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn get_document(&self, id: DocumentId) -> StoreResult<DocumentRecord> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::document(&row)
    }

    async fn list_documents(&self, ticket: TicketId) -> StoreResult<Vec<DocumentRecord>> {
        let rows = sqlx::query("SELECT * FROM documents WHERE ticket_id = ? ORDER BY added_at, id")
            .bind(ticket.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(rows::err)?;
        rows.iter().map(rows::document).collect()
    }

    async fn get_blob(&self, sha256: &str) -> StoreResult<Vec<u8>> {
        let (data,): (Vec<u8>,) = sqlx::query_as("SELECT data FROM blobs WHERE sha256 = ?")
            .bind(sha256)
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        Ok(data)
    }
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn get_record(&self, id: uuid::Uuid) -> StoreResult<WorkflowRecord> {
        let row = sqlx::query("SELECT * FROM workflow_records WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::record(&row)
    }

    async fn list_records(&self, f: &RecordFilter) -> StoreResult<Vec<WorkflowRecord>> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM workflow_records WHERE kind = ");
        q.push_bind(f.kind.clone());
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.to_string());
        }
        if let Some(p) = f.parent_id {
            q.push(" AND parent_id = ").push_bind(p.to_string());
        }
        if let Some(s) = &f.status {
            q.push(" AND status = ").push_bind(s.clone());
        }
        if let Some(p) = &f.principal {
            q.push(" AND principal = ").push_bind(p.clone());
        }
        let limit = if f.limit == 0 { 1000 } else { f.limit };
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::record).collect()
    }

    async fn records_marker(&self, kinds: &[&str]) -> StoreResult<RecordsMarker> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT COUNT(*), COALESCE(SUM(version), 0), COALESCE(MAX(updated_at), 0) \
             FROM workflow_records WHERE kind IN (",
        );
        let mut list = q.separated(", ");
        for k in kinds {
            list.push_bind(k.to_string());
        }
        if kinds.is_empty() {
            list.push("NULL");
        }
        q.push(")");
        let (count, versions, latest_update_ms): (i64, i64, i64) = q
            .build_query_as()
            .fetch_one(&self.read)
            .await
            .map_err(rows::err)?;
        Ok(RecordsMarker {
            count,
            versions,
            latest_update_ms,
        })
    }
}

const OBSERVABLE_COLUMNS: &str = "SELECT o.id, o.kind, o.value, o.first_seen, o.last_seen, \
     (SELECT COUNT(*) FROM event_observables eo WHERE eo.observable_id = o.id) \
     + (SELECT COUNT(*) FROM event_observable_index \
        WHERE event_observable_index MATCH '\"' || replace(o.id, '-', '') || '\"') AS events, \
     (SELECT COUNT(*) FROM ticket_observables t WHERE t.observable_id = o.id) AS tickets \
     FROM (SELECT id, kind, value, first_seen, last_seen FROM observables \
     UNION ALL SELECT id, kind, value, first_seen, last_seen FROM observable_pending) o";

#[async_trait]
impl EventStore for SqliteStore {
    async fn get_event(&self, id: uuid::Uuid) -> StoreResult<Event> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        pack::load_dicts(&self.packer, &self.read, std::slice::from_ref(&row)).await?;
        Ok(rows::event(&row, &self.packer)?.1)
    }

    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<(i64, Event)>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM events WHERE 1 = 1");
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(s) = &f.source {
            q.push(" AND source = ").push_bind(s.clone());
        }
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.to_string());
        }
        if let Some(r) = &f.reported_by {
            q.push(" AND reported_by = ").push_bind(r.clone());
        }
        if let Some(r) = f.suppressed_by {
            q.push(" AND suppressed_by = ").push_bind(r.to_string());
        }
        if let Some(s) = f.severity {
            q.push(" AND severity = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.text {
            q.push(" AND title LIKE ")
                .push_bind(format!("%{}%", like_escape(t)))
                .push(" ESCAPE '\\'");
        }
        if let Some(b) = f.before_seq {
            q.push(" AND seq < ").push_bind(b);
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        pack::load_dicts(&self.packer, &self.read, &rows).await?;
        rows.iter().map(|r| rows::event(r, &self.packer)).collect()
    }

    async fn count_events(&self) -> StoreResult<Vec<(EventStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, n FROM event_status_counts WHERE n <> 0")
                .fetch_all(&self.read)
                .await
                .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| EventStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }

    async fn suppression_hits(&self) -> StoreResult<Vec<SuppressionHits>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT rule_id, events, occurrences, last_hit FROM suppression_stats WHERE events > 0",
        )
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, events, occurrences, last)| {
                Some(SuppressionHits {
                    rule_id: id.parse().ok()?,
                    events,
                    occurrences,
                    last_hit: from_millis(last),
                })
            })
            .collect())
    }

    async fn get_observable(&self, id: uuid::Uuid) -> StoreResult<ObservableRecord> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(OBSERVABLE_COLUMNS);
        // the prefix term reaches the second level's index (migration 0019)
        q.push(" WHERE o.id = ")
            .push_bind(id.to_string())
            .push(" AND substr(o.id, 1, 8) = substr(")
            .push_bind(id.to_string())
            .push(", 1, 8)");
        let row = q
            .build()
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::observable(&row)
    }

    async fn list_observables(&self, f: &ObservableFilter) -> StoreResult<Vec<ObservableRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(OBSERVABLE_COLUMNS);
        q.push(" WHERE 1 = 1");
        if let Some(k) = &f.kind {
            q.push(" AND o.kind = ").push_bind(k.clone());
        }
        if let Some(t) = &f.text {
            q.push(" AND o.value LIKE ")
                .push_bind(format!("%{}%", like_escape(t)))
                .push(" ESCAPE '\\'");
        }
        if let Some(t) = f.ticket_id {
            // the prefix term reaches the second level's index (migration 0019)
            q.push(" AND o.id IN (SELECT observable_id FROM ticket_observables WHERE ticket_id = ")
                .push_bind(t.to_string())
                .push(
                    ") AND substr(o.id, 1, 8) IN (SELECT substr(observable_id, 1, 8) \
                       FROM ticket_observables WHERE ticket_id = ",
                )
                .push_bind(t.to_string())
                .push(")");
        }
        if let Some(e) = f.event_id {
            // an event's observables are in its record; the link table is indexed by observable
            let ids: Vec<String> = match self.get_event(e).await {
                Ok(ev) => ev.observables.iter().map(|o| o.id().to_string()).collect(),
                Err(StoreError::NotFound) => vec![],
                Err(x) => return Err(x),
            };
            q.push(" AND o.id IN (NULL");
            for id in &ids {
                q.push(", ").push_bind(id.clone());
            }
            q.push(") AND substr(o.id, 1, 8) IN (NULL");
            for id in ids {
                q.push(", ").push_bind(id[..8].to_string());
            }
            q.push(")");
        }
        if let Some((ms, id)) = f.after {
            q.push(" AND (o.last_seen < ")
                .push_bind(ms)
                .push(" OR (o.last_seen = ")
                .push_bind(ms)
                .push(" AND o.id < ")
                .push_bind(id.to_string())
                .push("))");
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY o.last_seen DESC, o.id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::observable).collect()
    }

    async fn observable_tickets(&self, id: uuid::Uuid) -> StoreResult<Vec<TicketId>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT ticket_id FROM ticket_observables WHERE observable_id = ? ORDER BY added_at",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(rows.into_iter().filter_map(|(t,)| t.parse().ok()).collect())
    }

    async fn observable_events(&self, id: uuid::Uuid, limit: u32) -> StoreResult<Vec<uuid::Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT e.id FROM events e WHERE e.seq IN \
             (SELECT l.seq FROM event_observables eo JOIN events l ON l.id = eo.event_id \
              WHERE eo.observable_id = ?1 \
              UNION SELECT rowid FROM event_observable_index WHERE event_observable_index MATCH ?3) \
             ORDER BY e.seq DESC LIMIT ?2",
        )
        .bind(id.to_string())
        .bind(i64::from(limit))
        .bind(format!("\"{}\"", id.simple()))
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(rows.into_iter().filter_map(|(t,)| t.parse().ok()).collect())
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(rows::err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn ticket_audit(
        &self,
        ticket: TicketId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE ticket_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(ticket.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn checkpoints_after(&self, after: i64) -> StoreResult<Vec<Checkpoint>> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq > ? ORDER BY seq",
        )
        .bind(after)
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .map(|(seq, hash, key_id, signature)| Checkpoint {
                seq,
                hash,
                key_id,
                signature,
            })
            .collect())
    }

    async fn last_checkpoint(&self) -> StoreResult<Option<Checkpoint>> {
        let row: Option<(i64, String, String, String)> = sqlx::query_as(
            "SELECT seq, hash, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await
        .map_err(rows::err)?;
        Ok(row.map(|(seq, hash, key_id, signature)| Checkpoint {
            seq,
            hash,
            key_id,
            signature,
        }))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, changes: ChangeSet) -> StoreResult<CommitOutcome> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Request::Commit(writer::Job { changes, reply }))
            .await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }

    fn prepare_event(&self, item: &mut firebreak_store::NewEvent) -> StoreResult<()> {
        self.packer.pack(item)
    }

    async fn claim_jobs(
        &self,
        worker: &str,
        now: time::OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<JobRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.send(writer::Request::Claim(writer::Claim {
            worker: worker.to_string(),
            now: to_millis(now),
            until: to_millis(now + lease),
            limit,
            reply,
        }))
        .await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }

    async fn export_snapshot(
        &self,
        sink: &mut dyn firebreak_store::snapshot::SnapshotSink,
    ) -> StoreResult<()> {
        snapshot::export(&self.read, &self.packer, sink).await
    }

    async fn import_snapshot(
        &self,
        source: Box<dyn firebreak_store::snapshot::SnapshotSource>,
    ) -> StoreResult<firebreak_store::snapshot::ImportReport> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Request::Import(source, reply)).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }

    async fn holds_data(&self) -> StoreResult<bool> {
        snapshot::holds_data(&self.read).await
    }

    async fn integrity_check(&self) -> StoreResult<Vec<String>> {
        snapshot::integrity_check(&self.read).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.read.acquire().await.map_err(rows::err)?;
        conn.ping().await.map_err(rows::err)?;
        if self
            .sender
            .lock()
            .ok()
            .is_none_or(|s| s.as_ref().is_none_or(|s| s.is_closed()))
        {
            return Err(StoreError::Unavailable(
                "the database writer has stopped".into(),
            ));
        }
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(h) = self.writer.lock().await.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((h, stop)) = checkpointer {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            h.thread().unpark();
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.read.close().await;
    }
}

impl SqliteStore {
    /// Queues a request for the writer (waits while its queue is full).
    async fn send(&self, req: writer::Request) -> StoreResult<()> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| StoreError::Unavailable("the store is shutting down".into()))?;
        sender
            .send(req)
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))
    }
}

/// `(owner = u OR assignee = u OR created_by = u OR <u is on the access list>)`.
fn push_involved(q: &mut QueryBuilder<Sqlite>, username: &str) {
    q.push("(owner = ").push_bind(username.to_string());
    q.push(" OR assignee = ").push_bind(username.to_string());
    q.push(" OR created_by = ").push_bind(username.to_string());
    q.push(" OR id IN (SELECT ticket_id FROM ticket_access WHERE username = ")
        .push_bind(username.to_string())
        .push("))");
}
