//! Snapshots (`firebreak backup`, `restore`, `migrate-store`) on PostgreSQL: export in one
//! `REPEATABLE READ READ ONLY` transaction, import in one transaction, both converting each
//! column between its PostgreSQL type and the shared form of [`firebreak_store::snapshot`].

use crate::rows::err;
use firebreak_store::snapshot::{
    DERIVED, ImportReport, SnapshotItem, SnapshotSink, SnapshotSource, SqlValue, TABLES,
    check_table,
};
use firebreak_store::{StoreError, StoreResult};
use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool, Row};

/// Columns only PostgreSQL has, left out of snapshots, and the column a restore fills them from.
const PG_ONLY: &[(&str, &str, &str)] = &[("event_dedup", "window_start", "last_seen")];

/// Sequences a restore sets past the largest value in use (and past the snapshot's value).
const SEQUENCES: &[(&str, &str, &str)] = &[
    ("ticket_number_seq", "tickets", "number"),
    ("events_seq_seq", "events", "seq"),
    ("indicators_pos_seq", "indicators", "pos"),
];

/// How a column travels.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Int2,
    Int4,
    Int8,
    Bool,
    Timestamp,
    Uuid,
    Text,
    TextArray,
    Bytes,
}

impl Kind {
    fn of(udt: &str) -> Option<Kind> {
        Some(match udt {
            "int2" => Kind::Int2,
            "int4" => Kind::Int4,
            "int8" => Kind::Int8,
            "bool" => Kind::Bool,
            "timestamptz" => Kind::Timestamp,
            "uuid" => Kind::Uuid,
            "text" => Kind::Text,
            "_text" => Kind::TextArray,
            "bytea" => Kind::Bytes,
            _ => return None,
        })
    }

    /// The expression that reads the column in the shared form.
    fn export(self, c: &str) -> String {
        match self {
            Kind::Int2 | Kind::Int4 => format!("\"{c}\"::int8"),
            Kind::Bool => format!("\"{c}\"::int4::int8"),
            Kind::Int8 | Kind::Text | Kind::Bytes => format!("\"{c}\""),
            Kind::Timestamp => format!("floor(extract(epoch from \"{c}\") * 1000)::int8"),
            Kind::Uuid => format!("\"{c}\"::text"),
            Kind::TextArray => format!("array_to_json(\"{c}\")::text"),
        }
    }

    /// The expression that turns the unnested parameter `p` into the column's type.
    fn import(self, p: &str) -> String {
        match self {
            Kind::Int2 => format!("{p}::int2"),
            Kind::Int4 => format!("{p}::int4"),
            Kind::Int8 | Kind::Text | Kind::Bytes => p.to_string(),
            Kind::Bool => format!("({p} <> 0)"),
            Kind::Timestamp => format!("('epoch'::timestamptz + {p} * interval '1 millisecond')"),
            Kind::Uuid => format!("{p}::uuid"),
            Kind::TextArray => format!(
                "CASE WHEN {p} IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text({p}::jsonb)) END"
            ),
        }
    }

    fn param(self) -> Param {
        match self {
            Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Bool | Kind::Timestamp => Param::Int,
            Kind::Uuid | Kind::Text | Kind::TextArray => Param::Text,
            Kind::Bytes => Param::Bytes,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Param {
    Int,
    Text,
    Bytes,
}

/// The table's columns and their kinds, in declaration order.
async fn columns(conn: &mut PgConnection, table: &str) -> StoreResult<Vec<(String, Kind)>> {
    let rows = sqlx::query(
        "SELECT column_name::text, udt_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get(0).map_err(err)?;
        let udt: String = r.try_get(1).map_err(err)?;
        let kind = Kind::of(&udt).ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!(
                "{table}.{name}: type {udt} has no snapshot form"
            ))
        })?;
        out.push((name, kind));
    }
    if out.is_empty() {
        return Err(StoreError::Other(anyhow::anyhow!(
            "table {table} is missing from the database"
        )));
    }
    Ok(out)
}

fn sink_err(e: anyhow::Error) -> StoreError {
    StoreError::Other(e.context("writing the snapshot"))
}

