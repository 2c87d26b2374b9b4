//! The single SQLite writer: drains queued change sets, applies up to `MAX_BATCH` of them in one
//! `BEGIN IMMEDIATE` transaction, appends their audit entries to the chain, signs the new head,
//! COMMITs, then answers. When one change set of a batch fails, the batch is redone with one
//! savepoint per change set, so one failure does not fail the others.
//! Invariant: no caller hears "ok" before the COMMIT that holds its change has returned.

use crate::rows::err;
use firebreak_domain::audit::{AuditDraft, AuditRecord};
use firebreak_store::{
    AuditSigner, ChangeSet, CommitOutcome, Op, StoreError, StoreResult, roles_to_text,
    scopes_to_text, to_millis,
};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Change sets per transaction at most.
pub const MAX_BATCH: usize = 512;
/// Queued change sets at most before `commit` waits (backpressure).
pub const QUEUE: usize = 4096;

pub struct Job {
    pub changes: ChangeSet,
    pub reply: oneshot::Sender<StoreResult<CommitOutcome>>,
}

pub async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    signer: Arc<AuditSigner>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        let (replies, results) = match write_batch(&mut conn, &signer, &batch).await {
            Ok(results) => (batch, results),
            Err(e) => {
                tracing::error!(error = %e, "sqlite batch commit failed");
                let msg = e.to_string();
                let full = matches!(e, StoreError::Full(_));
                let results = batch
                    .iter()
                    .map(|_| {
                        Err(if full {
                            StoreError::Full(msg.clone())
                        } else {
                            StoreError::Unavailable(msg.clone())
                        })
                    })
                    .collect();
                (batch, results)
            }
        };
        for (job, res) in replies.into_iter().zip(results) {
            let _ = job.reply.send(res);
        }
    }
    let _ = conn.close().await;
}

struct Head {
    seq: i64,
    hash: String,
    next_number: i64,
}

/// Audit rows per multi-row INSERT (11 parameters each, well under SQLite's limit).
const AUDIT_ROWS_PER_INSERT: usize = 256;

async fn begin(conn: &mut SqliteConnection) -> StoreResult<(Tx<'_>, Head)> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
    let (max_number,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(number), 0) FROM tickets")
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
    Ok((
        tx,
        Head {
            seq,
            hash,
            next_number: max_number + 1,
        },
    ))
}

fn is_fatal(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Full(_))
}

/// Signs the new head (if the batch appended entries), records it, and commits.
async fn finish(
    mut tx: Tx<'_>,
    signer: &AuditSigner,
    start_seq: i64,
    head: &Head,
) -> StoreResult<()> {
    let checkpoint = if head.seq > start_seq {
        let cp = signer.sign(head.seq, &head.hash);
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, key_id, signature) VALUES (?, ?, ?, ?)",
        )
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(&cp.key_id)
        .bind(&cp.signature)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1")
            .bind(head.seq)
            .bind(&head.hash)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Some(cp)
    } else {
        None
    };
    tx.commit().await.map_err(err)?;
    if let Some(cp) = checkpoint {
        // off the critical path: the publisher thread replaces the head file
        signer.publish(&cp);
    }
    Ok(())
}

async fn write_batch(
    conn: &mut SqliteConnection,
    signer: &AuditSigner,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
    if batch.len() > 1
        && let Some(results) = write_fast(conn, signer, batch).await?
    {
        return Ok(results);
    }
    write_isolated(conn, signer, batch).await
}

/// The common case: every change set applies cleanly, so they share the transaction without
/// savepoints and their audit rows go in with multi-row INSERTs. `None` when one failed: the
/// transaction is rolled back and the batch is redone with savepoints.
async fn write_fast(
    conn: &mut SqliteConnection,
    signer: &AuditSigner,
    batch: &[Job],
) -> StoreResult<Option<Vec<StoreResult<CommitOutcome>>>> {
    let (mut tx, mut head) = begin(conn).await?;
    let start_seq = head.seq;
    let now = to_millis(OffsetDateTime::now_utc());
    let mut results = Vec::with_capacity(batch.len());
    let mut records = Vec::new();
    for job in batch {
        let mut out = CommitOutcome::default();
        for op in &job.changes.ops {
            if let Err(e) = apply_op(&mut tx, op, &mut head, &mut out).await {
                if is_fatal(&e) {
                    return Err(e);
                }
                tx.rollback().await.map_err(err)?;
                return Ok(None);
            }
        }
        seal(&job.changes.audit, &mut head, now, &mut out, &mut records);
        results.push(Ok(out));
    }
    insert_audit(&mut tx, &records).await?;
    finish(tx, signer, start_seq, &head).await?;
    Ok(Some(results))
}

