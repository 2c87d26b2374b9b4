//! The PostgreSQL writer: drains queued change sets and commits them together in one transaction
//! (group commit), appending all their audit entries with one multi-row INSERT under the
//! `audit_head` row lock. If one change set fails, each is redone in a transaction of its own.
//! Invariant: no caller hears "ok" before the COMMIT that holds its change has returned.

use crate::rows::err;
use crate::{Tx, apply_op, insert_tickets};
use firebreak_domain::audit::{AuditDraft, AuditRecord, Checkpoint};
use firebreak_domain::ticket::Ticket;
use firebreak_store::{
    AuditSigner, ChangeSet, CommitOutcome, Op, StoreError, StoreResult, from_millis, to_millis,
    truncate_millis,
};
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Change sets per transaction at most.
pub const MAX_BATCH: usize = 256;
/// Queued change sets at most before `commit` waits (backpressure).
pub const QUEUE: usize = 4096;
/// Audit rows per INSERT (11 parameters each; PostgreSQL allows 65,535).
const AUDIT_ROWS_PER_INSERT: usize = 512;

pub struct Job {
    pub changes: ChangeSet,
    pub reply: oneshot::Sender<StoreResult<CommitOutcome>>,
}

/// What each of the writer's transactions needs besides the pool: the audit signer, and this
/// process's tag on its announcements ([`firebreak_store::announcement_payload`]).
pub struct Writer {
    pub signer: Arc<AuditSigner>,
    pub origin: String,
    /// The install's NOTIFY channel (one per schema).
    pub channel: String,
}

pub async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<Job>,
    w: Writer,
    timeout: std::time::Duration,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        // past the timeout the transaction is dropped (sqlx rolls it back before the connection
        // is used again) and its change sets refused: none was acknowledged, so none is lost;
        // one whose COMMIT did reach the database is there, unacknowledged, as after a crash
        let results = match tokio::time::timeout(timeout, write_batch(&pool, &w, &batch)).await {
            Ok(results) => results,
            Err(_) => {
                tracing::error!(
                    batch = batch.len(),
                    timeout_secs = timeout.as_secs(),
                    "postgres batch commit did not finish in time; its change sets are refused"
                );
                let msg = format!(
                    "the database did not complete the write within {} s",
                    timeout.as_secs()
                );
                // what queued up meanwhile has waited as long: refused now rather than after
                // a timeout of its own (a stall does not stack one timeout per batch)
                let mut refused = 0;
                while let Ok(job) = rx.try_recv() {
                    let _ = job.reply.send(Err(StoreError::Unavailable(msg.clone())));
                    refused += 1;
                }
                if refused > 0 {
                    tracing::warn!(
                        refused,
                        "queued change sets refused after the stalled write"
                    );
                }
                batch
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(msg.clone())))
                    .collect()
            }
        };
        for (job, res) in batch.into_iter().zip(results) {
            let _ = job.reply.send(res);
        }
    }
}

fn is_fatal(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Full(_))
}

/// Consecutive runs of `items` with at most one intake item each.
fn one_intake_per_run<T>(items: &[T], is_intake: impl Fn(&T) -> bool) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut start, mut seen) = (0, false);
    for (i, item) in items.iter().enumerate() {
        if is_intake(item) {
            if seen {
                runs.push(&items[start..i]);
                start = i;
            }
            seen = true;
        }
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// Commits `batch` in order, never two intake change sets in one transaction: each locks its
/// dedup keys and observables in sorted order, but two in one transaction would lock them in
/// two sorted runs, and another node's transaction grouped differently could deadlock with it
/// (40P01 after `deadlock_timeout`, a 409 to the client if the change set was alone).
async fn write_batch(pool: &PgPool, w: &Writer, batch: &[Job]) -> Vec<StoreResult<CommitOutcome>> {
    let mut results = Vec::with_capacity(batch.len());
    let runs = one_intake_per_run(batch, |j| {
        j.changes
            .ops
            .iter()
            .any(|op| matches!(op, Op::IngestEvents(_)))
    });
    for run in runs {
        results.extend(write_run(pool, w, run).await);
    }
    results
}

async fn write_run(pool: &PgPool, w: &Writer, batch: &[Job]) -> Vec<StoreResult<CommitOutcome>> {
    if batch.len() > 1 {
        match write_together(pool, w, batch).await {
            Ok(Some(results)) => return results,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "postgres batch commit failed");
                let msg = e.to_string();
                let full = matches!(e, StoreError::Full(_));
                return batch
                    .iter()
                    .map(|_| {
                        Err(if full {
                            StoreError::Full(msg.clone())
                        } else {
                            StoreError::Unavailable(msg.clone())
                        })
                    })
                    .collect();
            }
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(commit_one(pool, w, &job.changes).await);
    }
    results
}

/// `NOTIFY` of the commit's topics: delivered to every listening node (this one too) when (and
/// only if) the transaction commits. One statement per transaction, whatever it holds.
async fn announce(tx: &mut sqlx::PgConnection, w: &Writer, topics: &str) -> StoreResult<()> {
    if topics.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&w.channel)
        .bind(firebreak_store::announcement_payload(topics, &w.origin))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    Ok(())
}

async fn commit_one(pool: &PgPool, w: &Writer, changes: &ChangeSet) -> StoreResult<CommitOutcome> {
    let mut tx = pool.begin().await.map_err(err)?;
    let mut out = CommitOutcome::default();
    for op in &changes.ops {
        apply_op(&mut tx, op, &mut out).await?;
    }
    let drafts: Vec<&AuditDraft> = changes.audit.iter().collect();
    let (seqs, cp) = append(&mut tx, &w.signer, &drafts).await?;
    out.audit_seqs = seqs;
    announce(&mut tx, w, &firebreak_store::change_topics([changes])).await?;
    tx.commit().await.map_err(err)?;
    if let Some(cp) = cp {
        w.signer.publish(&cp);
    }
    Ok(out)
}

