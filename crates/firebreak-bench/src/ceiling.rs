//! The ceilings the intake is compared with, measured in the same run on the same file, one
//! thread: serde_json into a borrowed typed struct of the main EVE fields (PERFORMANCE.md d1),
//! and into `serde_json::Value` (d3); and beside them FB-6, the intake's own EVE reader
//! (`firebreak_intake::eve::parse_line`: parse and normalise into events with their fields and
//! observables, no storage) on one thread.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

#[derive(Deserialize)]
struct BareEve<'a> {
    #[serde(borrow)]
    timestamp: &'a str,
    flow_id: u64,
    #[serde(borrow)]
    in_iface: &'a str,
    #[serde(borrow)]
    event_type: &'a str,
    #[serde(borrow)]
    src_ip: &'a str,
    src_port: u16,
    #[serde(borrow)]
    dest_ip: &'a str,
    dest_port: u16,
    #[serde(borrow)]
    proto: &'a str,
    #[serde(borrow, default)]
    app_proto: Option<&'a str>,
    #[serde(borrow)]
    host: &'a str,
    #[serde(borrow, default)]
    alert: Option<BareAlert<'a>>,
    #[serde(borrow, default)]
    http: Option<BareHttp<'a>>,
}

#[derive(Deserialize)]
struct BareAlert<'a> {
    #[serde(borrow)]
    action: &'a str,
    gid: u32,
    signature_id: u64,
    rev: u32,
    #[serde(borrow)]
    signature: &'a str,
    #[serde(borrow)]
    category: &'a str,
    severity: u8,
    #[serde(borrow, default)]
    metadata: Option<BareMeta<'a>>,
}

#[derive(Deserialize)]
struct BareMeta<'a> {
    #[serde(borrow, default)]
    signature_severity: Vec<&'a str>,
}

#[derive(Deserialize)]
struct BareHttp<'a> {
    #[serde(borrow, default)]
    hostname: Option<&'a str>,
    #[serde(borrow, default)]
    url: Option<&'a str>,
    #[serde(borrow, default)]
    http_user_agent: Option<&'a str>,
    #[serde(borrow, default)]
    http_method: Option<&'a str>,
    #[serde(default)]
    status: Option<u16>,
}

impl BareEve<'_> {
    /// Touches every field so that none is optimized away.
    fn weight(&self) -> u64 {
        let mut w = self.timestamp.len()
            + self.in_iface.len()
            + self.event_type.len()
            + self.src_ip.len()
            + self.dest_ip.len()
            + self.proto.len()
            + self.app_proto.map_or(0, str::len)
            + self.host.len();
        w += usize::from(self.src_port) + usize::from(self.dest_port);
        if let Some(a) = &self.alert {
            w += a.action.len() + a.signature.len() + a.category.len();
            w += a.gid as usize + a.signature_id as usize + a.rev as usize;
            w += usize::from(a.severity);
            if let Some(m) = &a.metadata {
                w += m.signature_severity.iter().map(|s| s.len()).sum::<usize>();
            }
        }
        if let Some(h) = &self.http {
            w += h.hostname.map_or(0, str::len)
                + h.url.map_or(0, str::len)
                + h.http_user_agent.map_or(0, str::len)
                + h.http_method.map_or(0, str::len)
                + usize::from(h.status.unwrap_or(0));
        }
        (w as u64) ^ self.flow_id
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub seconds: f64,
    pub lines_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    pub lines: u64,
    pub bytes: u64,
    /// Each pass of the typed, borrowed parse.
    pub typed: Vec<Pass>,
    pub value: Vec<Pass>,
    /// FB-6: each pass of the intake's parse and normalise.
    pub normalise: Vec<Pass>,
    /// Median of the passes.
    pub typed_lines_per_s: f64,
    pub typed_mb_per_s: f64,
    pub value_lines_per_s: f64,
    pub value_mb_per_s: f64,
    pub normalise_lines_per_s: f64,
    pub normalise_mb_per_s: f64,
    /// Events and observables the intake's reader made of the file in one pass.
    pub normalised_events: u64,
    pub normalised_observables: u64,
}

