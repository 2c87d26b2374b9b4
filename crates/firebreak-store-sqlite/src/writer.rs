//! The single SQLite writer: drains queued change sets, applies up to `MAX_BATCH` of them in one
//! `BEGIN IMMEDIATE` transaction (each in a savepoint so one failure does not fail the others),
//! appends their audit entries to the chain, signs the new head, COMMITs, then answers.
//! Invariant: no caller hears "ok" before the COMMIT that holds its change has returned.

use crate::rows::err;
use firebreak_domain::audit::AuditDraft;
use firebreak_store::{
    AuditSigner, ChangeSet, CommitOutcome, Op, StoreError, StoreResult, roles_to_text,
    scopes_to_text, to_millis,
};
use sqlx::{Connection, SqliteConnection};
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

async fn write_batch(
    conn: &mut SqliteConnection,
    signer: &AuditSigner,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
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
    let start_seq = seq;
    let mut head = Head {
        seq,
        hash,
        next_number: max_number + 1,
    };
    let mut results = Vec::with_capacity(batch.len());
    let single = batch.len() == 1;
    for job in batch {
        if single {
            // one change set: the transaction itself is the unit, no savepoint needed
            results.push(apply(&mut tx, &job.changes, &mut head).await);
            if results[0].is_err() {
                return Ok(results);
            }
            continue;
        }
        sqlx::query("SAVEPOINT job")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let saved = (head.seq, head.hash.clone(), head.next_number);
        match apply(&mut tx, &job.changes, &mut head).await {
            Ok(out) => {
                sqlx::query("RELEASE job")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                results.push(Ok(out));
            }
            Err(e) => {
                if matches!(e, StoreError::Unavailable(_) | StoreError::Full(_)) {
                    return Err(e);
                }
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
        signer.publish(&cp);
    }
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
    let now = to_millis(OffsetDateTime::now_utc());
    for draft in &changes.audit {
        append_audit(tx, draft, head, now, &mut out).await?;
    }
    Ok(out)
}

async fn append_audit(
    tx: &mut Tx<'_>,
    draft: &AuditDraft,
    head: &mut Head,
    now: i64,
    out: &mut CommitOutcome,
) -> StoreResult<()> {
    let rec = draft.clone().seal(head.seq + 1, &head.hash, now);
    sqlx::query(
        "INSERT INTO audit_log (seq, id, occurred_at, actor, action, object_type, object_id, ticket_id, details, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(rec.seq)
    .bind(rec.id.to_string())
    .bind(rec.occurred_at_ms)
    .bind(&rec.actor)
    .bind(&rec.action)
    .bind(&rec.object_type)
    .bind(&rec.object_id)
    .bind(rec.ticket_id.map(|t| t.to_string()))
    .bind(&rec.details)
    .bind(&rec.prev_hash)
    .bind(&rec.hash)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    head.seq = rec.seq;
    head.hash = rec.hash;
    out.audit_seqs.push(rec.seq);
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
    for tag in tags {
        sqlx::query("INSERT OR IGNORE INTO ticket_tags (tag, ticket_id) VALUES (?, ?)")
            .bind(tag)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
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
