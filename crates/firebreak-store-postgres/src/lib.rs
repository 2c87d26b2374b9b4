//! PostgreSQL backend: a writer task per process commits queued change sets together (group
//! commit); ticket numbers come from a sequence; the audit chain is appended last in each
//! transaction under a row lock on `audit_head`, so several nodes and CLI processes append to
//! one chain. Owns every SQL statement for PostgreSQL.
#![forbid(unsafe_code)]

mod events;
mod jobs;
mod rows;
mod search;
mod snapshot;
mod writer;

use async_trait::async_trait;
use firebreak_domain::audit::{AuditRecord, Checkpoint};
use firebreak_domain::ids::{DocumentId, TicketId, UserId};
use firebreak_domain::ticket::Ticket;
use firebreak_domain::user::User;
use firebreak_store::{
    AccessGrant, Announcement, AuditSigner, AuditStore, ChangeSet, CommitOutcome, DocumentRecord,
    DocumentStore, Op, RecordFilter, RecordsMarker, SessionRecord, Store, StoreError, StoreResult,
    ThrottleRecord, TicketFilter, TicketStore, TokenRecord, TotpRecord, UserRecord, UserStore,
    WorkflowRecord, WorkflowStore, roles_to_text, scopes_to_text, truncate_millis,
};
use rows::err;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a connection from the pool may take (then `StoreError::Unavailable`, a 503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one group-commit transaction may take before its change sets are refused (503):
/// a database that stops answering (a network partition: no reset, no error) must not hold the
/// writer, and every write queued behind it, for as long as TCP takes to give up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the readiness ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Advisory lock key serializing first-admin creation across nodes.
const FIRST_USER_LOCK: i64 = 0x0f1e_b4ea_0001;

pub fn migration_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// `LISTEN firebreak_changes` on a connection of its own; sqlx reconnects (and listens again)
/// after a lost connection, which is reported as `*`. Hears this process's commits too, told
/// apart by its origin tag.
struct Feed {
    listener: sqlx::postgres::PgListener,
    origin: String,
}

#[async_trait]
impl firebreak_store::ChangeFeed for Feed {
    async fn next(&mut self) -> Announcement {
        match self.listener.try_recv().await {
            Ok(Some(n)) => Announcement::parse(n.payload(), &self.origin),
            Ok(None) => Announcement::anything(),
            Err(e) => {
                tracing::warn!(error = %e, "listening for other nodes' changes");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Announcement::anything()
            }
        }
    }
}

/// The NOTIFY channel of the install in `schema`: [`firebreak_store::CHANGES_CHANNEL`] in
/// `public`, and with 16 hex digits of the schema name's SHA-256 after it in any other schema
/// (a channel name is an identifier of at most 63 bytes).
fn changes_channel(schema: &str) -> String {
    if schema == "public" {
        return firebreak_store::CHANGES_CHANNEL.to_string();
    }
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(schema.as_bytes());
    format!(
        "{}_{}",
        firebreak_store::CHANGES_CHANNEL,
        hex::encode(&h[..8])
    )
}

pub struct PgStore {
    pool: PgPool,
    /// This install's NOTIFY channel ([`changes_channel`]).
    channel: String,
    /// The tag on this process's announcements.
    origin: String,
    sender: Mutex<Option<mpsc::Sender<writer::Job>>>,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://...`) and applies pending migrations (under sqlx's advisory
    /// lock, so nodes started together migrate once).
    pub async fn open(url: &str, signer: Arc<AuditSigner>) -> anyhow::Result<Self> {
        Self::open_url(url, signer, WRITE_TIMEOUT).await
    }

    /// `open`, with the bound on one write transaction (see [`WRITE_TIMEOUT`]).
    pub async fn open_url(
        url: &str,
        signer: Arc<AuditSigner>,
        write_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::open_tuned(PgConnectOptions::from_str(url)?, signer, 16, write_timeout).await
    }

    pub async fn open_with(
        opts: PgConnectOptions,
        signer: Arc<AuditSigner>,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        Self::open_tuned(opts, signer, max_connections, WRITE_TIMEOUT).await
    }

    async fn open_tuned(
        opts: PgConnectOptions,
        signer: Arc<AuditSigner>,
        max_connections: u32,
        write_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        let (fsync,): (String,) = sqlx::query_as("SELECT current_setting('fsync')")
            .fetch_one(&pool)
            .await?;
        anyhow::ensure!(
            fsync == "on",
            "PostgreSQL runs with fsync=off: acknowledged writes could be lost; refusing to start"
        );
        let (sc,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await?;
        if sc == "off" {
            tracing::warn!(
                "PostgreSQL synchronous_commit=off: a crash can lose recently acknowledged writes"
            );
        }
        // NOTIFY channels are per database, not per schema: installs in different schemas of
        // one database (and the test suite's schemas) each get a channel of their own
        let (schema,): (String,) = sqlx::query_as("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let channel = changes_channel(&schema);
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let origin = firebreak_store::new_origin();
        let w = writer::Writer {
            signer,
            origin: origin.clone(),
            channel: channel.clone(),
        };
        let handle = tokio::spawn(writer::run(pool.clone(), rx, w, write_timeout));
        Ok(Self {
            pool,
            origin,
            channel,
            sender: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(handle)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub(crate) type Tx<'c> = sqlx::Transaction<'c, Postgres>;

pub(crate) async fn apply_op(tx: &mut Tx<'_>, op: &Op, out: &mut CommitOutcome) -> StoreResult<()> {
    match op {
        Op::InsertTicket(t) => {
            out.ticket_numbers.extend(insert_tickets(tx, &[t]).await?);
        }
        Op::UpdateTicket {
            ticket: t,
            expected_version,
        } => {
            let res = sqlx::query(
                "UPDATE tickets SET title = $1, description = $2, source_kind = $3, source_name = $4, source_contact = $5, \
                 severity = $6, priority = $7, criticality = $8, tier = $9, status = $10, owner = $11, assignee = $12, \
                 restricted = $13, tags = $14, resolution = $15, problem_category = $16, false_positive = $17, incident = $18, \
                 updated_at = $19, escalation_reason = $22, version = version + 1 WHERE id = $20 AND version = $21",
            )
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.source.kind.as_str())
            .bind(&t.source.name)
            .bind(&t.source.contact)
            .bind(t.severity.as_str())
            .bind(t.priority.as_str())
            .bind(t.criticality.as_str())
            .bind(t.tier)
            .bind(t.status.as_str())
            .bind(&t.owner)
            .bind(&t.assignee)
            .bind(t.restricted)
            .bind(&t.tags)
            .bind(&t.resolution)
            .bind(&t.problem_category)
            .bind(t.false_positive)
            .bind(t.incident)
            .bind(truncate_millis(t.updated_at))
            .bind(t.id.as_uuid())
            .bind(expected_version)
            .bind(&t.escalation_reason)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM tickets WHERE id = $1")
                        .bind(t.id.as_uuid())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(err)?;
                return Err(match exists {
                    Some(_) => {
                        StoreError::Conflict("the ticket was changed concurrently; retry".into())
                    }
                    None => StoreError::NotFound,
                });
            }
            replace_tags(tx, t).await?;
        }
        Op::InsertUser(u) => insert_user(tx, u).await?,
        Op::InsertFirstUser(u) => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FIRST_USER_LOCK)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                .fetch_one(&mut **tx)
                .await
                .map_err(err)?;
            if n > 0 {
                return Err(StoreError::Conflict("users already exist".into()));
            }
            insert_user(tx, u).await?;
        }
        Op::UpdateUser(u) => {
            let res = sqlx::query(
                "UPDATE users SET roles = $1, title = $2, seniority = $3, on_duty = $4, email = $5, disabled = $6, clearances = $7 WHERE id = $8",
            )
            .bind(roles_to_text(&u.roles))
            .bind(&u.title)
            .bind(u.seniority)
            .bind(u.on_duty)
            .bind(&u.email)
            .bind(u.disabled)
            .bind(u.clearances.join(","))
            .bind(u.id.as_uuid())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::SetPassword {
            user_id,
            password_hash,
        } => {
            let res = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::SetUserDisabled { user_id, disabled } => {
            let res = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::SetUserRoles { user_id, roles } => {
            let res = sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
                .bind(roles_to_text(roles))
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::GrantTicketAccess {
            ticket_id,
            username,
            granted_by,
            at,
        } => {
            sqlx::query(
                "INSERT INTO ticket_access (ticket_id, username, granted_by, granted_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(ticket_id.as_uuid())
            .bind(username)
            .bind(granted_by)
            .bind(truncate_millis(*at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::RevokeTicketAccess {
            ticket_id,
            username,
        } => {
            let res =
                sqlx::query("DELETE FROM ticket_access WHERE ticket_id = $1 AND username = $2")
                    .bind(ticket_id.as_uuid())
                    .bind(username)
                    .execute(&mut **tx)
                    .await
                    .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::InsertToken(t) => {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at, expires_at, revoked_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(t.id.as_uuid())
            .bind(t.user_id.as_uuid())
            .bind(&t.name)
            .bind(&t.token_hash)
            .bind(scopes_to_text(&t.scopes))
            .bind(truncate_millis(t.created_at))
            .bind(t.expires_at.map(truncate_millis))
            .bind(t.revoked_at.map(truncate_millis))
            .bind(t.last_used_at.map(truncate_millis))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::RevokeTokens {
            user_id,
            token_id,
            at,
        } => {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND ($3::uuid IS NULL OR id = $3)",
            )
            .bind(truncate_millis(*at))
            .bind(user_id.as_uuid())
            .bind(token_id.map(|t| t.as_uuid()))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::TouchToken { token_id, at } => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(truncate_millis(*at))
                .bind(token_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        Op::InsertSession(s) => {
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, mfa_pending, client_addr, user_agent, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&s.id_hash)
            .bind(s.user_id.as_uuid())
            .bind(&s.csrf_token)
            .bind(truncate_millis(s.created_at))
            .bind(truncate_millis(s.last_seen_at))
            .bind(truncate_millis(s.expires_at))
            .bind(s.mfa_pending)
            .bind(&s.client_addr)
            .bind(&s.user_agent)
            .bind(s.revoked_at.map(truncate_millis))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::TouchSession { id_hash, at } => {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(truncate_millis(*at))
                .bind(id_hash)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        Op::RevokeSessions {
            user_id,
            only,
            except,
            at,
        } => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                 AND ($3::text IS NULL OR id_hash = $3) AND ($4::text IS NULL OR id_hash <> $4)",
            )
            .bind(truncate_millis(*at))
            .bind(user_id.as_uuid())
            .bind(only)
            .bind(except)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::LoginFailure {
            key,
            at,
            window,
            limit,
            lock,
        } => {
            // $2 = at, $3 = start of the current window (a row whose window began at or before it
            // starts over), $4 = limit, $5 = lock end. One statement: the row lock taken by the
            // upsert keeps concurrent failures from several nodes from being lost.
            sqlx::query(
                "INSERT INTO login_throttle AS t (key, failures, window_start, locked_until) \
                 VALUES ($1, 1, $2, CASE WHEN 1 >= $4 THEN $5 END) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN t.window_start <= $3 THEN 1 ELSE t.failures + 1 END, \
                 window_start = CASE WHEN t.window_start <= $3 THEN $2 ELSE t.window_start END, \
                 locked_until = CASE \
                   WHEN (CASE WHEN t.window_start <= $3 THEN 1 ELSE t.failures + 1 END) >= $4 THEN $5 \
                   WHEN t.window_start <= $3 THEN NULL \
                   ELSE t.locked_until END",
            )
            .bind(key)
            .bind(truncate_millis(*at))
            .bind(truncate_millis(*at - *window))
            .bind(limit)
            .bind(truncate_millis(*at + *lock))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::ClearLoginFailures { keys } => {
            if !keys.is_empty() {
                sqlx::query("DELETE FROM login_throttle WHERE key = ANY($1)")
                    .bind(keys)
                    .execute(&mut **tx)
                    .await
                    .map_err(err)?;
            }
        }
        Op::SetTotp {
            user_id,
            secret: Some(secret),
        } => {
            sqlx::query(
                "INSERT INTO user_totp (user_id, secret, enabled, last_step) VALUES ($1, $2, FALSE, 0) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, enabled = FALSE, last_step = 0",
            )
            .bind(user_id.as_uuid())
            .bind(secret)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::SetTotp {
            user_id,
            secret: None,
        } => {
            sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        Op::EnableTotp { user_id } => {
            let res = sqlx::query("UPDATE user_totp SET enabled = TRUE WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::UseTotpStep { user_id, step } => {
            let res = sqlx::query(
                "UPDATE user_totp SET last_step = $1 WHERE user_id = $2 AND last_step < $1",
            )
            .bind(step)
            .bind(user_id.as_uuid())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                let exists: Option<(i32,)> =
                    sqlx::query_as("SELECT 1 FROM user_totp WHERE user_id = $1")
                        .bind(user_id.as_uuid())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(err)?;
                return Err(match exists {
                    Some(_) => StoreError::Conflict("code already used".into()),
                    None => StoreError::NotFound,
                });
            }
        }
        Op::SetRecoveryCodes {
            user_id,
            code_hashes,
        } => {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if !code_hashes.is_empty() {
                sqlx::query(
                    "INSERT INTO recovery_codes (user_id, code_hash, used_at) SELECT $1, unnest($2::text[]), NULL",
                )
                .bind(user_id.as_uuid())
                .bind(code_hashes)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            }
        }
        Op::UseRecoveryCode {
            user_id,
            code_hash,
            at,
        } => {
            let res = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(truncate_millis(*at))
            .bind(user_id.as_uuid())
            .bind(code_hash)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::InsertDocument(d) => {
            sqlx::query(
                "INSERT INTO documents (id, ticket_id, sha256, size, filename, content_type, description, source, \
                 collection_notes, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(d.id.as_uuid())
            .bind(d.ticket_id.as_uuid())
            .bind(&d.sha256)
            .bind(d.size)
            .bind(&d.filename)
            .bind(&d.content_type)
            .bind(&d.description)
            .bind(&d.source)
            .bind(&d.collection_notes)
            .bind(&d.added_by)
            .bind(truncate_millis(d.added_at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::PutBlob { sha256, data } => {
            sqlx::query(
                "INSERT INTO blobs (sha256, data) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(sha256)
            .bind(data)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::InsertRecord(r) => {
            sqlx::query(
                "INSERT INTO workflow_records (id, kind, ticket_id, parent_id, status, principal, data, version, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9)",
            )
            .bind(r.id)
            .bind(&r.kind)
            .bind(r.ticket_id.map(|t| t.as_uuid()))
            .bind(r.parent_id)
            .bind(&r.status)
            .bind(&r.principal)
            .bind(&r.data)
            .bind(truncate_millis(r.created_at))
            .bind(truncate_millis(r.updated_at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::EnqueueJob(j) => jobs::enqueue(tx, j).await?,
        Op::UpdateJob {
            job,
            expected_version,
        } => jobs::update(tx, job, *expected_version).await?,
        Op::UpsertIndicators(items) => jobs::upsert_indicators(tx, items).await?,
        Op::DeleteIndicators { source } => jobs::delete_indicators(tx, source).await?,
        Op::IngestEvents(items) => events::ingest(tx, items, out).await?,
        Op::UpdateEvent {
            event,
            expected_version,
        } => events::update_event(tx, event, *expected_version).await?,
        Op::LinkTicketObservables {
            ticket_id,
            observables,
            at,
        } => events::link_ticket(tx, *ticket_id, observables, *at).await?,
        Op::LinkEventObservables {
            event_id,
            observables,
            at,
        } => events::link_event(tx, *event_id, observables, *at).await?,
        Op::UpdateRecord {
            record: r,
            expected_version,
        } => {
            let res = sqlx::query(
                "UPDATE workflow_records SET status = $1, principal = $2, data = $3, updated_at = $4, \
                 version = version + 1 WHERE id = $5 AND version = $6",
            )
            .bind(&r.status)
            .bind(&r.principal)
            .bind(&r.data)
            .bind(truncate_millis(r.updated_at))
            .bind(r.id)
            .bind(expected_version)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM workflow_records WHERE id = $1")
                        .bind(r.id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(err)?;
                return Err(match exists {
                    Some(_) => {
                        StoreError::Conflict("the record was changed concurrently; retry".into())
                    }
                    None => StoreError::NotFound,
                });
            }
        }
    }
    Ok(())
}

/// Tickets per multi-row INSERT (22 parameters each; PostgreSQL allows 65,535).
const TICKETS_PER_INSERT: usize = 1000;

/// Inserts tickets many rows per statement, numbering them from the sequence; returns their
/// numbers in the order given.
pub(crate) async fn insert_tickets(tx: &mut Tx<'_>, tickets: &[&Ticket]) -> StoreResult<Vec<i64>> {
    let mut numbers = Vec::with_capacity(tickets.len());
    for chunk in tickets.chunks(TICKETS_PER_INSERT) {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO tickets (id, number, title, description, source_kind, source_name, source_contact, severity, \
             priority, criticality, tier, status, owner, assignee, restricted, tags, resolution, problem_category, \
             false_positive, incident, created_by, created_at, updated_at, version, escalation_reason) ",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.id.as_uuid())
                .push("nextval('ticket_number_seq')")
                .push_bind(t.title.clone())
                .push_bind(t.description.clone())
                .push_bind(t.source.kind.as_str())
                .push_bind(t.source.name.clone())
                .push_bind(t.source.contact.clone())
                .push_bind(t.severity.as_str())
                .push_bind(t.priority.as_str())
                .push_bind(t.criticality.as_str())
                .push_bind(t.tier)
                .push_bind(t.status.as_str())
                .push_bind(t.owner.clone())
                .push_bind(t.assignee.clone())
                .push_bind(t.restricted)
                .push_bind(t.tags.clone())
                .push_bind(t.resolution.clone())
                .push_bind(t.problem_category.clone())
                .push_bind(t.false_positive)
                .push_bind(t.incident)
                .push_bind(t.created_by.clone())
                .push_bind(truncate_millis(t.created_at))
                .push_bind(truncate_millis(t.updated_at))
                .push("1")
                .push_bind(t.escalation_reason.clone());
        });
        q.push(" RETURNING id, number");
        let rows: Vec<(uuid::Uuid, i64)> =
            q.build_query_as().fetch_all(&mut **tx).await.map_err(err)?;
        let by_id: std::collections::HashMap<uuid::Uuid, i64> = rows.into_iter().collect();
        for t in chunk {
            numbers.push(*by_id.get(&t.id.as_uuid()).ok_or_else(|| {
                StoreError::Other(anyhow::anyhow!("no number returned for ticket {}", t.id))
            })?);
        }
        let (tags, ids): (Vec<String>, Vec<uuid::Uuid>) = chunk
            .iter()
            .flat_map(|t| t.tags.iter().map(|tag| (tag.clone(), t.id.as_uuid())))
            .unzip();
        if !tags.is_empty() {
            sqlx::query("INSERT INTO ticket_tags (tag, ticket_id) SELECT DISTINCT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT DO NOTHING")
                .bind(tags)
                .bind(ids)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
    }
    Ok(numbers)
}

/// Replaces a ticket's tag index rows with its current tags.
async fn replace_tags(tx: &mut Tx<'_>, t: &Ticket) -> StoreResult<()> {
    sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = $1")
        .bind(t.id.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    if !t.tags.is_empty() {
        sqlx::query("INSERT INTO ticket_tags (tag, ticket_id) SELECT DISTINCT unnest($1::text[]), $2 ON CONFLICT DO NOTHING")
            .bind(&t.tags)
            .bind(t.id.as_uuid())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    Ok(())
}

async fn insert_user(tx: &mut Tx<'_>, u: &UserRecord) -> StoreResult<()> {
    let user = &u.user;
    sqlx::query(
        "INSERT INTO users (id, username, roles, title, seniority, on_duty, email, disabled, clearances, password_hash, created_at, external_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(user.id.as_uuid())
    .bind(&user.username)
    .bind(roles_to_text(&user.roles))
    .bind(&user.title)
    .bind(user.seniority)
    .bind(user.on_duty)
    .bind(&user.email)
    .bind(user.disabled)
    .bind(user.clearances.join(","))
    .bind(&u.password_hash)
    .bind(truncate_millis(user.created_at))
    .bind(&u.external_id)
    .execute(&mut **tx)
    .await
    .map_err(|e| match err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a user named {} already exists", user.username)),
        other => other,
    })?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn commit(&self, changes: ChangeSet) -> StoreResult<CommitOutcome> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| StoreError::Unavailable("the store is shutting down".into()))?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(writer::Job { changes, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }

    async fn claim_jobs(
        &self,
        worker: &str,
        now: time::OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<firebreak_store::JobRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        jobs::claim(&self.pool, worker, now, now + lease, limit).await
    }

    async fn export_snapshot(
        &self,
        sink: &mut dyn firebreak_store::snapshot::SnapshotSink,
    ) -> StoreResult<()> {
        snapshot::export(&self.pool, sink).await
    }

    async fn import_snapshot(
        &self,
        source: Box<dyn firebreak_store::snapshot::SnapshotSource>,
    ) -> StoreResult<firebreak_store::snapshot::ImportReport> {
        snapshot::import(&self.pool, source).await
    }

    async fn holds_data(&self) -> StoreResult<bool> {
        snapshot::holds_data(&self.pool).await
    }

    async fn integrity_check(&self) -> StoreResult<Vec<String>> {
        snapshot::integrity_check(&self.pool).await
    }

    async fn change_feed(&self) -> StoreResult<Option<Box<dyn firebreak_store::ChangeFeed>>> {
        // a pool of its own: the listener keeps its connection checked out while it runs, and
        // closing the main pool waits for every connection to come back (shutdown would hang)
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(err)?;
        listener.listen(&self.channel).await.map_err(err)?;
        Ok(Some(Box::new(Feed {
            listener,
            origin: self.origin.clone(),
        })))
    }

    async fn ping(&self) -> StoreResult<()> {
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
        // readiness answers within PING_TIMEOUT: a probe learns of an unreachable database
        // sooner than the pool's acquire timeout (which keeps retrying refused connections)
        match tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool)).await
        {
            Ok(res) => res.map(|_| ()).map_err(err),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {} s",
                PING_TIMEOUT.as_secs()
            ))),
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(h) = self.writer.lock().await.take() {
            let _ = h.await;
        }
        self.pool.close().await;
    }
}

#[async_trait]
impl TicketStore for PgStore {
    async fn ticket_facts(
        &self,
        since: time::OffsetDateTime,
    ) -> StoreResult<Vec<firebreak_store::TicketFacts>> {
        type Row = (
            time::OffsetDateTime,
            time::OffsetDateTime,
            String,
            String,
            String,
            Option<String>,
            bool,
            bool,
            Option<time::OffsetDateTime>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.created_at, t.updated_at, t.status, t.criticality, t.source_kind, t.problem_category, t.false_positive, t.restricted, \
             (SELECT MIN(a.occurred_at) FROM audit_log a WHERE a.ticket_id = t.id AND a.action = 'ticket.start') \
             FROM tickets t WHERE t.created_at >= $1 ORDER BY t.number",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, u, st, cr, sk, pc, fp, rs, started)| {
                Some(firebreak_store::TicketFacts {
                    started_at: started,
                    created_at: c,
                    updated_at: u,
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
        let row = sqlx::query("SELECT * FROM tickets WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::ticket(&row)
    }

    async fn get_ticket_by_number(&self, number: i64) -> StoreResult<Ticket> {
        let row = sqlx::query("SELECT * FROM tickets WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::ticket(&row)
    }

    async fn ticket_access(&self, ticket: TicketId) -> StoreResult<Vec<AccessGrant>> {
        let rows: Vec<(String, String, time::OffsetDateTime)> =
            sqlx::query_as("SELECT username, granted_by, granted_at FROM ticket_access WHERE ticket_id = $1 ORDER BY username")
                .bind(ticket.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(username, granted_by, at)| AccessGrant {
                username,
                granted_by,
                granted_at: at,
            })
            .collect())
    }

    async fn has_ticket_access(&self, ticket: TicketId, username: &str) -> StoreResult<bool> {
        let row: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM ticket_access WHERE ticket_id = $1 AND username = $2")
                .bind(ticket.as_uuid())
                .bind(username)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(row.is_some())
    }

    async fn list_tickets(&self, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM tickets WHERE TRUE");
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
            q.push(" AND (title ILIKE ")
                .push_bind(pat.clone())
                .push(" OR description ILIKE ")
                .push_bind(pat)
                .push(")");
        }
        if let Some(v) = &f.visible_to {
            if !v.restricted_ok {
                q.push(" AND (NOT restricted OR ");
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
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(rows::ticket).collect()
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn get_user(&self, id: UserId) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn get_user_by_external_id(&self, external_id: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn get_user_by_name(&self, username: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(|r| rows::user(r).map(|u| u.user)).collect()
    }

    async fn count_users(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(n)
    }

    async fn get_token_by_hash(&self, token_hash: &str) -> StoreResult<TokenRecord> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
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
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .ok_or(StoreError::NotFound)?;
        Ok((rows::token_prefixed(&row, "t_")?, rows::user(&row)?))
    }

    async fn list_tokens(&self, user_id: UserId) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_at")
            .bind(user_id.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
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
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .ok_or(StoreError::NotFound)?;
        Ok((rows::session_prefixed(&row, "s_")?, rows::user(&row)?))
    }

    async fn login_throttle(&self, keys: &[String]) -> StoreResult<Vec<ThrottleRecord>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT * FROM login_throttle WHERE key = ANY($1) ORDER BY key")
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(rows::throttle).collect()
    }

    async fn get_totp(&self, user_id: UserId) -> StoreResult<Option<TotpRecord>> {
        let row = sqlx::query("SELECT * FROM user_totp WHERE user_id = $1")
            .bind(user_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(rows::totp).transpose()
    }

    async fn recovery_codes_left(&self, user_id: UserId) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(n)
    }
}

#[async_trait]
impl DocumentStore for PgStore {
    async fn get_document(&self, id: DocumentId) -> StoreResult<DocumentRecord> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::document(&row)
    }

    async fn list_documents(&self, ticket: TicketId) -> StoreResult<Vec<DocumentRecord>> {
        let rows =
            sqlx::query("SELECT * FROM documents WHERE ticket_id = $1 ORDER BY added_at, id")
                .bind(ticket.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.iter().map(rows::document).collect()
    }

    async fn get_blob(&self, sha256: &str) -> StoreResult<Vec<u8>> {
        let (data,): (Vec<u8>,) = sqlx::query_as("SELECT data FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        Ok(data)
    }
}

#[async_trait]
impl WorkflowStore for PgStore {
    async fn get_record(&self, id: uuid::Uuid) -> StoreResult<WorkflowRecord> {
        let row = sqlx::query("SELECT * FROM workflow_records WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::record(&row)
    }

    async fn list_records(&self, f: &RecordFilter) -> StoreResult<Vec<WorkflowRecord>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT * FROM workflow_records WHERE kind = ");
        q.push_bind(f.kind.clone());
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.as_uuid());
        }
        if let Some(p) = f.parent_id {
            q.push(" AND parent_id = ").push_bind(p);
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
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(rows::record).collect()
    }

    async fn records_marker(&self, kinds: &[&str]) -> StoreResult<RecordsMarker> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let (count, versions, latest_update_ms): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(version), 0)::bigint, \
             COALESCE((EXTRACT(EPOCH FROM MAX(updated_at)) * 1000)::bigint, 0) \
             FROM workflow_records WHERE kind = ANY($1)",
        )
        .bind(kinds)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(RecordsMarker {
            count,
            versions,
            latest_update_ms,
        })
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn ticket_audit(
        &self,
        ticket: TicketId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE ticket_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(ticket.as_uuid())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn checkpoints_after(&self, after: i64) -> StoreResult<Vec<Checkpoint>> {
        let rows: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq > $1 ORDER BY seq")
                .bind(after)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
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
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(row.map(|(seq, hash, key_id, signature)| Checkpoint {
            seq,
            hash,
            key_id,
            signature,
        }))
    }
}

/// `(owner = u OR assignee = u OR created_by = u OR <u is on the access list>)`.
fn push_involved(q: &mut QueryBuilder<Postgres>, username: &str) {
    q.push("(owner = ").push_bind(username.to_string());
    q.push(" OR assignee = ").push_bind(username.to_string());
    q.push(" OR created_by = ").push_bind(username.to_string());
    q.push(" OR id IN (SELECT ticket_id FROM ticket_access WHERE username = ")
        .push_bind(username.to_string())
        .push("))");
}
