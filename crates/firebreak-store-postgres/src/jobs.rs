//! Jobs and threat indicators on PostgreSQL: enqueue, optimistic update, lease claims with
//! `FOR UPDATE SKIP LOCKED` (one statement, outside the writer: concurrent claimers on any node
//! never return the same job), set-based indicator upserts (`unnest` arrays, keys in sorted order
//! so concurrent feeds cannot deadlock), and the reads.

use crate::rows::{self, err};
use crate::{PgStore, Tx};
use async_trait::async_trait;
use firebreak_store::{
    IndicatorFilter, IndicatorRecord, IndicatorStore, JobFilter, JobRecord, JobStatus, JobStore,
    StoreError, StoreResult, truncate_millis,
};
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Inserts a job (version 1); a job already holding its idempotency key makes this a no-op.
pub(crate) async fn enqueue(tx: &mut Tx<'_>, j: &JobRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, idempotency_key, status, ticket_id, payload, state, attempts, max_attempts, \
         run_at, locked_by, locked_until, last_error, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15) \
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    )
    .bind(j.id)
    .bind(&j.kind)
    .bind(&j.idempotency_key)
    .bind(j.status.as_str())
    .bind(j.ticket_id.map(|t| t.as_uuid()))
    .bind(&j.payload)
    .bind(&j.state)
    .bind(j.attempts)
    .bind(j.max_attempts)
    .bind(truncate_millis(j.run_at))
    .bind(&j.locked_by)
    .bind(j.locked_until.map(truncate_millis))
    .bind(&j.last_error)
    .bind(truncate_millis(j.created_at))
    .bind(truncate_millis(j.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

/// Replaces a job's mutable columns if its version is still `expected_version`.
pub(crate) async fn update(
    tx: &mut Tx<'_>,
    j: &JobRecord,
    expected_version: i64,
) -> StoreResult<()> {
    let res = sqlx::query(
        "UPDATE jobs SET status = $1, state = $2, attempts = $3, run_at = $4, locked_by = $5, \
         locked_until = $6, last_error = $7, updated_at = $8, version = version + 1, \
         ticket_id = $11 \
         WHERE id = $9 AND version = $10",
    )
    .bind(j.status.as_str())
    .bind(&j.state)
    .bind(j.attempts)
    .bind(truncate_millis(j.run_at))
    .bind(&j.locked_by)
    .bind(j.locked_until.map(truncate_millis))
    .bind(&j.last_error)
    .bind(truncate_millis(j.updated_at))
    .bind(j.id)
    .bind(expected_version)
    .bind(j.ticket_id.map(|t| t.as_uuid()))
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    if res.rows_affected() == 0 {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT version FROM jobs WHERE id = $1")
            .bind(j.id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(err)?;
        return Err(match exists {
            Some(_) => StoreError::Conflict("the job was changed concurrently; retry".into()),
            None => StoreError::NotFound,
        });
    }
    Ok(())
}

/// Claims due jobs in one statement: the rows the inner SELECT locks are skipped by every
/// concurrent claim, and a row another claim changed meanwhile is re-checked against the
/// conditions before it is locked (READ COMMITTED), so no job is returned twice.
pub(crate) async fn claim(
    pool: &PgPool,
    worker: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
    limit: u32,
) -> StoreResult<Vec<JobRecord>> {
    let rows = sqlx::query(
        "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, \
         version = version + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs \
           WHERE (status IN ('queued', 'waiting') AND run_at <= $3) \
              OR (status = 'running' AND locked_until < $3) \
           ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind(worker)
    .bind(truncate_millis(until))
    .bind(truncate_millis(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(err)?;
    let mut jobs = rows
        .iter()
        .map(rows::job)
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING gives no order: oldest run_at first, as the contract says
    jobs.sort_by_key(|j| (j.run_at, j.id));
    Ok(jobs)
}

/// Indicator rows per `unnest` INSERT.
const INDICATORS_PER_INSERT: usize = 5000;

/// One array per column, for an `unnest` upsert.
#[derive(Default)]
struct IndicatorColumns<'a> {
    id: Vec<Uuid>,
    kind: Vec<&'a str>,
    value: Vec<&'a str>,
    confidence: Vec<i32>,
    source: Vec<&'a str>,
    description: Vec<Option<&'a str>>,
    valid_until: Vec<Option<OffsetDateTime>>,
    created_at: Vec<OffsetDateTime>,
    updated_at: Vec<OffsetDateTime>,
}

/// Inserts or updates indicators a chunk per statement, then moves the generation once.
///
/// One statement may not touch a row twice, so repeats of a (kind, value, source) within the op
/// are merged first, the way applying them one after the other would leave the row: the first
/// one's id and `created_at`, the last one's other fields. Keys go in sorted order, so that
/// concurrent upserts lock rows in the same order and cannot deadlock.
pub(crate) async fn upsert_indicators(
    tx: &mut Tx<'_>,
    items: &[IndicatorRecord],
) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut merged: BTreeMap<(&str, &str, &str), (&IndicatorRecord, &IndicatorRecord)> =
        BTreeMap::new();
    for i in items {
        merged
            .entry((&i.kind, &i.value, &i.source))
            .and_modify(|e| e.1 = i)
            .or_insert((i, i));
    }
    let merged: Vec<_> = merged.into_values().collect();
    for chunk in merged.chunks(INDICATORS_PER_INSERT) {
        let mut c = IndicatorColumns::default();
        for (first, last) in chunk {
            c.id.push(first.id);
            c.kind.push(&first.kind);
            c.value.push(&first.value);
            c.confidence.push(last.confidence);
            c.source.push(&first.source);
            c.description.push(last.description.as_deref());
            c.valid_until.push(last.valid_until.map(truncate_millis));
            c.created_at.push(truncate_millis(first.created_at));
            c.updated_at.push(truncate_millis(last.updated_at));
        }
        sqlx::query(
            "INSERT INTO indicators (id, kind, value, confidence, source, description, valid_until, created_at, updated_at) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], \
             $7::timestamptz[], $8::timestamptz[], $9::timestamptz[]) \
             ON CONFLICT (kind, value, source) DO UPDATE SET confidence = EXCLUDED.confidence, \
             description = EXCLUDED.description, valid_until = EXCLUDED.valid_until, updated_at = EXCLUDED.updated_at",
        )
        .bind(&c.id)
        .bind(&c.kind)
        .bind(&c.value)
        .bind(&c.confidence)
        .bind(&c.source)
        .bind(&c.description)
        .bind(&c.valid_until)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    }
    bump_generation(tx).await
}

/// Deletes a source's indicators; the generation moves only if there were some.
pub(crate) async fn delete_indicators(tx: &mut Tx<'_>, source: &str) -> StoreResult<()> {
    let res = sqlx::query("DELETE FROM indicators WHERE source = $1")
        .bind(source)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    if res.rows_affected() > 0 {
        bump_generation(tx).await?;
    }
    Ok(())
}

/// Moves the generation in the op's transaction: readers see the new number together with the
/// data it announces (the row stays locked until COMMIT, so indicator writers queue here).
async fn bump_generation(tx: &mut Tx<'_>) -> StoreResult<()> {
    sqlx::query("UPDATE indicator_generation SET n = n + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok(())
}

#[async_trait]
impl JobStore for PgStore {
    async fn get_job(&self, id: Uuid) -> StoreResult<JobRecord> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        rows::job(&row)
    }

    async fn list_jobs(&self, f: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM jobs WHERE TRUE");
        if let Some(k) = &f.kind {
            q.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.as_uuid());
        }
        if let Some((at, id)) = f.before {
            q.push(" AND (created_at, id) < (")
                .push_bind(truncate_millis(at))
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(rows::job).collect()
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| JobStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }
}

/// Page size of indicator listings and key pages when the caller gives 0.
const INDICATOR_PAGE: u32 = 1000;

#[async_trait]
impl IndicatorStore for PgStore {
    async fn find_indicators(&self, kind: &str, value: &str) -> StoreResult<Vec<IndicatorRecord>> {
        let rows =
            sqlx::query("SELECT * FROM indicators WHERE kind = $1 AND value = $2 ORDER BY source")
                .bind(kind)
                .bind(value)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.iter().map(rows::indicator).collect()
    }

    async fn find_indicators_any(
        &self,
        keys: &[(String, String)],
    ) -> StoreResult<Vec<IndicatorRecord>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let kinds: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&str> = keys.iter().map(|(_, v)| v.as_str()).collect();
        let rows = sqlx::query(
            "SELECT i.* FROM indicators i \
             JOIN UNNEST($1::text[], $2::text[]) AS u(k, v) \
               ON i.kind = u.k COLLATE \"C\" AND i.value = u.v COLLATE \"C\" \
             ORDER BY i.kind, i.value, i.source",
        )
        .bind(&kinds)
        .bind(&values)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::indicator).collect()
    }

    async fn list_indicators(&self, f: &IndicatorFilter) -> StoreResult<Vec<IndicatorRecord>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT * FROM indicators WHERE TRUE");
        if let Some(k) = &f.kind {
            q.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(s) = &f.source {
            q.push(" AND source = ").push_bind(s.clone());
        }
        if let Some(v) = f.valid_at {
            q.push(" AND (valid_until IS NULL OR valid_until > ")
                .push_bind(truncate_millis(v))
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
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(rows::indicator).collect()
    }

    async fn count_indicators(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM indicators")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
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
            "SELECT pos, kind, value FROM indicators WHERE pos > $1 \
             AND (valid_until IS NULL OR valid_until > $2) ORDER BY pos LIMIT $3",
        )
        .bind(after)
        .bind(truncate_millis(valid_at))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let last = rows.last().map_or(after, |r| r.0);
        Ok((rows.into_iter().map(|(_, k, v)| (k, v)).collect(), last))
    }

    async fn indicator_generation(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT n FROM indicator_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(n)
    }
}