pub(crate) async fn export(pool: &PgPool, sink: &mut dyn SnapshotSink) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    for &table in TABLES {
        let cols: Vec<(String, Kind)> = columns(&mut tx, table)
            .await?
            .into_iter()
            .filter(|(c, _)| !PG_ONLY.iter().any(|p| p.0 == table && p.1 == c))
            .collect();
        sink.item(SnapshotItem::Table {
            name: table.to_string(),
            columns: cols.iter().map(|c| c.0.clone()).collect(),
        })
        .map_err(sink_err)?;
        let list = cols
            .iter()
            .map(|(c, k)| k.export(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {list} FROM \"{table}\"");
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        while let Some(row) = stream.try_next().await.map_err(err)? {
            let mut values = Vec::with_capacity(cols.len());
            for (i, (_, k)) in cols.iter().enumerate() {
                values.push(match k.param() {
                    Param::Int => row
                        .try_get::<Option<i64>, _>(i)
                        .map_err(err)?
                        .map_or(SqlValue::Null, SqlValue::Int),
                    Param::Text => row
                        .try_get::<Option<String>, _>(i)
                        .map_err(err)?
                        .map_or(SqlValue::Null, SqlValue::Text),
                    Param::Bytes => row
                        .try_get::<Option<Vec<u8>>, _>(i)
                        .map_err(err)?
                        .map_or(SqlValue::Null, SqlValue::Blob),
                });
            }
            sink.item(SnapshotItem::Row(values)).map_err(sink_err)?;
        }
        drop(stream);
        sink.item(SnapshotItem::EndTable).map_err(sink_err)?;
    }
    let (last, called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM ticket_number_seq")
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
    sink.item(SnapshotItem::Sequence {
        name: "ticket_number_seq".into(),
        value: if called { last } else { last - 1 },
    })
    .map_err(sink_err)?;
    tx.rollback().await.map_err(err)?;
    Ok(())
}

fn bad(msg: String) -> StoreError {
    StoreError::Other(anyhow::anyhow!(msg))
}

/// Rows of one table gathered for one `INSERT ... SELECT FROM UNNEST(...)`.
struct Batch {
    table: String,
    columns: Vec<(String, Kind)>,
    /// Columns filled from another column (`PG_ONLY`): (target, source index).
    fills: Vec<(String, usize)>,
    ints: Vec<Vec<Option<i64>>>,
    texts: Vec<Vec<Option<String>>>,
    bytes: Vec<Vec<Option<Vec<u8>>>>,
    /// Per column: which vector and its index there.
    slots: Vec<(Param, usize)>,
    rows: usize,
    weight: usize,
    total: u64,
}

const BATCH_ROWS: usize = 2_000;
const BATCH_BYTES: usize = 16 << 20;

impl Batch {
    fn new(table: String, columns: Vec<(String, Kind)>, fills: Vec<(String, usize)>) -> Self {
        let mut slots = Vec::new();
        let (mut i, mut t, mut b) = (0, 0, 0);
        for (_, k) in &columns {
            let p = k.param();
            let n = match p {
                Param::Int => &mut i,
                Param::Text => &mut t,
                Param::Bytes => &mut b,
            };
            slots.push((p, *n));
            *n += 1;
        }
        Batch {
            table,
            columns,
            fills,
            ints: vec![Vec::new(); i],
            texts: vec![Vec::new(); t],
            bytes: vec![Vec::new(); b],
            slots,
            rows: 0,
            weight: 0,
            total: 0,
        }
    }

    fn push(&mut self, values: Vec<SqlValue>) -> StoreResult<()> {
        let row = self.total + self.rows as u64 + 1;
        if values.len() != self.columns.len() {
            return Err(bad(format!(
                "table {}, row {row}: {} values for {} columns",
                self.table,
                values.len(),
                self.columns.len()
            )));
        }
        for (i, v) in values.into_iter().enumerate() {
            self.weight += v.weight();
            let (p, at) = self.slots[i];
            let wrong = |v: &SqlValue| {
                bad(format!(
                    "table {}, row {row}, column {}: a {} value where {:?} was expected",
                    self.table,
                    self.columns[i].0,
                    v.kind(),
                    self.columns[i].1
                ))
            };
            match (p, v) {
                (Param::Int, SqlValue::Null) => self.ints[at].push(None),
                (Param::Int, SqlValue::Int(n)) => self.ints[at].push(Some(n)),
                (Param::Text, SqlValue::Null) => self.texts[at].push(None),
                (Param::Text, SqlValue::Text(s)) => self.texts[at].push(Some(s)),
                (Param::Bytes, SqlValue::Null) => self.bytes[at].push(None),
                (Param::Bytes, SqlValue::Blob(b)) => self.bytes[at].push(Some(b)),
                (Param::Bytes, SqlValue::Text(s)) => self.bytes[at].push(Some(s.into_bytes())),
                (_, v) => return Err(wrong(&v)),
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn full(&self) -> bool {
        self.rows >= BATCH_ROWS || self.weight >= BATCH_BYTES
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut params = Vec::new();
        let mut exprs = Vec::new();
        for (i, (_, k)) in self.columns.iter().enumerate() {
            params.push(format!(
                "${}::{}[]",
                i + 1,
                match k.param() {
                    Param::Int => "int8",
                    Param::Text => "text",
                    Param::Bytes => "bytea",
                }
            ));
            exprs.push(k.import(&format!("u.c{i}")));
        }
        let mut names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.0))
            .collect();
        for (target, from) in &self.fills {
            names.push(format!("\"{target}\""));
            exprs.push(self.columns[*from].1.import(&format!("u.c{from}")));
        }
        let sql = format!(
            "INSERT INTO \"{}\" ({}) SELECT {} FROM UNNEST({}) AS u({})",
            self.table,
            names.join(", "),
            exprs.join(", "),
            params.join(", "),
            (0..self.columns.len())
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (p, at) in &self.slots {
            q = match p {
                Param::Int => q.bind(std::mem::take(&mut self.ints[*at])),
                Param::Text => q.bind(std::mem::take(&mut self.texts[*at])),
                Param::Bytes => q.bind(std::mem::take(&mut self.bytes[*at])),
            };
        }
        q.execute(&mut *conn).await.map_err(|e| {
            bad(format!(
                "table {}, rows {}-{}: {}",
                self.table,
                self.total + 1,
                self.total + self.rows as u64,
                err(e)
            ))
        })?;
        self.total += self.rows as u64;
        self.rows = 0;
        self.weight = 0;
        Ok(())
    }
}

pub(crate) async fn import(
    pool: &PgPool,
    mut source: Box<dyn SnapshotSource>,
) -> StoreResult<ImportReport> {
    let mut tx = pool.begin().await.map_err(err)?;
    // foreign keys are checked at COMMIT where they can be deferred; rows come parents first
    let all = TABLES
        .iter()
        .chain(DERIVED)
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {all}")))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    let mut report = ImportReport::default();
    let mut current: Option<Batch> = None;
    let mut done = std::collections::HashSet::new();
    let mut sequences: Vec<(String, i64)> = Vec::new();
    let mut pending: std::collections::VecDeque<SnapshotItem> = Default::default();
    let mut ended = false;
    loop {
        if pending.is_empty() && !ended {
            // the source reads a file: off the async threads, a chunk at a time
            let (chunk, back) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::new();
                let r = (|| {
                    while chunk.len() < 1024 {
                        match source.next_item()? {
                            Some(i) => chunk.push(i),
                            None => return Ok(true),
                        }
                    }
                    Ok::<bool, anyhow::Error>(false)
                })();
                (r.map(|end| (chunk, end)), source)
            })
            .await
            .map_err(|e| bad(format!("reading the snapshot: {e}")))?;
            source = back;
            let (chunk, end) =
                chunk.map_err(|e| StoreError::Other(e.context("reading the snapshot")))?;
            pending.extend(chunk);
            ended = end;
        }
        let Some(item) = pending.pop_front() else {
            break;
        };
        match item {
            SnapshotItem::Table {
                name,
                columns: cols,
            } => {
                if current.is_some() {
                    return Err(bad(format!("table {name} starts inside another table")));
                }
                check_table(&name, &cols).map_err(bad)?;
                if !done.insert(name.clone()) {
                    return Err(bad(format!("table {name} appears twice")));
                }
                let known = columns(&mut tx, &name).await?;
                let mut typed = Vec::new();
                for c in &cols {
                    match known.iter().find(|k| &k.0 == c) {
                        Some(k) => typed.push(k.clone()),
                        None => {
                            return Err(bad(format!(
                                "the snapshot's table {name} has a column this version does not know: {c}"
                            )));
                        }
                    }
                }
                let mut fills = Vec::new();
                for (t, target, from) in PG_ONLY {
                    if *t == name && !cols.iter().any(|c| c == target) {
                        let at = cols.iter().position(|c| c == from).ok_or_else(|| {
                            bad(format!("table {name}: {target} needs column {from}"))
                        })?;
                        fills.push((target.to_string(), at));
                    }
                }
                current = Some(Batch::new(name, typed, fills));
            }
            SnapshotItem::Row(values) => {
                let Some(b) = current.as_mut() else {
                    return Err(bad("a row outside any table".into()));
                };
                b.push(values)?;
                if b.full() {
                    b.flush(&mut tx).await?;
                }
            }
            SnapshotItem::EndTable => {
                let Some(mut b) = current.take() else {
                    return Err(bad("end of a table that did not start".into()));
                };
                b.flush(&mut tx).await?;
                report.tables.push((b.table, b.total));
            }
            SnapshotItem::Sequence { name, value } => sequences.push((name, value)),
        }
    }
    if let Some(b) = current {
        return Err(bad(format!("the snapshot ends inside table {}", b.table)));
    }
    if let Some(t) = TABLES.iter().find(|t| !done.contains(**t)) {
        return Err(bad(format!("the snapshot lacks table {t} (cut short?)")));
    }
    for (seq, table, col) in SEQUENCES {
        let given = sequences
            .iter()
            .filter(|s| s.0 == *seq)
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CASE WHEN v > 0 THEN setval('{seq}', v, true) ELSE setval('{seq}', 1, false) END \
             FROM (SELECT GREATEST(COALESCE(MAX(\"{col}\"), 0), $1) AS v FROM \"{table}\") m"
        )))
        .bind(given)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(report)
}

/// The maintained counters against the events they count (foreign keys are enforced).
pub(crate) async fn integrity_check(pool: &PgPool) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(
        "WITH e AS (SELECT status, COUNT(*) AS n FROM events GROUP BY status), \
              c AS (SELECT status, SUM(n)::int8 AS n FROM event_status_counts GROUP BY status) \
         SELECT COALESCE(e.status, c.status), COALESCE(e.n, 0)::int8, COALESCE(c.n, 0)::int8 \
         FROM e FULL JOIN c ON c.status = e.status WHERE COALESCE(e.n, 0) <> COALESCE(c.n, 0)",
    )
    .fetch_all(pool)
    .await
    .map_err(err)?;
    let mut problems = Vec::new();
    for r in &rows {
        problems.push(format!(
            "event counter {:?} says {} but {} events have that status",
            r.try_get::<String, _>(0).map_err(err)?,
            r.try_get::<i64, _>(2).map_err(err)?,
            r.try_get::<i64, _>(1).map_err(err)?
        ));
    }
    let head = sqlx::query(
        "SELECT h.seq, COALESCE((SELECT MAX(seq) FROM audit_log), 0) FROM audit_head h \
         WHERE h.seq <> COALESCE((SELECT MAX(seq) FROM audit_log), 0)",
    )
    .fetch_all(pool)
    .await
    .map_err(err)?;
    for r in &head {
        problems.push(format!(
            "audit head says entry {} but the newest entry is {}",
            r.try_get::<i64, _>(0).map_err(err)?,
            r.try_get::<i64, _>(1).map_err(err)?
        ));
    }
    Ok(problems)
}

pub(crate) async fn holds_data(pool: &PgPool) -> StoreResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM tickets) \
             OR EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM audit_log)",
    )
    .fetch_one(pool)
    .await
    .map_err(err)
}
