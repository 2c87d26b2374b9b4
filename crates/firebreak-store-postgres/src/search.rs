//! Search on PostgreSQL: `ILIKE ... ESCAPE '\'` over tickets, their incident-log entries,
//! events' plain columns and observables. The trigram indexes of migrations 0009 and 0020 (where
//! `pg_trgm` exists) make each pattern an index lookup; without them each part is a scan in its
//! order, stopped by its `LIMIT`.

use crate::rows::err;
use crate::{PgStore, push_involved};
use async_trait::async_trait;
use firebreak_domain::ids::TicketId;
use firebreak_store::{
    SearchField, SearchFilter, SearchHit, SearchPosition, SearchStore, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// The text of an incident-log entry (the same expression as the index of migration 0020).
const LOG_TEXT: &str = "(a.details::jsonb ->> 'text')";

/// Incident-log entries of ticket `t` (the predicate of that index).
const LOG_OF_TICKET: &str =
    " FROM audit_log a WHERE a.ticket_id = t.id AND a.action LIKE 'log.%' AND ";

fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(
    row: &'r PgRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(err)
}

fn field_of(s: &str) -> StoreResult<SearchField> {
    SearchField::parse(s)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad search field {s:?}")))
}

impl PgStore {
    async fn search_tickets(
        &self,
        f: &SearchFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SearchHit>> {
        let Some(scope) = &f.tickets else {
            return Ok(vec![]);
        };
        let pat = f.pattern();
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT t.id, t.number, t.title, ");
        // the field that matched first, and its text
        for (title, description, number, log) in [
            (
                "'title'",
                "'description'",
                "'number'",
                "'log' END AS field, ",
            ),
            ("t.title", "t.description", "t.title", ""),
        ] {
            q.push("CASE WHEN t.title ILIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(title)
                .push(" WHEN t.description ILIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(description)
                .push(" WHEN t.number = ")
                .push_bind(f.number)
                .push(" THEN ")
                .push(number)
                .push(" ELSE ")
                .push(log);
        }
        q.push("(SELECT ")
            .push(LOG_TEXT)
            .push(LOG_OF_TICKET)
            .push(LOG_TEXT)
            .push(" ILIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' ORDER BY a.seq LIMIT 1) END AS matched FROM tickets t WHERE (");
        q.push("t.title ILIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR t.description ILIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR t.number = ")
            .push_bind(f.number)
            .push(" OR EXISTS (SELECT 1")
            .push(LOG_OF_TICKET)
            .push(LOG_TEXT)
            .push(" ILIKE ")
            .push_bind(pat)
            .push(" ESCAPE '\\'))");
        if let Some(v) = &scope.visible_to {
            // as `list_tickets`, or one of the tickets visible besides
            let also: Vec<Uuid> = scope.also.iter().map(|t| t.0).collect();
            q.push(" AND (t.id = ANY(")
                .push_bind(also)
                .push(") OR (TRUE");
            if !v.restricted_ok {
                q.push(" AND (NOT t.restricted OR ");
                push_involved(&mut q, &v.username);
                q.push(")");
            }
            if v.only_own {
                q.push(" AND ");
                push_involved(&mut q, &v.username);
            }
            q.push("))");
        }
        if let Some(n) = after {
            q.push(" AND t.number < ").push_bind(n);
        }
        q.push(" ORDER BY t.number DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    position: SearchPosition::Ticket(get(r, "number")?),
                    id: get(r, "id")?,
                    title: get(r, "title")?,
                    field: field_of(&get::<String>(r, "field")?)?,
                    text: get::<Option<String>>(r, "matched")?.unwrap_or_default(),
                    reported_by: None,
                    ticket_id: None,
                    kind: None,
                })
            })
            .collect()
    }

    async fn search_events(
        &self,
        f: &SearchFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SearchHit>> {
        let Some(scope) = &f.events else {
            return Ok(vec![]);
        };
        let pat = f.pattern();
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT seq, id, title, reported_by, ticket_id, ");
        // the field that matched first, and its text
        for (then_title, then_host, otherwise) in [
            ("'title'", "'host'", "'source' END AS field, "),
            ("title", "host", "source END AS matched FROM events WHERE ("),
        ] {
            q.push("CASE WHEN title ILIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(then_title)
                .push(" WHEN host ILIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(then_host)
                .push(" ELSE ")
                .push(otherwise);
        }
        q.push("title ILIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR host ILIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR source ILIKE ")
            .push_bind(pat)
            .push(" ESCAPE '\\')");
        if let Some(r) = &scope.reported_by {
            q.push(" AND reported_by = ").push_bind(r.clone());
        }
        if let Some(s) = after {
            q.push(" AND seq < ").push_bind(s);
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    position: SearchPosition::Event(get(r, "seq")?),
                    id: get(r, "id")?,
                    title: get(r, "title")?,
                    field: field_of(&get::<String>(r, "field")?)?,
                    text: get::<Option<String>>(r, "matched")?.unwrap_or_default(),
                    reported_by: Some(get(r, "reported_by")?),
                    ticket_id: get::<Option<Uuid>>(r, "ticket_id")?.map(TicketId),
                    kind: None,
                })
            })
            .collect()
    }

    async fn search_observables(
        &self,
        f: &SearchFilter,
        limit: u32,
    ) -> StoreResult<Vec<SearchHit>> {
        if !f.observables {
            return Ok(vec![]);
        }
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT id, kind, value FROM observables WHERE value ILIKE ");
        q.push_bind(f.pattern()).push(" ESCAPE '\\'");
        if let Some((value, id)) = f.observables_after() {
            q.push(" AND (value, id) > (")
                .push_bind(value.to_string())
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY value, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(err)?;
        rows.iter()
            .map(|r| {
                let value: String = get(r, "value")?;
                let id: Uuid = get(r, "id")?;
                Ok(SearchHit {
                    position: SearchPosition::Observable {
                        value: value.clone(),
                        id,
                    },
                    id,
                    title: value.clone(),
                    field: SearchField::Value,
                    text: value,
                    reported_by: None,
                    ticket_id: None,
                    kind: Some(get(r, "kind")?),
                })
            })
            .collect()
    }
}

#[async_trait]
impl SearchStore for PgStore {
    async fn search(&self, f: &SearchFilter) -> StoreResult<Vec<SearchHit>> {
        let mut hits = Vec::new();
        if let Some(after) = f.tickets_after() {
            hits.extend(self.search_tickets(f, after, f.room(0)).await?);
        }
        if f.room(hits.len()) > 0
            && let Some(after) = f.events_after()
        {
            hits.extend(self.search_events(f, after, f.room(hits.len())).await?);
        }
        if f.room(hits.len()) > 0 {
            hits.extend(self.search_observables(f, f.room(hits.len())).await?);
        }
        Ok(hits)
    }
}
