//! Snapshots (`firebreak backup`, `restore`, `migrate-store`): export in one read transaction,
//! import on the writer's connection in one write transaction.

use crate::rows;
use firebreak_store::snapshot::{
    DERIVED, ImportReport, LEVELS, SnapshotItem, SnapshotSink, SnapshotSource, SqlValue, TABLES,
    check_table,
};
use firebreak_store::{StoreError, StoreResult};
use futures::TryStreamExt;
use rusqlite::Connection;
use sqlx::{Row, SqlitePool, TypeInfo, ValueRef};

fn sink_err(e: anyhow::Error) -> StoreError {
    StoreError::Other(e.context("writing the snapshot"))
}

/// A table's columns, in declaration order.
async fn columns(conn: &mut sqlx::SqliteConnection, table: &str) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(rows::err)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(rows::err))
        .collect()
}

fn value(row: &sqlx::sqlite::SqliteRow, i: usize) -> StoreResult<SqlValue> {
    let raw = row.try_get_raw(i).map_err(rows::err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" | "BOOLEAN" => SqlValue::Int(row.try_get::<i64, _>(i).map_err(rows::err)?),
        "REAL" => SqlValue::Real(row.try_get::<f64, _>(i).map_err(rows::err)?),
        "BLOB" => SqlValue::Blob(row.try_get::<Vec<u8>, _>(i).map_err(rows::err)?),
        _ => SqlValue::Text(row.try_get::<String, _>(i).map_err(rows::err)?),
    })
}

/// What the export selects for a column of `table` (read as `alias`).
///
/// A dedup key's `last_seen` is the time it moved to its event, or later: the SQLite writer
/// counts a repeat on the event's row alone (`writer::ingest_event`). A snapshot carries the
/// event's `last_seen` when it is later, as a backend that judges the window on the key's
/// own `last_seen` (PostgreSQL) needs it.
fn column_expr(table: &str, alias: &str, column: &str) -> String {
    if table == "event_dedup" && column == "last_seen" {
        format!(
            "max({alias}.\"last_seen\", COALESCE((SELECT e.last_seen FROM events e \
             WHERE e.id = {alias}.event_id), {alias}.\"last_seen\")) AS \"last_seen\""
        )
    } else {
        format!("{alias}.\"{column}\"")
    }
}

