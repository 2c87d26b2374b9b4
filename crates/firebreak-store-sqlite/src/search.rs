//! Search on SQLite: `LIKE ... ESCAPE '\'` (case-insensitive for ASCII) over tickets, their
//! incident-log entries, events' plain columns and both levels of observables, through the
//! read-only pool. No index helps a `'%text%'` pattern here: each part is a scan in its order,
//! stopped by its `LIMIT`. Events' packed `data`/`raw` are never searched.

use crate::{SqliteStore, push_involved, rows};
use async_trait::async_trait;
use firebreak_store::{
    SearchField, SearchFilter, SearchHit, SearchPosition, SearchStore, StoreError, StoreResult,
};
use sqlx::{QueryBuilder, Row, Sqlite};

/// An incident-log entry of ticket `t` whose text matches.
const LOG_MATCH: &str = "SELECT a.details FROM audit_log a WHERE a.ticket_id = t.id \
     AND a.action LIKE 'log.%' AND json_valid(a.details) \
     AND json_extract(a.details, '$.text') LIKE ";

fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    row: &'r sqlx::sqlite::SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(rows::err)
}

fn uuid_of(s: &str) -> StoreResult<uuid::Uuid> {
    s.parse()
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad id {s:?} in a search row: {e}")))
}

fn field_of(s: &str) -> StoreResult<SearchField> {
    SearchField::parse(s)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad search field {s:?}")))
}

impl SqliteStore {
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT t.id, t.number, t.title, ");
        // the field that matched first, and its text
        q.push("CASE WHEN t.title LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' THEN 'title' WHEN t.description LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' THEN 'description' WHEN t.number = ")
            .push_bind(f.number)
            .push(" THEN 'number' ELSE 'log' END AS field, ");
        q.push("CASE WHEN t.title LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' THEN t.title WHEN t.description LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' THEN t.description WHEN t.number = ")
            .push_bind(f.number)
            .push(" THEN t.title ELSE (SELECT json_extract(l.details, '$.text') FROM (")
            .push(LOG_MATCH)
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' ORDER BY a.seq LIMIT 1) l) END AS matched FROM tickets t WHERE (");
        q.push("t.title LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR t.description LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR t.number = ")
            .push_bind(f.number)
            .push(" OR EXISTS (")
            .push(LOG_MATCH)
            .push_bind(pat)
            .push(" ESCAPE '\\'))");
        if let Some(v) = &scope.visible_to {
            // as `list_tickets`, or one of the tickets visible besides
            q.push(" AND (t.id IN (NULL");
            for id in &scope.also {
                q.push(", ").push_bind(id.to_string());
            }
            q.push(") OR (1 = 1");
            if !v.restricted_ok {
                q.push(" AND (t.restricted = 0 OR ");
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
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter()
            .map(|r| {
                let number: i64 = get(r, "number")?;
                Ok(SearchHit {
                    position: SearchPosition::Ticket(number),
                    id: uuid_of(&get::<String>(r, "id")?)?,
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
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT seq, id, title, reported_by, ticket_id, ");
        // the field that matched first, and its text
        for (then_title, then_host, otherwise) in [
            ("'title'", "'host'", "'source' END AS field, "),
            ("title", "host", "source END AS matched FROM events WHERE ("),
        ] {
            q.push("CASE WHEN title LIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(then_title)
                .push(" WHEN host LIKE ")
                .push_bind(pat.clone())
                .push(" ESCAPE '\\' THEN ")
                .push(then_host)
                .push(" ELSE ")
                .push(otherwise);
        }
        q.push("title LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR host LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR source LIKE ")
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
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter()
            .map(|r| {
                let ticket: Option<String> = get(r, "ticket_id")?;
                Ok(SearchHit {
                    position: SearchPosition::Event(get(r, "seq")?),
                    id: uuid_of(&get::<String>(r, "id")?)?,
                    title: get(r, "title")?,
                    field: field_of(&get::<String>(r, "field")?)?,
                    text: get::<Option<String>>(r, "matched")?.unwrap_or_default(),
                    reported_by: Some(get(r, "reported_by")?),
                    ticket_id: ticket
                        .as_deref()
                        .map(uuid_of)
                        .transpose()?
                        .map(firebreak_domain::ids::TicketId),
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, kind, value FROM (SELECT id, kind, value FROM observables \
             UNION ALL SELECT id, kind, value FROM observable_pending) WHERE value LIKE ",
        );
        q.push_bind(f.pattern()).push(" ESCAPE '\\'");
        if let Some((value, id)) = f.observables_after() {
            q.push(" AND (value > ")
                .push_bind(value.to_string())
                .push(" OR (value = ")
                .push_bind(value.to_string())
                .push(" AND id > ")
                .push_bind(id.to_string())
                .push("))");
        }
        q.push(" ORDER BY value, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(rows::err)?;
        rows.iter()
            .map(|r| {
                let value: String = get(r, "value")?;
                let id = uuid_of(&get::<String>(r, "id")?)?;
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
impl SearchStore for SqliteStore {
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
