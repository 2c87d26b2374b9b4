//! Jobs and threat indicators on SQLite: the writer's statements (enqueue, optimistic update,
//! lease claims, indicator upserts and deletes, each run on the single writer's connection) and
//! the reads through the read-only pool. Nothing here opens a transaction of its own except
//! [`claim`], which the writer runs between batches.

use crate::writer::err;
use crate::{SqliteStore, rows};
use async_trait::async_trait;
use firebreak_store::{
    IndicatorFilter, IndicatorRecord, IndicatorStore, JobFilter, JobRecord, JobStatus, JobStore,
    StoreError, StoreResult, from_millis, to_millis,
};
use rusqlite::{Connection, TransactionBehavior, params};
use sqlx::{QueryBuilder, Sqlite};
use time::OffsetDateTime;

/// The columns of a job, in the order [`job_from`] reads them.
const JOB_COLUMNS: &str = "id, kind, idempotency_key, status, ticket_id, payload, state, attempts, \
     max_attempts, run_at, locked_by, locked_until, last_error, version, created_at, updated_at";

/// Inserts a job (version 1); a job already holding its idempotency key makes this a no-op.
pub(crate) fn enqueue(conn: &Connection, j: &JobRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO jobs (id, kind, idempotency_key, status, ticket_id, payload, state, attempts, max_attempts, \
         run_at, locked_by, locked_until, last_error, version, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?14, ?15) \
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            j.id.to_string(),
            j.kind,
            j.idempotency_key,
            j.status.as_str(),
            j.ticket_id.map(|t| t.to_string()),
            j.payload,
            j.state,
            j.attempts,
            j.max_attempts,
            to_millis(j.run_at),
            j.locked_by,
            j.locked_until.map(to_millis),
            j.last_error,
            to_millis(j.created_at),
            to_millis(j.updated_at),
        ])
    })
    .map_err(err)?;
    Ok(())
}

/// Replaces a job's mutable columns if its version is still `expected_version`.
pub(crate) fn update(conn: &Connection, j: &JobRecord, expected_version: i64) -> StoreResult<()> {
    let id = j.id.to_string();
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET status = ?1, state = ?2, attempts = ?3, run_at = ?4, locked_by = ?5, \
             locked_until = ?6, last_error = ?7, updated_at = ?8, version = version + 1, \
             ticket_id = ?11 \
             WHERE id = ?9 AND version = ?10",
        )
        .and_then(|mut s| {
            s.execute(params![
                j.status.as_str(),
                j.state,
                j.attempts,
                to_millis(j.run_at),
                j.locked_by,
                j.locked_until.map(to_millis),
                j.last_error,
                to_millis(j.updated_at),
                id,
                expected_version,
                j.ticket_id.map(|t| t.to_string()),
            ])
        })
        .map_err(err)?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
            .and_then(|mut s| s.exists([&id]))
            .map_err(err)?;
        return Err(if exists {
            StoreError::Conflict("the job was changed concurrently; retry".into())
        } else {
            StoreError::NotFound
        });
    }
    Ok(())
}

/// Claims due jobs in a transaction of its own (`BEGIN IMMEDIATE`: another process's writer on
/// the same file waits for it), so that no two claims return the same job.
pub(crate) fn claim(
    conn: &mut Connection,
    worker: &str,
    now: i64,
    until: i64,
    limit: u32,
) -> StoreResult<Vec<JobRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut jobs = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "UPDATE jobs SET status = 'running', locked_by = ?1, locked_until = ?2, \
                 version = version + 1, updated_at = ?3 \
                 WHERE id IN (SELECT id FROM jobs \
                   WHERE (status IN ('queued', 'waiting') AND run_at <= ?3) \
                      OR (status = 'running' AND locked_until < ?3) \
                   ORDER BY run_at, id LIMIT ?4) \
                 RETURNING {JOB_COLUMNS}"
            ))
            .map_err(err)?;
        let raw = stmt
            .query_map(params![worker, until, now, i64::from(limit)], raw_job)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        raw.into_iter()
            .map(RawJob::into_record)
            .collect::<StoreResult<Vec<_>>>()?
    };
    tx.commit().map_err(err)?;
    // RETURNING gives no order: oldest run_at first, as the contract says
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(jobs)
}