/// What one pass does with each line.
#[derive(Clone, Copy)]
enum Parse {
    /// serde_json into [`BareEve`] (d1)
    Typed,
    /// serde_json into `serde_json::Value` (d3)
    Value,
    /// the intake's EVE reader: parse and normalise (FB-6)
    Normalise,
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One pass over the file; with [`Parse::Normalise`], also the events and observables made.
fn pass(text: &str, how: Parse) -> Result<(Pass, u64, u64)> {
    let types = firebreak_intake::eve::EveTypes::default();
    let started = Instant::now();
    let mut lines = 0u64;
    let mut acc = 0u64;
    let (mut events, mut observables) = (0u64, 0u64);
    for line in text.lines() {
        match how {
            Parse::Typed => {
                let e: BareEve<'_> = serde_json::from_str(line)
                    .with_context(|| format!("line {}: not an EVE alert", lines + 1))?;
                acc = acc.wrapping_add(black_box(&e).weight());
            }
            Parse::Value => {
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("line {}: not JSON", lines + 1))?;
                acc = acc.wrapping_add(black_box(&v).as_object().map_or(0, |o| o.len() as u64));
            }
            Parse::Normalise => {
                let made = firebreak_intake::eve::parse_line(line, &types).map_err(|e| {
                    anyhow::anyhow!("line {}: the intake refused it: {e}", lines + 1)
                })?;
                for e in black_box(&made) {
                    events += 1;
                    observables += e.observables.len() as u64;
                }
            }
        }
        lines += 1;
    }
    black_box(acc);
    let seconds = started.elapsed().as_secs_f64();
    let pass = Pass {
        seconds,
        lines_per_s: lines as f64 / seconds,
        mb_per_s: text.len() as f64 / seconds / 1e6,
    };
    Ok((pass, events, observables))
}

/// `passes` passes of each parse over the file (read into memory first, not timed).
pub fn measure(eve: &Path, passes: usize) -> Result<Ceilings> {
    let text =
        std::fs::read_to_string(eve).with_context(|| format!("reading {}", eve.display()))?;
    let lines = text.lines().count() as u64;
    if lines == 0 {
        bail!("{} is empty", eve.display());
    }
    let mut typed = Vec::new();
    let mut value = Vec::new();
    let mut normalise = Vec::new();
    let mut made = (0, 0);
    for _ in 0..passes.max(1) {
        typed.push(pass(&text, Parse::Typed)?.0);
        value.push(pass(&text, Parse::Value)?.0);
        let (p, events, observables) = pass(&text, Parse::Normalise)?;
        normalise.push(p);
        made = (events, observables);
    }
    // every generated line is an alert: a line the reader skipped would flatter its rate
    if made.0 != lines {
        bail!(
            "the intake's EVE reader made {} events of {lines} lines of {}",
            made.0,
            eve.display()
        );
    }
    let med = |v: &[Pass], f: fn(&Pass) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    Ok(Ceilings {
        lines,
        bytes: text.len() as u64,
        typed_lines_per_s: med(&typed, |p| p.lines_per_s),
        typed_mb_per_s: med(&typed, |p| p.mb_per_s),
        value_lines_per_s: med(&value, |p| p.lines_per_s),
        value_mb_per_s: med(&value, |p| p.mb_per_s),
        normalise_lines_per_s: med(&normalise, |p| p.lines_per_s),
        normalise_mb_per_s: med(&normalise, |p| p.mb_per_s),
        normalised_events: made.0,
        normalised_observables: made.1,
        typed,
        value,
        normalise,
    })
}

/// Rows per transaction of the bare SQLite insert: one intake batch.
pub const SQLITE_ROWS_PER_COMMIT: usize = 4096;
/// Rows per transaction of the bare PostgreSQL insert (PERFORMANCE.md c3: 100 rows per
/// transaction, one client).
pub const POSTGRES_ROWS_PER_COMMIT: usize = 100;

/// The columns of the bare table: the typed struct's fields and the raw line.
const BARE_COLUMNS: &str = "ts, flow_id, in_iface, src_ip, src_port, dest_ip, dest_port, proto, \
    host, signature_id, signature, category, severity, raw";

/// A bare batched INSERT of the same lines (PERFORMANCE.md FB-4 and FB-5 compare the intake
/// with it): each line parsed into the typed, borrowed struct on one thread and inserted as a
/// plain row of its fields and the raw line into a table with no index but its key, in
/// transactions of `rows_per_commit` rows, durably (SQLite: WAL, `synchronous=FULL`;
/// PostgreSQL: the server's defaults, a flush per COMMIT). No dedup, observables, assets,
/// rules, compression or audit: what storing the lines costs on this machine and disk.
#[derive(Debug, Clone, Serialize)]
pub struct InsertCeiling {
    pub backend: String,
    pub rows: u64,
    pub rows_per_commit: usize,
    pub seconds: f64,
    pub rows_per_s: f64,
}

impl InsertCeiling {
    fn new(backend: &str, rows: u64, rows_per_commit: usize, seconds: f64) -> Self {
        Self {
            backend: backend.into(),
            rows,
            rows_per_commit,
            seconds,
            rows_per_s: rows as f64 / seconds,
        }
    }
}

fn parse_bare(line: &str, n: u64) -> Result<BareEve<'_>> {
    serde_json::from_str(line).with_context(|| format!("line {n}: not an EVE alert"))
}