pub(crate) async fn export(
    read: &SqlitePool,
    packer: &crate::pack::Packer,
    sink: &mut dyn SnapshotSink,
) -> StoreResult<()> {
    let mut tx = read.begin().await.map_err(rows::err)?;
    // events go out unpacked (`pack.rs`): every dictionary this read may meet
    crate::pack::load_all_dicts(packer, &mut tx).await?;
    for &table in TABLES {
        let cols = columns(&mut tx, table).await?;
        if cols.is_empty() {
            return Err(StoreError::Other(anyhow::anyhow!(
                "table {table} is missing from the database"
            )));
        }
        sink.item(SnapshotItem::Table {
            name: table.to_string(),
            columns: cols.clone(),
        })
        .map_err(sink_err)?;
        let list = cols
            .iter()
            .map(|c| column_expr(table, "t", c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {list} FROM \"{table}\" t");
        // a second level's rows go out as rows of its table (a key is in one level only;
        // should one be in both, the merged level's row is the one exported)
        for (level, _, key) in LEVELS.iter().filter(|(_, of, _)| *of == table) {
            let key = same_key(key, "m", "r");
            let rlist = cols
                .iter()
                .map(|c| column_expr(table, "r", c))
                .collect::<Vec<_>>()
                .join(", ");
            sql.push_str(&format!(
                " UNION ALL SELECT {rlist} FROM \"{level}\" r \
                 WHERE NOT EXISTS (SELECT 1 FROM \"{table}\" m WHERE {key})"
            ));
        }
        // links in the inverted index (migration 0013) go out as event_observables rows: the
        // term is the observable's id in 32 hex digits, the doc the event's seq
        if table == "event_observables" {
            let term = "substr(v.term, 1, 8) || '-' || substr(v.term, 9, 4) || '-' || \
                        substr(v.term, 13, 4) || '-' || substr(v.term, 17, 4) || '-' || substr(v.term, 21)";
            let ilist = cols
                .iter()
                .map(|c| match c.as_str() {
                    "observable_id" => Ok(format!("{term} AS observable_id")),
                    "event_id" => Ok("e.id AS event_id".to_string()),
                    other => Err(StoreError::Other(anyhow::anyhow!(
                        "event_observables has an unexpected column {other}"
                    ))),
                })
                .collect::<StoreResult<Vec<_>>>()?
                .join(", ");
            sql.push_str(&format!(
                " UNION ALL SELECT {ilist} FROM event_observable_terms v JOIN events e ON e.seq = v.doc"
            ));
        }
        let texts = match table {
            "events" => Some((
                cols.iter().position(|c| c == "raw"),
                cols.iter().position(|c| c == "data"),
            )),
            _ => None,
        };
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        while let Some(row) = stream.try_next().await.map_err(rows::err)? {
            let mut values = Vec::with_capacity(row.columns().len());
            for i in 0..row.columns().len() {
                values.push(value(&row, i)?);
            }
            if let Some((Some(r), Some(d))) = texts {
                let (raw, data) = rows::event_texts(&row, packer)?;
                values[r] = SqlValue::Text(raw);
                values[d] = SqlValue::Text(data);
            }
            sink.item(SnapshotItem::Row(values)).map_err(sink_err)?;
        }
        drop(stream);
        sink.item(SnapshotItem::EndTable).map_err(sink_err)?;
    }
    tx.rollback().await.map_err(rows::err)?;
    Ok(())
}

fn to_sql(v: SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}

fn bad(msg: String) -> StoreError {
    StoreError::Other(anyhow::anyhow!(msg))
}

/// Runs on the writer's connection: everything in one `BEGIN IMMEDIATE`, foreign keys checked
/// before COMMIT.
pub(crate) fn import(
    conn: &mut Connection,
    mut source: Box<dyn SnapshotSource>,
) -> StoreResult<ImportReport> {
    // foreign keys are checked once, at the end: rows arrive table by table
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(crate::writer::err)?;
    let result = (|| {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(crate::writer::err)?;
        let levels = LEVELS.iter().map(|(level, _, _)| level);
        for t in TABLES.iter().chain(DERIVED).rev().chain(levels) {
            tx.execute(&format!("DELETE FROM \"{t}\""), [])
                .map_err(crate::writer::err)?;
        }
        // restored links go into event_observables; the inverted index starts empty (made
        // anew: FTS5's `delete-all` left an index its integrity check calls corrupt)
        let fts: Vec<(String, String)> = {
            let mut q = tx
                .prepare(
                    "SELECT name, sql FROM sqlite_schema WHERE type = 'table' \
                     AND name IN ('event_observable_index', 'event_observable_terms') ORDER BY name",
                )
                .map_err(crate::writer::err)?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(crate::writer::err)?
        };
        if fts.len() != 2 {
            return Err(bad(
                "the event-observable index is missing from the database".into(),
            ));
        }
        // the vocabulary table reads the index: dropped first, made last
        for (name, _) in fts.iter().rev() {
            tx.execute(&format!("DROP TABLE \"{name}\""), [])
                .map_err(crate::writer::err)?;
        }
        for (_, sql) in &fts {
            tx.execute(sql, []).map_err(crate::writer::err)?;
        }
        let mut report = ImportReport::default();
        let mut current: Option<(String, Vec<String>, u64)> = None;
        let mut done = std::collections::HashSet::new();
        while let Some(item) = source
            .next_item()
            .map_err(|e| StoreError::Other(e.context("reading the snapshot")))?
        {
            match item {
                SnapshotItem::Table { name, columns } => {
                    if current.is_some() {
                        return Err(bad(format!("table {name} starts inside another table")));
                    }
                    check_table(&name, &columns).map_err(bad)?;
                    if !done.insert(name.clone()) {
                        return Err(bad(format!("table {name} appears twice")));
                    }
                    let known: Vec<String> = {
                        let mut st = tx
                            .prepare("SELECT name FROM pragma_table_info(?1)")
                            .map_err(crate::writer::err)?;
                        st.query_map([&name], |r| r.get::<_, String>(0))
                            .map_err(crate::writer::err)?
                            .collect::<Result<_, _>>()
                            .map_err(crate::writer::err)?
                    };
                    if let Some(c) = columns.iter().find(|c| !known.contains(c)) {
                        return Err(bad(format!(
                            "the snapshot's table {name} has a column this version does not know: {c}"
                        )));
                    }
                    current = Some((name, columns, 0));
                }
                SnapshotItem::Row(values) => {
                    let Some((name, columns, n)) = current.as_mut() else {
                        return Err(bad("a row outside any table".into()));
                    };
                    if values.len() != columns.len() {
                        return Err(bad(format!(
                            "table {name}, row {}: {} values for {} columns",
                            *n + 1,
                            values.len(),
                            columns.len()
                        )));
                    }
                    // snapshots carry events as text: a packed one (a backup an older binary
                    // took of a newer database) could never be read here
                    if name == "events"
                        && columns.iter().zip(&values).any(|(c, v)| {
                            (c == "raw" || c == "data") && matches!(v, SqlValue::Blob(_))
                        })
                    {
                        return Err(bad(format!(
                            "table events, row {}: a compressed event; take the backup with the \
                             Firebreak that wrote the database",
                            *n + 1
                        )));
                    }
                    let sql = format!(
                        "INSERT INTO \"{name}\" ({}) VALUES ({})",
                        columns
                            .iter()
                            .map(|c| format!("\"{c}\""))
                            .collect::<Vec<_>>()
                            .join(", "),
                        (1..=columns.len())
                            .map(|i| format!("?{i}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    let mut st = tx.prepare_cached(&sql).map_err(crate::writer::err)?;
                    st.execute(rusqlite::params_from_iter(values.into_iter().map(to_sql)))
                        .map_err(|e| {
                            let e = crate::writer::err(e);
                            bad(format!("table {name}, row {}: {e}", *n + 1))
                        })?;
                    *n += 1;
                }
                SnapshotItem::EndTable => {
                    let Some((name, _, n)) = current.take() else {
                        return Err(bad("end of a table that did not start".into()));
                    };
                    report.tables.push((name, n));
                }
                // SQLite numbers tickets with MAX(number) + 1: no sequence to set
                SnapshotItem::Sequence { .. } => {}
            }
        }
        if let Some((name, _, _)) = current {
            return Err(bad(format!("the snapshot ends inside table {name}")));
        }
        if let Some(t) = TABLES.iter().find(|t| !done.contains(**t)) {
            return Err(bad(format!("the snapshot lacks table {t} (cut short?)")));
        }
        // the queue's counters, once for all the events (no insert trigger: migration 0015)
        tx.execute_batch(
            "INSERT INTO event_status_counts (status, n) SELECT status, COUNT(*) FROM events GROUP BY status; \
             INSERT INTO suppression_stats (rule_id, events, occurrences, last_hit) \
               SELECT suppressed_by, COUNT(*), SUM(occurrences), MAX(last_seen) FROM events \
               WHERE suppressed_by IS NOT NULL GROUP BY suppressed_by;",
        )
        .map_err(crate::writer::err)?;
        let broken: Vec<String> = {
            let mut st = tx
                .prepare("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 10")
                .map_err(crate::writer::err)?;
            st.query_map([], |r| {
                Ok(format!(
                    "{} row {} points at a missing {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?.unwrap_or_default(),
                    r.get::<_, String>(2)?
                ))
            })
            .map_err(crate::writer::err)?
            .collect::<Result<_, _>>()
            .map_err(crate::writer::err)?
        };
        if !broken.is_empty() {
            return Err(bad(format!(
                "the snapshot breaks foreign keys: {}",
                broken.join("; ")
            )));
        }
        tx.commit().map_err(crate::writer::err)?;
        Ok(report)
    })();
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(crate::writer::err)?;
    result
}

/// `integrity_check`, `foreign_key_check` and the counters against the events.
pub(crate) async fn integrity_check(read: &SqlitePool) -> StoreResult<Vec<String>> {
    let mut problems: Vec<String> = sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
        .fetch_all(read)
        .await
        .map_err(rows::err)?
        .into_iter()
        .filter(|r| r != "ok")
        .collect();
    let fk = sqlx::query("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
        .fetch_all(read)
        .await
        .map_err(rows::err)?;
    for r in fk.iter().take(20) {
        problems.push(format!(
            "foreign key: {} row {} points at a missing {}",
            r.try_get::<String, _>(0).map_err(rows::err)?,
            r.try_get::<Option<i64>, _>(1)
                .map_err(rows::err)?
                .unwrap_or_default(),
            r.try_get::<String, _>(2).map_err(rows::err)?
        ));
    }
    let counts = sqlx::query(
        "SELECT e.status, e.n, COALESCE(c.n, 0) FROM \
           (SELECT status, COUNT(*) AS n FROM events GROUP BY status) e \
           LEFT JOIN event_status_counts c ON c.status = e.status \
         WHERE e.n <> COALESCE(c.n, 0) \
         UNION ALL SELECT c.status, 0, c.n FROM event_status_counts c \
           WHERE c.n <> 0 AND NOT EXISTS (SELECT 1 FROM events WHERE status = c.status)",
    )
    .fetch_all(read)
    .await
    .map_err(rows::err)?;
    for r in &counts {
        problems.push(format!(
            "event counter {:?} says {} but {} events have that status",
            r.try_get::<String, _>(0).map_err(rows::err)?,
            r.try_get::<i64, _>(2).map_err(rows::err)?,
            r.try_get::<i64, _>(1).map_err(rows::err)?
        ));
    }
    // a key is in one level only (an older process beside a newer one could break that)
    for (level, table, key) in LEVELS {
        let on = same_key(key, "l", "t");
        let both: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{level}\" l JOIN \"{table}\" t ON {on}"
        )))
        .fetch_one(read)
        .await
        .map_err(rows::err)?;
        if both > 0 {
            problems.push(format!(
                "{both} rows of {level} are also in {table} (a key belongs to one level)"
            ));
        }
    }
    Ok(problems)
}

/// `a` and `b` hold the same key. Observables' levels are indexed on the id's first 8
/// characters (migrations 0019 and 0021), so an `id` is compared through that prefix too.
fn same_key(key: &[&str], a: &str, b: &str) -> String {
    key.iter()
        .map(|c| match *c {
            "id" => format!("substr({a}.id, 1, 8) = substr({b}.id, 1, 8) AND {a}.id = {b}.id"),
            c => format!("{a}.\"{c}\" = {b}.\"{c}\""),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub(crate) async fn holds_data(read: &SqlitePool) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1)) \
              + (SELECT COUNT(*) FROM (SELECT 1 FROM tickets LIMIT 1)) \
              + (SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT 1)) \
              + (SELECT COUNT(*) FROM (SELECT 1 FROM audit_log LIMIT 1))",
    )
    .fetch_one(read)
    .await
    .map_err(rows::err)?;
    Ok(n > 0)
}