/// A job row as rusqlite reads it (`RETURNING` of a claim).
struct RawJob {
    id: String,
    kind: String,
    idempotency_key: Option<String>,
    status: String,
    ticket_id: Option<String>,
    payload: String,
    state: String,
    attempts: i32,
    max_attempts: i32,
    run_at: i64,
    locked_by: Option<String>,
    locked_until: Option<i64>,
    last_error: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

fn raw_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: r.get(0)?,
        kind: r.get(1)?,
        idempotency_key: r.get(2)?,
        status: r.get(3)?,
        ticket_id: r.get(4)?,
        payload: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        max_attempts: r.get(8)?,
        run_at: r.get(9)?,
        locked_by: r.get(10)?,
        locked_until: r.get(11)?,
        last_error: r.get(12)?,
        version: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

impl RawJob {
    fn into_record(self) -> StoreResult<JobRecord> {
        let bad = |col: &str, raw: &str| {
            StoreError::Other(anyhow::anyhow!("bad stored value {raw:?} in column {col}"))
        };
        Ok(JobRecord {
            id: self.id.parse().map_err(|_| bad("id", &self.id))?,
            kind: self.kind,
            idempotency_key: self.idempotency_key,
            status: JobStatus::parse(&self.status).ok_or_else(|| bad("status", &self.status))?,
            ticket_id: match self.ticket_id {
                Some(t) => Some(t.parse().map_err(|_| bad("ticket_id", &t))?),
                None => None,
            },
            payload: self.payload,
            state: self.state,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_at: from_millis(self.run_at),
            locked_by: self.locked_by,
            locked_until: self.locked_until.map(from_millis),
            last_error: self.last_error,
            version: self.version,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

/// Inserts or updates indicators with one reused statement, then moves the generation once.
pub(crate) fn upsert_indicators(conn: &Connection, items: &[IndicatorRecord]) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO indicators (id, kind, value, confidence, source, description, valid_until, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (kind, value, source) DO UPDATE SET confidence = excluded.confidence, \
             description = excluded.description, valid_until = excluded.valid_until, updated_at = excluded.updated_at",
        )
        .map_err(err)?;
    for i in items {
        stmt.execute(params![
            i.id.to_string(),
            i.kind,
            i.value,
            i.confidence,
            i.source,
            i.description,
            i.valid_until.map(to_millis),
            to_millis(i.created_at),
            to_millis(i.updated_at),
        ])
        .map_err(err)?;
    }
    bump_generation(conn)
}

/// Deletes a source's indicators; the generation moves only if there were some.
pub(crate) fn delete_indicators(conn: &Connection, source: &str) -> StoreResult<()> {
    let n = conn
        .prepare_cached("DELETE FROM indicators WHERE source = ?1")
        .and_then(|mut s| s.execute([source]))
        .map_err(err)?;
    if n > 0 {
        bump_generation(conn)?;
    }
    Ok(())
}

fn bump_generation(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached("UPDATE indicator_generation SET n = n + 1 WHERE id = 1")
        .and_then(|mut s| s.execute([]))
        .map_err(err)?;
    Ok(())
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn get_job(&self, id: uuid::Uuid) -> StoreResult<JobRecord> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(rows::err)?
            .ok_or(StoreError::NotFound)?;
        rows::job(&row)
    }

    async fn list_jobs(&self, f: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM jobs WHERE 1 = 1");
        if let Some(k) = &f.kind {
            q.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.to_string());
        }
        if let Some((at, id)) = f.before {
            q.push(" AND (created_at, id) < (")
                .push_bind(to_millis(at))
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::job).collect()
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.read)
                .await
                .map_err(rows::err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| JobStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }
}

/// Page size of indicator listings and key pages when the caller gives 0.
const INDICATOR_PAGE: u32 = 1000;

#[async_trait]
impl IndicatorStore for SqliteStore {
    async fn find_indicators(&self, kind: &str, value: &str) -> StoreResult<Vec<IndicatorRecord>> {
        let rows =
            sqlx::query("SELECT * FROM indicators WHERE kind = ? AND value = ? ORDER BY source")
                .bind(kind)
                .bind(value)
                .fetch_all(&self.read)
                .await
                .map_err(rows::err)?;
        rows.iter().map(rows::indicator).collect()
    }

    async fn find_indicators_any(
        &self,
        keys: &[(String, String)],
    ) -> StoreResult<Vec<IndicatorRecord>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(400) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT * FROM indicators WHERE (kind, value) IN (VALUES ");
            let mut sep = q.separated(", ");
            for (k, v) in chunk {
                sep.push("(")
                    .push_bind_unseparated(k.clone())
                    .push_unseparated(", ")
                    .push_bind_unseparated(v.clone())
                    .push_unseparated(")");
            }
            q.push(") ORDER BY kind, value, source");
            let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
            for r in &rows {
                out.push(rows::indicator(r)?);
            }
        }
        Ok(out)
    }

    async fn list_indicators(&self, f: &IndicatorFilter) -> StoreResult<Vec<IndicatorRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM indicators WHERE 1 = 1");
        if let Some(k) = &f.kind {
            q.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(s) = &f.source {
            q.push(" AND source = ").push_bind(s.clone());
        }
        if let Some(v) = f.valid_at {
            q.push(" AND (valid_until IS NULL OR valid_until > ")
                .push_bind(to_millis(v))
                .push(")");
        }
        if let Some((k, v, s)) = &f.after {
            q.push(" AND (kind, value, source) > (")
                .push_bind(k.clone())
                .push(", ")
                .push_bind(v.clone())
                .push(", ")
                .push_bind(s.clone())
                .push(")");
        }
        let limit = if f.limit == 0 {
            INDICATOR_PAGE
        } else {
            f.limit
        };
        q.push(" ORDER BY kind, value, source LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter().map(rows::indicator).collect()
    }

    async fn count_indicators(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM indicators")
            .fetch_one(&self.read)
            .await
            .map_err(rows::err)?;
        Ok(n)
    }

    async fn indicator_keys(
        &self,
        valid_at: OffsetDateTime,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<(String, String)>, i64)> {
        let limit = if limit == 0 { INDICATOR_PAGE } else { limit };
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT pos, kind, value FROM indicators WHERE pos > ? \
             AND (valid_until IS NULL OR valid_until > ?) ORDER BY pos LIMIT ?",
        )
        .bind(after)
        .bind(to_millis(valid_at))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(rows::err)?;
        let last = rows.last().map_or(after, |r| r.0);
        Ok((rows.into_iter().map(|(_, k, v)| (k, v)).collect(), last))
    }

    async fn indicator_generation(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT n FROM indicator_generation WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(rows::err)?;
        Ok(n)
    }
}