/// Each change set in its own savepoint, so a failing one does not fail the others.
async fn write_isolated(
    conn: &mut SqliteConnection,
    signer: &AuditSigner,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
    let (mut tx, mut head) = begin(conn).await?;
    let start_seq = head.seq;
    let mut results = Vec::with_capacity(batch.len());
    let single = batch.len() == 1;
    for job in batch {
        if !single {
            sqlx::query("SAVEPOINT job")
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let saved = (head.seq, head.hash.clone(), head.next_number);
        match apply(&mut tx, &job.changes, &mut head).await {
            Ok(out) => {
                if !single {
                    sqlx::query("RELEASE job")
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                results.push(Ok(out));
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) if single => return Ok(vec![Err(e)]),
            Err(e) => {
                sqlx::query("ROLLBACK TO job")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query("RELEASE job")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                (head.seq, head.hash, head.next_number) = saved;
                results.push(Err(e));
            }
        }
    }
    finish(tx, signer, start_seq, &head).await?;
    Ok(results)
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

async fn apply(
    tx: &mut Tx<'_>,
    changes: &ChangeSet,
    head: &mut Head,
) -> StoreResult<CommitOutcome> {
    let mut out = CommitOutcome::default();
    for op in &changes.ops {
        apply_op(tx, op, head, &mut out).await?;
    }
    let mut records = Vec::new();
    seal(
        &changes.audit,
        head,
        to_millis(OffsetDateTime::now_utc()),
        &mut out,
        &mut records,
    );
    insert_audit(tx, &records).await?;
    Ok(out)
}

/// Places drafts in the chain after `head`, advancing it.
fn seal(
    drafts: &[AuditDraft],
    head: &mut Head,
    now: i64,
    out: &mut CommitOutcome,
    records: &mut Vec<AuditRecord>,
) {
    for draft in drafts {
        let rec = draft.clone().seal(head.seq + 1, &head.hash, now);
        head.seq = rec.seq;
        head.hash.clone_from(&rec.hash);
        out.audit_seqs.push(rec.seq);
        records.push(rec);
    }
}

async fn insert_audit(tx: &mut Tx<'_>, records: &[AuditRecord]) -> StoreResult<()> {
    for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit_log (seq, id, occurred_at, actor, action, object_type, object_id, ticket_id, details, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, rec| {
            b.push_bind(rec.seq)
                .push_bind(rec.id.to_string())
                .push_bind(rec.occurred_at_ms)
                .push_bind(rec.actor.clone())
                .push_bind(rec.action.clone())
                .push_bind(rec.object_type.clone())
                .push_bind(rec.object_id.clone())
                .push_bind(rec.ticket_id.map(|t| t.to_string()))
                .push_bind(rec.details.clone())
                .push_bind(rec.prev_hash.clone())
                .push_bind(rec.hash.clone());
        });
        q.build().execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}

async fn write_tags(tx: &mut Tx<'_>, id: &str, tags: &[String], replace: bool) -> StoreResult<()> {
    if replace {
        sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    if tags.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT OR IGNORE INTO ticket_tags (tag, ticket_id) ");
    q.push_values(tags, |mut b, tag| {
        b.push_bind(tag.clone()).push_bind(id.to_string());
    });
    q.build().execute(&mut **tx).await.map_err(err)?;
    Ok(())
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

async fn apply_op(
    tx: &mut Tx<'_>,
    op: &Op,
    head: &mut Head,
    out: &mut CommitOutcome,
) -> StoreResult<()> {
    match op {
        Op::InsertTicket(t) => {
            let number = head.next_number;
            head.next_number += 1;
            let id = t.id.to_string();
            sqlx::query(
                "INSERT INTO tickets (id, number, title, description, source_kind, source_name, source_contact, severity, \
                 priority, criticality, tier, status, owner, assignee, restricted, tags, resolution, problem_category, \
                 false_positive, incident, created_by, created_at, updated_at, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            )
            .bind(&id)
            .bind(number)
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.source.kind.as_str())
            .bind(&t.source.name)
            .bind(&t.source.contact)
            .bind(t.severity.as_str())
            .bind(t.priority.as_str())
            .bind(t.criticality.as_str())
            .bind(i64::from(t.tier))
            .bind(t.status.as_str())
            .bind(&t.owner)
            .bind(&t.assignee)
            .bind(t.restricted)
            .bind(tags_json(&t.tags))
            .bind(&t.resolution)
            .bind(&t.problem_category)
            .bind(t.false_positive)
            .bind(t.incident)
            .bind(&t.created_by)
            .bind(to_millis(t.created_at))
            .bind(to_millis(t.updated_at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            write_tags(tx, &id, &t.tags, false).await?;
            out.ticket_numbers.push(number);
        }
        Op::UpdateTicket {
            ticket: t,
            expected_version,
        } => {
            let id = t.id.to_string();
            let res = sqlx::query(
                "UPDATE tickets SET title = ?, description = ?, source_kind = ?, source_name = ?, source_contact = ?, \
                 severity = ?, priority = ?, criticality = ?, tier = ?, status = ?, owner = ?, assignee = ?, restricted = ?, \
                 tags = ?, resolution = ?, problem_category = ?, false_positive = ?, incident = ?, updated_at = ?, \
                 version = version + 1 WHERE id = ? AND version = ?",
            )
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.source.kind.as_str())
            .bind(&t.source.name)
            .bind(&t.source.contact)
            .bind(t.severity.as_str())
            .bind(t.priority.as_str())
            .bind(t.criticality.as_str())
            .bind(i64::from(t.tier))
            .bind(t.status.as_str())
            .bind(&t.owner)
            .bind(&t.assignee)
            .bind(t.restricted)
            .bind(tags_json(&t.tags))
            .bind(&t.resolution)
            .bind(&t.problem_category)
            .bind(t.false_positive)
            .bind(t.incident)
            .bind(to_millis(t.updated_at))
            .bind(&id)
            .bind(expected_version)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if res.rows_affected() == 0 {
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM tickets WHERE id = ?")
                        .bind(&id)
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
            write_tags(tx, &id, &t.tags, true).await?;
        }
        Op::InsertUser(u) => insert_user(tx, u).await?,
        Op::InsertFirstUser(u) => {
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
                "UPDATE users SET roles = ?, title = ?, seniority = ?, on_duty = ?, email = ?, disabled = ?, clearances = ? WHERE id = ?",
            )
            .bind(roles_to_text(&u.roles))
            .bind(&u.title)
            .bind(i64::from(u.seniority))
            .bind(u.on_duty)
            .bind(&u.email)
            .bind(u.disabled)
            .bind(u.clearances.join(","))
            .bind(u.id.to_string())
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
            let res = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(password_hash)
                .bind(user_id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Op::InsertToken(t) => {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(t.id.to_string())
            .bind(t.user_id.to_string())
            .bind(&t.name)
            .bind(&t.token_hash)
            .bind(scopes_to_text(&t.scopes))
            .bind(to_millis(t.created_at))
            .bind(t.expires_at.map(to_millis))
            .bind(t.revoked_at.map(to_millis))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Op::RevokeTokens {
            user_id,
            token_id,
            at,
        } => {
            let mut q = String::from(
                "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            );
            if token_id.is_some() {
                q.push_str(" AND id = ?");
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(to_millis(*at))
                .bind(user_id.to_string());
            if let Some(t) = token_id {
                query = query.bind(t.to_string());
            }
            query.execute(&mut **tx).await.map_err(err)?;
        }
    }
    Ok(())
}

async fn insert_user(tx: &mut Tx<'_>, u: &firebreak_store::UserRecord) -> StoreResult<()> {
    let user = &u.user;
    sqlx::query(
        "INSERT INTO users (id, username, roles, title, seniority, on_duty, email, disabled, clearances, password_hash, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(user.id.to_string())
    .bind(&user.username)
    .bind(roles_to_text(&user.roles))
    .bind(&user.title)
    .bind(i64::from(user.seniority))
    .bind(user.on_duty)
    .bind(&user.email)
    .bind(user.disabled)
    .bind(user.clearances.join(","))
    .bind(&u.password_hash)
    .bind(to_millis(user.created_at))
    .execute(&mut **tx)
    .await
    .map_err(|e| match err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a user named {} already exists", user.username)),
        other => other,
    })?;
    Ok(())
}