/// The bare insert into a new SQLite database in `dir` (removed after).
pub fn sqlite_insert(eve: &Path, dir: &Path) -> Result<InsertCeiling> {
    let text =
        std::fs::read_to_string(eve).with_context(|| format!("reading {}", eve.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("bare-insert.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let started = Instant::now();
    let conn = rusqlite::Connection::open(&path).context("opening the bare SQLite database")?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE bare_events (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, flow_id INTEGER,
           in_iface TEXT, src_ip TEXT, src_port INTEGER, dest_ip TEXT, dest_port INTEGER,
           proto TEXT, host TEXT, signature_id INTEGER, signature TEXT, category TEXT,
           severity INTEGER, raw TEXT NOT NULL);",
    )
    .context("creating the bare table")?;
    let sql = format!(
        "INSERT INTO bare_events ({BARE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    );
    let mut rows = 0u64;
    let mut lines = text.lines().peekable();
    while lines.peek().is_some() {
        let tx = conn.unchecked_transaction().context("BEGIN")?;
        {
            let mut st = tx.prepare_cached(&sql).context("preparing the insert")?;
            for line in lines.by_ref().take(SQLITE_ROWS_PER_COMMIT) {
                rows += 1;
                let e = parse_bare(line, rows)?;
                let a = e.alert.as_ref();
                st.execute(rusqlite::params![
                    e.timestamp,
                    e.flow_id as i64,
                    e.in_iface,
                    e.src_ip,
                    e.src_port,
                    e.dest_ip,
                    e.dest_port,
                    e.proto,
                    e.host,
                    a.map(|a| a.signature_id as i64),
                    a.map(|a| a.signature),
                    a.map(|a| a.category),
                    a.map(|a| a.severity),
                    line,
                ])
                .context("inserting a bare row")?;
            }
        }
        tx.commit().context("COMMIT")?;
    }
    drop(conn);
    let seconds = started.elapsed().as_secs_f64();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(InsertCeiling::new(
        "sqlite",
        rows,
        SQLITE_ROWS_PER_COMMIT,
        seconds,
    ))
}

/// A SQL string literal (`standard_conforming_strings` on, as by default).
fn sql_text(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}

/// The bare insert into PostgreSQL, through `psql` reading the statements from a pipe:
/// multi-row INSERTs of [`POSTGRES_ROWS_PER_COMMIT`] rows, each its own transaction, into a
/// table of the database `url` names (created and dropped here).
pub fn postgres_insert(eve: &Path, url: &str) -> Result<InsertCeiling> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let text =
        std::fs::read_to_string(eve).with_context(|| format!("reading {}", eve.display()))?;
    let started = Instant::now();
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting psql")?;
    let mut stdin = child.stdin.take().context("psql's stdin")?;
    writeln!(
        stdin,
        "DROP TABLE IF EXISTS bare_events; CREATE TABLE bare_events (seq bigserial PRIMARY KEY, \
         ts text NOT NULL, flow_id bigint, in_iface text, src_ip text, src_port integer, \
         dest_ip text, dest_port integer, proto text, host text, signature_id bigint, \
         signature text, category text, severity integer, raw text NOT NULL);"
    )?;
    let mut rows = 0u64;
    let mut sql = String::new();
    let mut lines = text.lines().peekable();
    let write_result = (|| -> Result<()> {
        while lines.peek().is_some() {
            sql.clear();
            sql.push_str("BEGIN; INSERT INTO bare_events (");
            sql.push_str(BARE_COLUMNS);
            sql.push_str(") VALUES ");
            for (i, line) in lines.by_ref().take(POSTGRES_ROWS_PER_COMMIT).enumerate() {
                rows += 1;
                let e = parse_bare(line, rows)?;
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                sql_text(&mut sql, e.timestamp);
                write!(sql, ",{},", e.flow_id as i64)?;
                sql_text(&mut sql, e.in_iface);
                sql.push(',');
                sql_text(&mut sql, e.src_ip);
                write!(sql, ",{},", e.src_port)?;
                sql_text(&mut sql, e.dest_ip);
                write!(sql, ",{},", e.dest_port)?;
                sql_text(&mut sql, e.proto);
                sql.push(',');
                sql_text(&mut sql, e.host);
                match &e.alert {
                    Some(a) => {
                        write!(sql, ",{},", a.signature_id as i64)?;
                        sql_text(&mut sql, a.signature);
                        sql.push(',');
                        sql_text(&mut sql, a.category);
                        write!(sql, ",{},", a.severity)?;
                    }
                    None => sql.push_str(",NULL,NULL,NULL,NULL,"),
                }
                sql_text(&mut sql, line);
                sql.push(')');
            }
            sql.push_str("; COMMIT;\n");
            stdin.write_all(sql.as_bytes()).context("writing to psql")?;
        }
        writeln!(stdin, "DROP TABLE bare_events;")?;
        Ok(())
    })();
    drop(stdin);
    let out = child.wait_with_output().context("waiting for psql")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    write_result?;
    Ok(InsertCeiling::new(
        "postgres",
        rows,
        POSTGRES_ROWS_PER_COMMIT,
        seconds,
    ))
}