/// All change sets in one transaction; `None` when one failed (rolled back, to be redone alone).
async fn write_together(
    pool: &PgPool,
    w: &Writer,
    batch: &[Job],
) -> StoreResult<Option<Vec<StoreResult<CommitOutcome>>>> {
    let mut tx = pool.begin().await.map_err(err)?;
    let mut outs = Vec::with_capacity(batch.len());
    // New tickets are buffered and inserted many per statement; any other op first flushes the
    // buffer, so ops still apply in order. `slots` says whose number each buffered ticket gets.
    let mut pending: Vec<&Ticket> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        outs.push(CommitOutcome::default());
        for op in &job.changes.ops {
            let res = match op {
                Op::InsertTicket(t) => {
                    pending.push(t);
                    slots.push(i);
                    Ok(())
                }
                other => match flush(&mut tx, &mut pending, &mut slots, &mut outs).await {
                    Ok(()) => apply_op(&mut tx, other, &mut outs[i]).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = res {
                if is_fatal(&e) {
                    return Err(e);
                }
                tx.rollback().await.map_err(err)?;
                return Ok(None);
            }
        }
    }
    if let Err(e) = flush(&mut tx, &mut pending, &mut slots, &mut outs).await {
        if is_fatal(&e) {
            return Err(e);
        }
        tx.rollback().await.map_err(err)?;
        return Ok(None);
    }
    let drafts: Vec<&AuditDraft> = batch.iter().flat_map(|j| j.changes.audit.iter()).collect();
    let (seqs, cp) = append(&mut tx, &w.signer, &drafts).await?;
    announce(
        &mut tx,
        w,
        &firebreak_store::change_topics(batch.iter().map(|j| &j.changes)),
    )
    .await?;
    tx.commit().await.map_err(err)?;
    if let Some(cp) = cp {
        w.signer.publish(&cp);
    }
    let mut seqs = seqs.into_iter();
    Ok(Some(
        batch
            .iter()
            .zip(outs)
            .map(|(job, mut out)| {
                out.audit_seqs = seqs.by_ref().take(job.changes.audit.len()).collect();
                Ok(out)
            })
            .collect(),
    ))
}

async fn flush(
    tx: &mut Tx<'_>,
    pending: &mut Vec<&Ticket>,
    slots: &mut Vec<usize>,
    outs: &mut [CommitOutcome],
) -> StoreResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let numbers = insert_tickets(tx, pending).await?;
    for (slot, number) in slots.drain(..).zip(numbers) {
        outs[slot].ticket_numbers.push(number);
    }
    pending.clear();
    Ok(())
}

/// Appends entries after the locked head, signs the new head; last in the transaction so the
/// head row stays locked as briefly as possible.
async fn append(
    tx: &mut Tx<'_>,
    signer: &AuditSigner,
    drafts: &[&AuditDraft],
) -> StoreResult<(Vec<i64>, Option<Checkpoint>)> {
    if drafts.is_empty() {
        return Ok((vec![], None));
    }
    let (mut seq, mut hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
    let now = to_millis(truncate_millis(OffsetDateTime::now_utc()));
    let mut records: Vec<AuditRecord> = Vec::with_capacity(drafts.len());
    for d in drafts {
        let rec = (*d).clone().seal(seq + 1, &hash, now);
        seq = rec.seq;
        hash.clone_from(&rec.hash);
        records.push(rec);
    }
    for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO audit_log (seq, id, occurred_at, actor, action, object_type, object_id, ticket_id, details, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, rec| {
            b.push_bind(rec.seq)
                .push_bind(rec.id.as_uuid())
                .push_bind(from_millis(rec.occurred_at_ms))
                .push_bind(rec.actor.clone())
                .push_bind(rec.action.clone())
                .push_bind(rec.object_type.clone())
                .push_bind(rec.object_id.clone())
                .push_bind(rec.ticket_id.map(|t| t.as_uuid()))
                .push_bind(rec.details.clone())
                .push_bind(rec.prev_hash.clone())
                .push_bind(rec.hash.clone());
        });
        q.build().execute(&mut **tx).await.map_err(err)?;
    }
    let cp = signer.sign(seq, &hash);
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, key_id, signature) VALUES ($1, $2, $3, $4)",
    )
    .bind(cp.seq)
    .bind(&cp.hash)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok((records.iter().map(|r| r.seq).collect(), Some(cp)))
}

#[cfg(test)]
mod tests {
    use super::one_intake_per_run;

    #[test]
    fn intake_change_sets_get_a_transaction_each() {
        let runs = |items: &[bool]| -> Vec<Vec<bool>> {
            one_intake_per_run(items, |x| *x)
                .into_iter()
                .map(<[bool]>::to_vec)
                .collect()
        };
        assert_eq!(runs(&[]), Vec::<Vec<bool>>::new());
        assert_eq!(runs(&[false, false]), vec![vec![false, false]]);
        assert_eq!(runs(&[false, true, false]), vec![vec![false, true, false]]);
        assert_eq!(
            runs(&[true, false, true, true, false]),
            vec![vec![true, false], vec![true], vec![true, false]]
        );
        assert_eq!(
            runs(&[false, true, true]),
            vec![vec![false, true], vec![true]]
        );
    }
}
