//! Events and observables on PostgreSQL: intake is set-based (a few statements per batch, with
//! `unnest` arrays), so a batch of hundreds of events costs a handful of round trips. Keys and
//! observables are locked in sorted order, so concurrent nodes cannot deadlock on them (the
//! writer gives each intake change set a transaction of its own).

use crate::rows::err;
use crate::{PgStore, Tx};
use async_trait::async_trait;
use firebreak_domain::event::{Event, EventDetails, ObservableRef};
use firebreak_domain::ids::TicketId;
use firebreak_domain::ticket::{EventStatus, Severity, SourceKind};
use firebreak_store::{
    CommitOutcome, EventFilter, EventStore, Ingested, NewEvent, ObservableFilter, ObservableRecord,
    StoreError, StoreResult, SuppressionHits, from_millis, like_escape, truncate_millis,
};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) async fn ingest(
    tx: &mut Tx<'_>,
    items: &[NewEvent],
    out: &mut CommitOutcome,
) -> StoreResult<()> {
    let mut results: Vec<Option<Ingested>> = vec![None; items.len()];
    let mut to_insert: Vec<&NewEvent> = Vec::new();
    // Resolutions: rare, one at a time.
    for (i, item) in items.iter().enumerate().filter(|(_, it)| it.resolve) {
        let found: Option<(Uuid,)> =
            sqlx::query_as("DELETE FROM event_dedup WHERE dedup_key = $1 RETURNING event_id")
                .bind(&item.dedup_key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(err)?;
        let at = truncate_millis(item.event.last_seen);
        let ended = item.event.resolved_at.map_or(at, truncate_millis);
        if let Some((id,)) = found {
            let done = sqlx::query(
                "UPDATE events SET resolved_at = $3, last_seen = GREATEST(last_seen, $1), \
                 status = CASE WHEN status = 'new' THEN 'resolved' ELSE status END, version = version + 1 WHERE id = $2",
            )
            .bind(at)
            .bind(id)
            .bind(ended)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            if done.rows_affected() == 1 {
                results[i] = Some(Ingested {
                    event_id: id,
                    created: false,
                    resolved: true,
                });
                continue;
            }
        }
        to_insert.push(item);
        results[i] = Some(Ingested {
            event_id: item.event.id,
            created: true,
            resolved: false,
        });
    }
    // Reports: one upsert of every key (sorted), which says who owns each key now.
    let mut reports: Vec<(usize, &NewEvent)> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| !it.resolve)
        .collect();
    reports.sort_by(|a, b| a.1.dedup_key.cmp(&b.1.dedup_key));
    if !reports.is_empty() {
        let keys: Vec<&str> = reports.iter().map(|(_, r)| r.dedup_key.as_str()).collect();
        let ids: Vec<Uuid> = reports.iter().map(|(_, r)| r.event.id).collect();
        let seen: Vec<OffsetDateTime> = reports
            .iter()
            .map(|(_, r)| truncate_millis(r.event.last_seen))
            .collect();
        let windows: Vec<OffsetDateTime> = reports
            .iter()
            .map(|(_, r)| truncate_millis(r.window_start))
            .collect();
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "INSERT INTO event_dedup AS d (dedup_key, event_id, last_seen, window_start) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::timestamptz[]) \
             ON CONFLICT (dedup_key) DO UPDATE SET \
             event_id = CASE WHEN d.last_seen < excluded.window_start THEN excluded.event_id ELSE d.event_id END, \
             last_seen = GREATEST(d.last_seen, excluded.last_seen), window_start = excluded.window_start \
             RETURNING dedup_key, event_id",
        )
        .bind(&keys)
        .bind(&ids)
        .bind(&seen)
        .bind(&windows)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        let owner: HashMap<String, Uuid> = rows.into_iter().collect();
        let mut repeats: BTreeMap<Uuid, (i64, OffsetDateTime)> = BTreeMap::new();
        for (i, r) in &reports {
            let winner = *owner.get(&r.dedup_key).ok_or_else(|| {
                StoreError::Other(anyhow::anyhow!("no dedup row for key {}", r.dedup_key))
            })?;
            if winner == r.event.id {
                to_insert.push(r);
                results[*i] = Some(Ingested {
                    event_id: winner,
                    created: true,
                    resolved: false,
                });
            } else {
                let e = repeats.entry(winner).or_insert((0, r.event.last_seen));
                e.0 += r.event.occurrences;
                e.1 = e.1.max(r.event.last_seen);
                results[*i] = Some(Ingested {
                    event_id: winner,
                    created: false,
                    resolved: false,
                });
            }
        }
        if !repeats.is_empty() {
            let ids: Vec<Uuid> = repeats.keys().copied().collect();
            let ns: Vec<i64> = repeats.values().map(|v| v.0).collect();
            let ls: Vec<OffsetDateTime> = repeats.values().map(|v| truncate_millis(v.1)).collect();
            sqlx::query(
                "UPDATE events SET occurrences = events.occurrences + u.n, last_seen = GREATEST(events.last_seen, u.s) \
                 FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(i, n, s) WHERE events.id = u.i",
            )
            .bind(&ids)
            .bind(&ns)
            .bind(&ls)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
    }
    insert_events(tx, &to_insert).await?;
    for r in results {
        out.ingested.push(r.ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!("an ingested event got no result"))
        })?);
    }
    Ok(())
}

/// One array per column, for an `unnest` insert.
#[derive(Default)]
struct EventColumns<'a> {
    id: Vec<Uuid>,
    status: Vec<&'a str>,
    source: Vec<&'a str>,
    source_kind: Vec<&'a str>,
    source_ref: Vec<Option<&'a str>>,
    rule_id: Vec<Option<&'a str>>,
    fingerprint: Vec<&'a str>,
    title: Vec<&'a str>,
    severity: Vec<&'a str>,
    host: Vec<Option<&'a str>>,
    occurred_at: Vec<OffsetDateTime>,
    received_at: Vec<OffsetDateTime>,
    last_seen: Vec<OffsetDateTime>,
    resolved_at: Vec<Option<OffsetDateTime>>,
    occurrences: Vec<i64>,
    reported_by: Vec<&'a str>,
    ticket_id: Vec<Option<Uuid>>,
    suppressed_by: Vec<Option<Uuid>>,
    data: Vec<String>,
    raw: Vec<&'a str>,
}

async fn insert_events(tx: &mut Tx<'_>, items: &[&NewEvent]) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut c = EventColumns::default();
    for item in items {
        let e = &item.event;
        c.id.push(e.id);
        c.status.push(e.status.as_str());
        c.source.push(&e.source);
        c.source_kind.push(e.source_kind.as_str());
        c.source_ref.push(e.source_ref.as_deref());
        c.rule_id.push(e.rule_id.as_deref());
        c.fingerprint.push(&e.fingerprint);
        c.title.push(&e.title);
        c.severity.push(e.severity.as_str());
        c.host.push(e.host.as_deref());
        c.occurred_at.push(truncate_millis(e.occurred_at));
        c.received_at.push(truncate_millis(e.received_at));
        c.last_seen.push(truncate_millis(e.last_seen));
        c.resolved_at.push(e.resolved_at.map(truncate_millis));
        c.occurrences.push(e.occurrences);
        c.reported_by.push(&e.reported_by);
        c.ticket_id.push(e.ticket_id.map(|t| t.as_uuid()));
        c.suppressed_by.push(e.suppressed_by);
        c.data.push(item.details()?.into_owned());
        c.raw.push(&e.raw);
    }
    sqlx::query(
        "INSERT INTO events (id, status, source, source_kind, source_ref, rule_id, fingerprint, title, severity, host, \
         occurred_at, received_at, last_seen, resolved_at, occurrences, reported_by, ticket_id, suppressed_by, data, raw, version) \
         SELECT *, 1 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::bigint[], \
         $16::text[], $17::uuid[], $18::uuid[], $19::text[], $20::text[])",
    )
    .bind(&c.id)
    .bind(&c.status)
    .bind(&c.source)
    .bind(&c.source_kind)
    .bind(&c.source_ref)
    .bind(&c.rule_id)
    .bind(&c.fingerprint)
    .bind(&c.title)
    .bind(&c.severity)
    .bind(&c.host)
    .bind(&c.occurred_at)
    .bind(&c.received_at)
    .bind(&c.last_seen)
    .bind(&c.resolved_at)
    .bind(&c.occurrences)
    .bind(&c.reported_by)
    .bind(&c.ticket_id)
    .bind(&c.suppressed_by)
    .bind(&c.data)
    .bind(&c.raw)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    // Observables: distinct, sorted by id (lock order), then the links.
    let mut obs: BTreeMap<Uuid, (&ObservableRef, OffsetDateTime)> = BTreeMap::new();
    let mut links: Vec<(Uuid, Uuid)> = Vec::new();
    for item in items {
        let e = &item.event;
        for o in &e.observables {
            let id = o.id();
            let at = truncate_millis(e.received_at);
            obs.entry(id)
                .and_modify(|v| v.1 = v.1.max(at))
                .or_insert((o, at));
            links.push((id, e.id));
        }
    }
    upsert_observables(tx, &obs).await?;
    if !links.is_empty() {
        links.sort();
        links.dedup();
        let (o, e): (Vec<Uuid>, Vec<Uuid>) = links.into_iter().unzip();
        sqlx::query(
            "INSERT INTO event_observables (observable_id, event_id) SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&o)
        .bind(&e)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    }
    Ok(())
}

async fn upsert_observables(
    tx: &mut Tx<'_>,
    obs: &BTreeMap<Uuid, (&ObservableRef, OffsetDateTime)>,
) -> StoreResult<()> {
    if obs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = obs.keys().copied().collect();
    let kinds: Vec<&str> = obs.values().map(|v| v.0.kind.as_str()).collect();
    let values: Vec<&str> = obs.values().map(|v| v.0.value.as_str()).collect();
    let ats: Vec<OffsetDateTime> = obs.values().map(|v| v.1).collect();
    sqlx::query(
        "INSERT INTO observables AS o (id, kind, value, first_seen, last_seen) \
         SELECT i, k, v, a, a FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS u(i, k, v, a) \
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen \
         WHERE excluded.last_seen > o.last_seen + interval '1 minute'",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&values)
    .bind(&ats)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

pub(crate) async fn link_ticket(
    tx: &mut Tx<'_>,
    ticket: TicketId,
    observables: &[ObservableRef],
    at: OffsetDateTime,
) -> StoreResult<()> {
    let at = truncate_millis(at);
    let obs: BTreeMap<Uuid, (&ObservableRef, OffsetDateTime)> =
        observables.iter().map(|o| (o.id(), (o, at))).collect();
    upsert_observables(tx, &obs).await?;
    let ids: Vec<Uuid> = obs.keys().copied().collect();
    sqlx::query(
        "INSERT INTO ticket_observables (ticket_id, observable_id, added_at) \
         SELECT $1, i, $3 FROM unnest($2::uuid[]) AS u(i) ON CONFLICT DO NOTHING",
    )
    .bind(ticket.as_uuid())
    .bind(&ids)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

/// Links observables to a stored event (`Op::LinkEventObservables`); `NotFound` without it.
pub(crate) async fn link_event(
    tx: &mut Tx<'_>,
    event: Uuid,
    observables: &[ObservableRef],
    at: OffsetDateTime,
) -> StoreResult<()> {
    let exists: Option<(i64,)> = sqlx::query_as("SELECT 1::bigint FROM events WHERE id = $1")
        .bind(event)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let at = truncate_millis(at);
    let obs: BTreeMap<Uuid, (&ObservableRef, OffsetDateTime)> =
        observables.iter().map(|o| (o.id(), (o, at))).collect();
    upsert_observables(tx, &obs).await?;
    let ids: Vec<Uuid> = obs.keys().copied().collect();
    sqlx::query(
        "INSERT INTO event_observables (observable_id, event_id) \
         SELECT i, $2 FROM unnest($1::uuid[]) AS u(i) ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(event)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

pub(crate) async fn update_event(
    tx: &mut Tx<'_>,
    e: &Event,
    expected_version: i64,
) -> StoreResult<()> {
    let res = sqlx::query(
        "UPDATE events SET status = $1, ticket_id = $2, suppressed_by = $3, resolved_at = $4, data = $5, \
         severity = $6, title = $7, version = version + 1 WHERE id = $8 AND version = $9",
    )
    .bind(e.status.as_str())
    .bind(e.ticket_id.map(|t| t.as_uuid()))
    .bind(e.suppressed_by)
    .bind(e.resolved_at.map(truncate_millis))
    .bind(e.details_json().map_err(|x| StoreError::Other(x.into()))?)
    .bind(e.severity.as_str())
    .bind(&e.title)
    .bind(e.id)
    .bind(expected_version)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    if res.rows_affected() == 0 {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT 1::bigint FROM events WHERE id = $1")
            .bind(e.id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(err)?;
        return Err(if exists.is_some() {
            StoreError::Conflict("the event was changed concurrently; retry".into())
        } else {
            StoreError::NotFound
        });
    }
    Ok(())
}

fn bad(col: &str, raw: &str) -> StoreError {
    StoreError::Other(anyhow::anyhow!("bad stored value {raw:?} in column {col}"))
}

fn event_row(row: &PgRow) -> StoreResult<(i64, Event)> {
    let g = |c: &str| -> StoreResult<String> { row.try_get(c).map_err(err) };
    let status = g("status")?;
    let sev = g("severity")?;
    let kind = g("source_kind")?;
    let data = g("data")?;
    let details: EventDetails = serde_json::from_str(&data).map_err(|_| bad("data", &data))?;
    let mut e = Event {
        id: row.try_get("id").map_err(err)?,
        status: EventStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        source: g("source")?,
        source_kind: SourceKind::parse(&kind).ok_or_else(|| bad("source_kind", &kind))?,
        source_ref: row.try_get("source_ref").map_err(err)?,
        rule_id: row.try_get("rule_id").map_err(err)?,
        title: g("title")?,
        description: None,
        severity: Severity::parse(&sev).ok_or_else(|| bad("severity", &sev))?,
        original_severity: None,
        occurred_at: row.try_get("occurred_at").map_err(err)?,
        received_at: row.try_get("received_at").map_err(err)?,
        last_seen: row.try_get("last_seen").map_err(err)?,
        occurrences: row.try_get("occurrences").map_err(err)?,
        host: row.try_get("host").map_err(err)?,
        observables: vec![],
        assets: vec![],
        tags: vec![],
        fingerprint: g("fingerprint")?,
        fields: serde_json::Map::new(),
        reporter: None,
        reported_by: g("reported_by")?,
        ticket_id: row
            .try_get::<Option<Uuid>, _>("ticket_id")
            .map_err(err)?
            .map(TicketId),
        suppressed_by: row.try_get("suppressed_by").map_err(err)?,
        classification: None,
        intel: vec![],
        disposition: None,
        resolved_at: row.try_get("resolved_at").map_err(err)?,
        raw: g("raw")?,
        version: row.try_get("version").map_err(err)?,
    };
    e.set_details(details);
    Ok((row.try_get("seq").map_err(err)?, e))
}

fn observable_row(row: &PgRow) -> StoreResult<ObservableRecord> {
    Ok(ObservableRecord {
        id: row.try_get("id").map_err(err)?,
        kind: row.try_get("kind").map_err(err)?,
        value: row.try_get("value").map_err(err)?,
        first_seen: row.try_get("first_seen").map_err(err)?,
        last_seen: row.try_get("last_seen").map_err(err)?,
        events: row.try_get("events").map_err(err)?,
        tickets: row.try_get("tickets").map_err(err)?,
    })
}

const OBSERVABLE_COLUMNS: &str = "SELECT o.id, o.kind, o.value, o.first_seen, o.last_seen, \
     (SELECT COUNT(*) FROM event_observables eo WHERE eo.observable_id = o.id) AS events, \
     (SELECT COUNT(*) FROM ticket_observables t WHERE t.observable_id = o.id) AS tickets FROM observables o";

#[async_trait]
impl EventStore for PgStore {
    async fn get_event(&self, id: Uuid) -> StoreResult<Event> {
        let row = sqlx::query("SELECT * FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        Ok(event_row(&row)?.1)
    }

    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<(i64, Event)>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM events WHERE true");
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(s) = &f.source {
            q.push(" AND source = ").push_bind(s.clone());
        }
        if let Some(t) = f.ticket_id {
            q.push(" AND ticket_id = ").push_bind(t.as_uuid());
        }
        if let Some(r) = &f.reported_by {
            q.push(" AND reported_by = ").push_bind(r.clone());
        }
        if let Some(r) = f.suppressed_by {
            q.push(" AND suppressed_by = ").push_bind(r);
        }
        if let Some(s) = f.severity {
            q.push(" AND severity = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.text {
            q.push(" AND title ILIKE ")
                .push_bind(format!("%{}%", like_escape(t)))
                .push(" ESCAPE '\\'");
        }
        if let Some(b) = f.before_seq {
            q.push(" AND seq < ").push_bind(b);
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(err)?;
        rows.iter().map(event_row).collect()
    }

    async fn count_events(&self) -> StoreResult<Vec<(EventStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(
                "SELECT status, SUM(n)::bigint FROM event_status_counts GROUP BY status HAVING SUM(n) <> 0",
            )
                .fetch_all(self.pool())
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| EventStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }

    async fn suppression_hits(&self) -> StoreResult<Vec<SuppressionHits>> {
        let rows: Vec<(Uuid, i64, i64, OffsetDateTime)> = sqlx::query_as(
            "SELECT rule_id, SUM(events)::bigint, SUM(occurrences)::bigint, MAX(last_hit) FROM suppression_stats \
             GROUP BY rule_id HAVING SUM(events) > 0",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(rule_id, events, occurrences, last_hit)| SuppressionHits {
                rule_id,
                events,
                occurrences,
                last_hit,
            })
            .collect())
    }

    async fn get_observable(&self, id: Uuid) -> StoreResult<ObservableRecord> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(OBSERVABLE_COLUMNS);
        q.push(" WHERE o.id = ").push_bind(id);
        let row = q
            .build()
            .fetch_optional(self.pool())
            .await
            .map_err(err)?
            .ok_or(StoreError::NotFound)?;
        observable_row(&row)
    }

    async fn list_observables(&self, f: &ObservableFilter) -> StoreResult<Vec<ObservableRecord>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(OBSERVABLE_COLUMNS);
        q.push(" WHERE true");
        if let Some(k) = &f.kind {
            q.push(" AND o.kind = ").push_bind(k.clone());
        }
        if let Some(t) = &f.text {
            q.push(" AND o.value ILIKE ")
                .push_bind(format!("%{}%", like_escape(t)))
                .push(" ESCAPE '\\'");
        }
        if let Some(t) = f.ticket_id {
            q.push(" AND o.id IN (SELECT observable_id FROM ticket_observables WHERE ticket_id = ")
                .push_bind(t.as_uuid())
                .push(")");
        }
        if let Some(e) = f.event_id {
            // an event's observables are in its record; the link table is indexed by observable
            let ids: Vec<Uuid> = match self.get_event(e).await {
                Ok(ev) => ev.observables.iter().map(ObservableRef::id).collect(),
                Err(StoreError::NotFound) => vec![],
                Err(x) => return Err(x),
            };
            q.push(" AND o.id = ANY(").push_bind(ids).push(")");
        }
        if let Some((ms, id)) = f.after {
            let at = from_millis(ms);
            q.push(" AND (o.last_seen, o.id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        q.push(" ORDER BY o.last_seen DESC, o.id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(err)?;
        rows.iter().map(observable_row).collect()
    }

    async fn observable_tickets(&self, id: Uuid) -> StoreResult<Vec<TicketId>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT ticket_id FROM ticket_observables WHERE observable_id = $1 ORDER BY added_at",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(|(t,)| TicketId(t)).collect())
    }

    async fn observable_events(&self, id: Uuid, limit: u32) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT e.id FROM event_observables eo JOIN events e ON e.id = eo.event_id \
             WHERE eo.observable_id = $1 ORDER BY e.seq DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }
}
