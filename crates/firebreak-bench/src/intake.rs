//! The intake benchmark (issue 5; PERFORMANCE.md FB-4/FB-5).
//!
//! Per backend × path × run: a fresh database, a user and a token, `firebreak serve`, the
//! assets and suppression rules through the API, then the EVE file through
//! `firebreak ingest` or `POST /api/v1/ingest/ndjson`, timed, with the peak memory of the
//! process doing the work; then the counts are checked against what the generator produced,
//! so that a lost or miscounted event fails the benchmark.

use crate::ceiling::{self, Ceilings, median};
use crate::datagen::{self, Generated, Params};
use crate::procfs::{self, Usage};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Paths {
    Cli,
    Http,
    Both,
}

#[derive(Debug, clap::Args)]
pub struct IntakeArgs {
    /// EVE lines to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Share of lines that repeat an earlier line's key (signature, IPs, sensor).
    #[arg(long, default_value_t = 0.05)]
    pub dup_ratio: f64,
    /// Suppression rules (literal `rule_id` rules, and --non-literal-rules CEL ones).
    #[arg(long, default_value_t = 20)]
    pub rules: usize,
    /// How many of the rules are non-literal CEL (0 to 3; the others are
    /// `event.source == "suricata" && event.rule_id == "<sid>"`).
    #[arg(long, default_value_t = 3)]
    pub non_literal_rules: usize,
    /// Assets imported before the intake (~30% of lines hit one).
    #[arg(long, default_value_t = 10_000)]
    pub assets: usize,
    #[arg(long, value_enum, default_value_t = Backends::Both)]
    pub backend: Backends,
    #[arg(long, value_enum, default_value_t = Paths::Both)]
    pub path: Paths,
    /// Runs of each backend × path.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Runs on PostgreSQL, when fewer than --runs.
    #[arg(long)]
    pub pg_runs: Option<usize>,
    /// The firebreak binary (a release build).
    #[arg(long, default_value = "target/release/firebreak")]
    pub bin: PathBuf,
    /// Working directory (data files, logs, data dirs); default a new temporary directory.
    /// Data generated earlier with the same parameters is reused.
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// A PostgreSQL database to connect to as an administrator; each run creates and drops
    /// its own database beside it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Write everything measured as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 20_261_120)]
    pub seed: u64,
    /// Passes of each ceiling parse (the median is used).
    #[arg(long, default_value_t = 3)]
    pub ceiling_passes: usize,
    /// Keep each run's data directory (SQLite) or database (PostgreSQL).
    #[arg(long)]
    pub keep: bool,
    /// Generate the data and measure the ceilings only (no Firebreak needed).
    #[arg(long)]
    pub ceilings_only: bool,
}

/// The data format version: bump when the generator changes, so old files are not reused.
pub(crate) const DATA_VERSION: u32 = 1;
const PASSWORD: &str = "firebreak-bench-correct-horse-battery-staple";
const USER: &str = "bench";

#[derive(Debug, Clone, Serialize)]
struct Machine {
    nproc: usize,
    mem_total_mib: u64,
    mem_available_mib: u64,
    loadavg: String,
    kernel: String,
    firebreak_version: String,
    git: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct RunResult {
    backend: String,
    path: String,
    run: usize,
    load_before: String,
    mem_available_mib_before: u64,
    /// Processes other than ours busy before the run: (name, % of a core).
    busy_before: Vec<(String, f64)>,
    lines: u64,
    created: u64,
    duplicates: u64,
    suppressed: u64,
    refused: u64,
    seconds: f64,
    events_per_s: f64,
    /// Of the process doing the work: `firebreak ingest`, or the server for HTTP.
    peak_rss_mib: f64,
    /// The server's RSS just before the HTTP ingest.
    server_rss_before_mib: Option<f64>,
    ratio_to_typed_parse: f64,
    /// CPU time per line, in microseconds: of the process doing the work and, on PostgreSQL,
    /// of its backends (less noisy than the rate on a shared machine).
    cpu_us_per_event: f64,
    usage: Usage,
    counts: BTreeMap<String, i64>,
    /// The database: SQLite's file (without its WAL), or pg_database_size.
    db_size_mib: f64,
    /// SQLite's WAL file at the end (its high-water mark: the file is not truncated).
    wal_mib: f64,
    setup_seconds: f64,
    server_log_problems: Vec<String>,
    failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct GroupSummary {
    backend: String,
    path: String,
    runs: usize,
    events_per_s_min: f64,
    events_per_s_median: f64,
    events_per_s_max: f64,
    seconds_median: f64,
    peak_rss_mib_median: f64,
    ratio_median: f64,
    /// The median events/s over the bare batched INSERT of the same lines on the same backend.
    ratio_to_insert_median: Option<f64>,
    /// CPU µs per line (see [`RunResult::cpu_us_per_event`]), the median of the runs.
    cpu_us_per_event_median: f64,
    verdicts: Vec<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    command: String,
    machine: &'a Machine,
    generated: &'a Generated,
    ceilings: &'a Ceilings,
    inserts: &'a [ceiling::InsertCeiling],
    runs: &'a [RunResult],
    summary: &'a [GroupSummary],
    ok: bool,
}

pub(crate) fn run_cmd(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn try_text(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// `curl` with the status code appended; returns (status, body).
pub(crate) fn curl(args: &[&str]) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("starting curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "curl {} failed ({}): {}",
            args.last().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code: u16 = code
        .trim()
        .parse()
        .with_context(|| format!("curl printed no status: {text}"))?;
    Ok((code, body.to_string()))
}

pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The bare batched INSERT of the same lines on each backend measured (PERFORMANCE.md FB-4,
/// FB-5), printed as it is measured.
fn measure_inserts(
    args: &IntakeArgs,
    data: &Data,
    work: &std::path::Path,
    backends: &[&str],
) -> Result<Vec<ceiling::InsertCeiling>> {
    let mut out = Vec::new();
    for b in backends {
        let _ = Command::new("sync").status();
        let c = if *b == "sqlite" {
            ceiling::sqlite_insert(&data.eve, &work.join("bare-insert"))?
        } else {
            let name = format!("fbbench_bare_{}", std::process::id());
            psql(&args.pg_url, &format!("CREATE DATABASE {name}"))?;
            let measured = ceiling::postgres_insert(&data.eve, &pg_url_for(&args.pg_url, &name)?);
            if let Err(e) = psql(
                &args.pg_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ) {
                eprintln!("warning: dropping {name}: {e:#}");
            }
            measured?
        };
        println!(
            "ceiling: bare batched INSERT of the same lines on {} ({} rows per commit, parse included, one thread): {} rows/s, {:.1} s",
            c.backend,
            c.rows_per_commit,
            fmt_n(c.rows_per_s),
            c.seconds
        );
        out.push(c);
    }
    Ok(out)
}

/// `postgres://u@h:p/db?x` with another database name.
pub(crate) fn pg_url_for(base: &str, db: &str) -> Result<String> {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (base, String::new()),
    };
    let (prefix, _) = main
        .rsplit_once('/')
        .filter(|(p, _)| p.contains("//"))
        .ok_or_else(|| anyhow!("--pg-url {base:?} names no database"))?;
    Ok(format!("{prefix}/{db}{query}"))
}

pub(crate) fn psql(url: &str, sql: &str) -> Result<String> {
    run_cmd(
        Command::new("psql").args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ]),
        &format!("psql -c {sql:?}"),
    )
    .map(|s| s.trim().to_string())
}

/// The numbers of `firebreak ingest`'s summary line (`950000 events created, ...`), by label.
fn parse_cli_summary(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let line = text
        .lines()
        .find(|l| l.contains("lines read"))
        .unwrap_or_default();
    for seg in line.split([':', ',', ';']) {
        let seg = seg.trim();
        let mut words = seg.split_whitespace();
        if let Some(n) = words.next().and_then(|w| w.parse::<f64>().ok()) {
            let label: Vec<&str> = words.collect();
            out.insert(label.join(" "), n);
        }
    }
    out
}

fn get_u64(m: &BTreeMap<String, f64>, prefix: &str) -> Result<u64> {
    m.iter()
        .find(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| *v as u64)
        .ok_or_else(|| anyhow!("the ingest summary has no `{prefix}`"))
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 30 s for a clean exit, then SIGKILL.
    pub(crate) fn stop(mut self) -> Result<String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(format!("{s}"));
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Ok("killed after 30 s without exiting on SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub(crate) struct Env {
    pub(crate) bin: PathBuf,
    pub(crate) run_dir: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
}

impl Env {
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.run_dir)
            .env("FIREBREAK_DATA_DIR", &self.data_dir)
            .env_remove("FIREBREAK_CONFIG")
            .env_remove("FIREBREAK_LISTEN");
        match &self.database_url {
            Some(u) => c.env("FIREBREAK_DATABASE_URL", u),
            None => c.env_remove("FIREBREAK_DATABASE_URL"),
        };
        c
    }

    pub(crate) fn start_server(&self) -> Result<Server> {
        self.start_server_with(self.cmd())
    }

    /// `start_server` from a command prepared by the caller (extra environment).
    pub(crate) fn start_server_with(&self, mut cmd: Command) -> Result<Server> {
        let port = free_port()?;
        let log = self.run_dir.join("server.log");
        let f = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--syslog-listen",
                "off",
            ])
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("starting firebreak serve")?;
        let mut s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = s.child.try_wait()? {
                bail!(
                    "firebreak serve exited ({st}) before answering: {}",
                    tail(&s.log, 20)
                );
            }
            if let Ok((200, _)) = curl(&["-o", "/dev/null", &format!("{}/healthz", s.base)]) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = s.child.kill();
                bail!(
                    "firebreak serve did not answer /healthz within 120 s: {}",
                    tail(&s.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub(crate) fn tail(p: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines of the server log at WARN or ERROR (at most `n`, and the total).
pub(crate) fn log_problems(p: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains(" ERROR ")
                || l.contains(" WARN ")
                || l.contains("\"level\":\"ERROR\"")
                || l.contains("\"level\":\"WARN\"")
                || l.contains("panicked")
        })
        .collect();
    let mut out: Vec<String> = bad.iter().take(n).map(|s| s.to_string()).collect();
    if bad.len() > n {
        out.push(format!("... {} such lines in all", bad.len()));
    }
    out
}

pub(crate) struct Data {
    pub(crate) eve: PathBuf,
    pub(crate) assets: PathBuf,
    pub(crate) generated: Generated,
}

fn prepare_data(args: &IntakeArgs, work: &Path) -> Result<Data> {
    let params = Params {
        events: args.events,
        dup_ratio: args.dup_ratio,
        rules: args.rules,
        non_literal_rules: args.non_literal_rules,
        assets: args.assets,
        seed: args.seed,
        version: DATA_VERSION,
    };
    prepare(&params, work)
}

/// The EVE file, the asset CSV and the rules for `params` in `work`: reused when generated
/// earlier with the same parameters.
pub(crate) fn prepare(params: &Params, work: &Path) -> Result<Data> {
    let eve = work.join("eve.json");
    let assets = work.join("assets.csv");
    let meta = work.join("generated.json");
    if let Ok(text) = std::fs::read_to_string(&meta)
        && let Ok(g) = serde_json::from_str::<Generated>(&text)
        && g.params == *params
        && std::fs::metadata(&eve).is_ok_and(|m| m.len() == g.bytes)
        && assets.exists()
    {
        println!("data: reusing {} (same parameters)", eve.display());
        return Ok(Data {
            eve,
            assets,
            generated: g,
        });
    }
    println!(
        "data: generating {} EVE lines, {:.1}% duplicates, {} rules, {} assets (seed {})...",
        params.events,
        params.dup_ratio * 100.0,
        params.rules,
        params.assets,
        params.seed
    );
    let g = datagen::generate(params, &eve, &assets)?;
    std::fs::write(&meta, serde_json::to_vec_pretty(&g)?)?;
    Ok(Data {
        eve,
        assets,
        generated: g,
    })
}

pub(crate) fn print_data(g: &Generated) {
    let pct = |x: u64| x as f64 / g.lines.max(1) as f64 * 100.0;
    println!(
        "data: {} lines, {:.1} MB ({:.0} B/line), {} distinct + {} duplicates ({:.2}%), {} signatures, {} source IPs, {:.1}% to asset addresses, {:.1}% with http",
        g.lines,
        g.bytes as f64 / 1e6,
        g.bytes as f64 / g.lines.max(1) as f64,
        g.distinct,
        g.duplicates,
        pct(g.duplicates),
        g.signatures_used,
        g.src_ips_used,
        pct(g.asset_hit_lines),
        pct(g.http_lines),
    );
    println!(
        "data: {} assets ({} addresses, {} critical); {} rules: literal rule_id rules cover {:.1}% of lines, all rules {:.1}% ({} distinct events suppressed); generated in {:.1} s",
        g.params.assets,
        g.asset_addresses,
        g.assets_critical,
        g.rules.len(),
        pct(g.literal_rule_lines),
        pct(g.suppressed_lines),
        g.suppressed_distinct,
        g.seconds
    );
    for r in g
        .rules
        .iter()
        .filter(|r| !r.condition.contains("event.rule_id"))
    {
        println!("data: non-literal rule {:?}: {}", r.name, r.condition);
    }
}

/// Resolves `--bin` against the working directory, then against the workspace root this
/// binary was built in.
pub(crate) fn resolve_bin(bin: &Path) -> Result<PathBuf> {
    if bin.is_absolute() {
        return Ok(bin.to_path_buf());
    }
    let here = std::env::current_dir()?.join(bin);
    if here.exists() {
        return Ok(here);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(bin);
    if ws.exists() {
        return Ok(ws.canonicalize()?);
    }
    bail!(
        "--bin {}: no such file (build it: cargo build --release -p firebreak)",
        bin.display()
    )
}

/// One backend × path × run.
struct Ctx<'a> {
    args: &'a IntakeArgs,
    bin: &'a Path,
    work: &'a Path,
    data: &'a Data,
    ceilings: &'a Ceilings,
}

fn one_run(ctx: &Ctx<'_>, backend: &str, path: &str, run: usize) -> Result<RunResult> {
    let Ctx {
        args,
        bin,
        work,
        data,
        ceilings,
    } = *ctx;
    let mut r = RunResult {
        backend: backend.into(),
        path: path.into(),
        run,
        ..Default::default()
    };
    let run_dir = work.join(format!("{backend}-{path}-{run}"));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    let data_dir = run_dir.join("data");
    let (database_url, pg_db) = if backend == "postgres" {
        let name = format!(
            "fbbench_{}_{}_{run}_{}",
            std::process::id(),
            path,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() % 1_000_000)
        );
        psql(&args.pg_url, &format!("CREATE DATABASE {name}"))?;
        (Some(pg_url_for(&args.pg_url, &name)?), Some(name))
    } else {
        (None, None)
    };
    let env = Env {
        bin: bin.to_path_buf(),
        run_dir,
        data_dir: data_dir.clone(),
        database_url,
    };
    let result = measure_run(&env, data, ceilings, &mut r);
    // clean up whatever happened
    if let Some(db) = &pg_db {
        if let Ok(size) = psql(&args.pg_url, &format!("SELECT pg_database_size('{db}')")) {
            r.db_size_mib = size.parse::<f64>().unwrap_or(0.0) / 1048576.0;
        }
        if !args.keep
            && let Err(e) = psql(
                &args.pg_url,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            )
        {
            eprintln!("warning: dropping {db}: {e:#}");
        }
    } else {
        let size = |f: &str| {
            std::fs::metadata(data_dir.join(f)).map_or(0.0, |m| m.len() as f64 / 1048576.0)
        };
        r.db_size_mib = size("firebreak.db");
        r.wal_mib = size("firebreak.db-wal");
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result.map(|()| r)
}

fn measure_run(env: &Env, data: &Data, ceilings: &Ceilings, r: &mut RunResult) -> Result<()> {
    let setup = Instant::now();
    // user and token (the CLI creates the schema on first use)
    let mut add = env.cmd();
    add.args([
        "user",
        "add",
        USER,
        "--role",
        "reporter",
        "--role",
        "admin",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = add.spawn().context("starting firebreak user add")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        writeln!(stdin, "{PASSWORD}")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "firebreak user add failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let token = run_cmd(
        env.cmd().args(["token", "create", "--user", USER]),
        "firebreak token create",
    )?
    .trim()
    .to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("firebreak token create printed {token:?}, not a token");
    }
    let auth = format!("authorization: Bearer {token}");

    let server = env.start_server()?;
    let outcome = with_server(env, data, ceilings, r, &server, &auth, setup);
    let stopped = server.stop();
    r.server_log_problems = log_problems(&env.run_dir.join("server.log"), 8);
    match stopped {
        Ok(s) if s.contains("killed") => r.failures.push(format!("server: {s}")),
        Ok(_) => {}
        Err(e) => r.failures.push(format!("stopping the server: {e:#}")),
    }
    outcome
}

fn with_server(
    env: &Env,
    data: &Data,
    ceilings: &Ceilings,
    r: &mut RunResult,
    server: &Server,
    auth: &str,
    setup: Instant,
) -> Result<()> {
    let g = &data.generated;
    let api = format!("{}/api/v1", server.base);
    let assets_arg = format!("@{}", data.assets.display());
    let (code, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &assets_arg,
        "-H",
        "content-type: text/csv",
        "-H",
        auth,
        &format!("{api}/assets/import"),
    ])?;
    if code != 200 {
        bail!("assets/import answered {code}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("assets/import answer")?;
    let imported = v["imported"].as_u64().unwrap_or(0);
    if imported != g.params.assets as u64 {
        bail!(
            "assets/import imported {imported} of {} assets: {}",
            g.params.assets,
            body.chars().take(500).collect::<String>()
        );
    }
    for rule in &g.rules {
        let json = serde_json::to_string(&serde_json::json!({
            "name": rule.name, "condition": rule.condition, "reason": rule.reason,
        }))?;
        let (code, body) = curl(&[
            "-X",
            "POST",
            "--data-binary",
            &json,
            "-H",
            "content-type: application/json",
            "-H",
            auth,
            &format!("{api}/suppression-rules"),
        ])?;
        if code != 201 {
            bail!(
                "suppression-rules answered {code} to {:?}: {body}",
                rule.condition
            );
        }
    }
    r.setup_seconds = setup.elapsed().as_secs_f64();

    // the ingest itself
    let _ = Command::new("sync").status();
    r.load_before = procfs::loadavg();
    r.mem_available_mib_before = procfs::mem_available_mib();
    r.busy_before = procfs::busy_others(&[server.pid()]);
    let with_pg = env.database_url.is_some();
    let eve = data.eve.display().to_string();
    let (created, duplicates, suppressed, refused, usage) = if r.path == "cli" {
        let out_path = env.run_dir.join("ingest.out");
        let err_path = env.run_dir.join("ingest.err");
        let mut child = env
            .cmd()
            .args(["ingest", &eve, "--format", "eve", "--user", USER, "--quiet"])
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .context("starting firebreak ingest")?;
        let pid = child.id();
        let (status, usage) = procfs::watch(&mut child, pid, with_pg)?;
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            r.failures.push(format!(
                "firebreak ingest exited {status}: {} {}",
                text.trim(),
                tail(&err_path, 10)
            ));
        }
        let m = parse_cli_summary(&text);
        if m.is_empty() {
            bail!(
                "firebreak ingest printed no summary: {text} {}",
                tail(&err_path, 10)
            );
        }
        (
            get_u64(&m, "events created")?,
            get_u64(&m, "duplicates")?,
            get_u64(&m, "suppressed")?,
            get_u64(&m, "lines refused")?,
            usage,
        )
    } else {
        r.server_rss_before_mib = procfs::vm_rss_kib(server.pid()).map(|k| k as f64 / 1024.0);
        let resp = env.run_dir.join("ingest.json");
        let resp_s = resp.display().to_string();
        let mut child = Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-T",
                &eve,
                "-H",
                "Expect:",
                "-H",
                "content-type: application/x-ndjson",
                "-H",
                auth,
                "-o",
                &resp_s,
                "-w",
                "%{http_code}",
                &format!("{api}/ingest/ndjson?format=eve"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting curl")?;
        let (status, usage) = procfs::watch(&mut child, server.pid(), with_pg)?;
        let out = child.wait_with_output()?;
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let body = std::fs::read_to_string(&resp).unwrap_or_default();
        if !status.success() || code != "200" {
            bail!(
                "POST /ingest/ndjson: curl {status}, HTTP {code}: {} {}",
                body.chars().take(2000).collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("the ingest summary")?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let refused = v["errors"].as_array().map_or(0, |a| a.len() as u64);
        (
            n("created"),
            n("duplicates"),
            n("suppressed"),
            refused,
            usage,
        )
    };
    r.lines = g.lines;
    r.created = created;
    r.duplicates = duplicates;
    r.suppressed = suppressed;
    r.refused = refused;
    r.seconds = usage.seconds;
    r.events_per_s = g.lines as f64 / usage.seconds;
    r.peak_rss_mib = usage.peak_rss_mib;
    r.ratio_to_typed_parse = r.events_per_s / ceilings.typed_lines_per_s;
    r.cpu_us_per_event = if g.lines == 0 {
        0.0
    } else {
        (usage.cpu_pct + usage.postgres_cpu_pct) / 100.0 * usage.seconds / g.lines as f64 * 1e6
    };
    r.usage = usage;

    // nothing lost, nothing miscounted
    let (code, body) = curl(&["-H", auth, &format!("{api}/events/counts")])?;
    if code != 200 {
        bail!("events/counts answered {code}: {body}");
    }
    r.counts = serde_json::from_str(&body).context("events/counts answer")?;
    let stored: i64 = r.counts.values().sum();
    let mut check = |ok: bool, what: String| {
        if !ok {
            r.failures.push(what);
        }
    };
    check(refused == 0, format!("{refused} lines refused"));
    check(
        created + duplicates == g.lines,
        format!(
            "created {created} + duplicates {duplicates} = {} != {} lines",
            created + duplicates,
            g.lines
        ),
    );
    check(
        created == g.distinct,
        format!(
            "created {created} != {} distinct events generated",
            g.distinct
        ),
    );
    check(
        duplicates == g.duplicates,
        format!("duplicates {duplicates} != {} generated", g.duplicates),
    );
    check(
        stored == g.distinct as i64,
        format!(
            "events/counts add up to {stored} != {} distinct events ({:?})",
            g.distinct, r.counts
        ),
    );
    check(
        suppressed == g.suppressed_lines,
        format!(
            "suppressed {suppressed} != {} lines the rules match",
            g.suppressed_lines
        ),
    );
    let stored_suppressed = r.counts.get("suppressed").copied().unwrap_or(0);
    check(
        stored_suppressed == g.suppressed_distinct as i64,
        format!(
            "{stored_suppressed} events stored as suppressed != {} distinct events the rules match",
            g.suppressed_distinct
        ),
    );
    Ok(())
}

pub(crate) fn fmt_n(x: f64) -> String {
    let s = format!("{x:.0}");
    let bytes = s.as_bytes();
    let mut out = String::new();
    for (i, c) in bytes.iter().enumerate() {
        if i > 0 && (bytes.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(*c as char);
    }
    out
}

fn print_row(r: &RunResult) {
    let threads: Vec<String> = r
        .usage
        .top_threads
        .iter()
        .take(5)
        .map(|(n, p)| format!("{n} {p:.0}%"))
        .collect();
    println!(
        "{:<8} {:<4} {:>3} {:>9} {:>9} {:>7} {:>9} {:>8.2} {:>9} {:>8.1} {:>6.3} {:>6.1} {:>6.0}% {:>6.0}% {:>5.0}% {:>5.1}% {:>7.0} {:>7.0}  {:<16} {}{}",
        r.backend,
        r.path,
        r.run,
        r.lines,
        r.created,
        r.duplicates,
        r.suppressed,
        r.seconds,
        fmt_n(r.events_per_s),
        r.peak_rss_mib,
        r.ratio_to_typed_parse,
        r.cpu_us_per_event,
        r.usage.cpu_pct,
        r.usage.postgres_cpu_pct,
        r.usage.machine_busy_pct,
        r.usage.machine_iowait_pct,
        r.db_size_mib,
        r.wal_mib,
        r.load_before,
        threads.join(", "),
        if r.failures.is_empty() {
            ""
        } else {
            "  FAILED"
        },
    );
}

fn print_header() {
    println!(
        "events/s = lines / wall seconds of `firebreak ingest` (cli) or of the POST (http); peakMiB = VmHWM of `firebreak ingest` (cli) or of the server (http); ratio = events/s / bare typed parse lines/s; cpuµs = CPU time per line of that process and of PostgreSQL's, in µs; fbCPU = that process's CPU, pgCPU = all postgres processes (% of one core); busy, iowt = the machine (% of all cores); walMiB = SQLite WAL file at the end"
    );
    println!(
        "{:<8} {:<4} {:>3} {:>9} {:>9} {:>7} {:>9} {:>8} {:>9} {:>8} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7}  {:<16} busiest threads (% of a core)",
        "backend",
        "path",
        "run",
        "lines",
        "created",
        "dups",
        "suppress",
        "seconds",
        "events/s",
        "peakMiB",
        "ratio",
        "cpuµs",
        "fbCPU",
        "pgCPU",
        "busy",
        "iowt",
        "dbMiB",
        "walMiB",
        "load before",
    );
}

pub fn run(args: &IntakeArgs) -> Result<bool> {
    let started = Instant::now();
    let bin = if args.ceilings_only {
        args.bin.clone()
    } else {
        resolve_bin(&args.bin)?
    };
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("firebreak-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = work.canonicalize()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = Machine {
        nproc: procfs::nproc(),
        mem_total_mib: procfs::mem_total_mib(),
        mem_available_mib: procfs::mem_available_mib(),
        loadavg: procfs::loadavg(),
        kernel: try_text("uname", &["-r"]),
        firebreak_version: try_text(&bin.display().to_string(), &["--version"]),
        git: {
            let head = try_text("git", &["rev-parse", "--short", "HEAD"]);
            let dirty = try_text("git", &["status", "--porcelain", "--untracked-files=no"]);
            if dirty.is_empty() || dirty == "?" {
                head
            } else {
                format!("{head} (+ uncommitted changes)")
            }
        },
    };
    println!("firebreak-bench intake: {command}");
    println!(
        "machine: {} CPUs, {} MiB RAM ({} MiB available), load {}, kernel {}; {} at {} ({})",
        machine.nproc,
        machine.mem_total_mib,
        machine.mem_available_mib,
        machine.loadavg,
        machine.kernel,
        machine.firebreak_version,
        bin.display(),
        machine.git
    );
    println!("work: {}", work.display());
    let data = prepare_data(args, &work)?;
    print_data(&data.generated);

    println!(
        "ceiling: parsing the same file on one thread, {} passes each...",
        args.ceiling_passes
    );
    let ceilings = ceiling::measure(&data.eve, args.ceiling_passes)?;
    let passes = |v: &[ceiling::Pass]| {
        v.iter()
            .map(|p| fmt_n(p.lines_per_s))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "ceiling: bare serde_json into a borrowed typed struct: {} lines/s, {:.0} MB/s (median; passes {})",
        fmt_n(ceilings.typed_lines_per_s),
        ceilings.typed_mb_per_s,
        passes(&ceilings.typed)
    );
    println!(
        "ceiling: serde_json::Value: {} lines/s, {:.0} MB/s (median; passes {}) = {:.2}x slower",
        fmt_n(ceilings.value_lines_per_s),
        ceilings.value_mb_per_s,
        passes(&ceilings.value),
        ceilings.typed_lines_per_s / ceilings.value_lines_per_s
    );
    println!(
        "FB-6: the intake's EVE reader (parse and normalise into events, no storage): {} lines/s, {:.0} MB/s (median; passes {}) = {:.3} x the bare typed parse (PERFORMANCE.md target >= 0.5); {} events, {} observables",
        fmt_n(ceilings.normalise_lines_per_s),
        ceilings.normalise_mb_per_s,
        passes(&ceilings.normalise),
        ceilings.normalise_lines_per_s / ceilings.typed_lines_per_s,
        fmt_n(ceilings.normalised_events as f64),
        fmt_n(ceilings.normalised_observables as f64),
    );

    let backends: Vec<&str> = match args.backend {
        Backends::Sqlite => vec!["sqlite"],
        Backends::Postgres => vec!["postgres"],
        Backends::Both => vec!["sqlite", "postgres"],
    };
    let inserts = measure_inserts(args, &data, &work, &backends)?;
    if args.ceilings_only {
        return Ok(true);
    }
    let paths: Vec<&str> = match args.path {
        Paths::Cli => vec!["cli"],
        Paths::Http => vec!["http"],
        Paths::Both => vec!["cli", "http"],
    };
    let runs_of = |b: &str| {
        if b == "postgres" {
            args.pg_runs.unwrap_or(args.runs).min(args.runs)
        } else {
            args.runs
        }
    };
    let ctx = Ctx {
        args,
        bin: &bin,
        work: &work,
        data: &data,
        ceilings: &ceilings,
    };
    let mut results: Vec<RunResult> = Vec::new();
    let mut ok = true;
    println!();
    print_header();
    for run in 1..=args.runs {
        for b in &backends {
            if run > runs_of(b) {
                continue;
            }
            for p in &paths {
                match one_run(&ctx, b, p, run) {
                    Ok(r) => {
                        print_row(&r);
                        for f in &r.failures {
                            println!("    CHECK FAILED: {f}");
                            ok = false;
                        }
                        for l in &r.server_log_problems {
                            println!("    server log: {l}");
                        }
                        results.push(r);
                    }
                    Err(e) => {
                        println!("{b:<8} {p:<4} {run:>3}  ERROR: {e:#}");
                        ok = false;
                        results.push(RunResult {
                            backend: b.to_string(),
                            path: p.to_string(),
                            run,
                            failures: vec![format!("{e:#}")],
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }

    // min and median per backend × path
    let mut summary = Vec::new();
    println!();
    println!(
        "{:<8} {:<4} {:>4} {:>10} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9}  verdict (issue 5: >= 50,000 events/s durable on SQLite; >= 0.25 x bare typed parse)",
        "backend",
        "path",
        "runs",
        "ev/s min",
        "ev/s med",
        "ev/s max",
        "s med",
        "peakMiB",
        "ratio",
        "cpuµs med"
    );
    for b in &backends {
        for p in &paths {
            let rs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.backend == *b && r.path == *p && r.failures.is_empty())
                .collect();
            if rs.is_empty() {
                println!("{b:<8} {p:<4} no successful run");
                continue;
            }
            let eps: Vec<f64> = rs.iter().map(|r| r.events_per_s).collect();
            let min = eps.iter().copied().fold(f64::MAX, f64::min);
            let max = eps.iter().copied().fold(0.0, f64::max);
            let med = median(&eps);
            let ratio = med / ceilings.typed_lines_per_s;
            let ratio_to_insert = inserts
                .iter()
                .find(|c| c.backend == *b)
                .map(|c| med / c.rows_per_s);
            let mut verdicts = Vec::new();
            if *b == "sqlite" {
                verdicts.push(format!(
                    "{} 50k/s",
                    if med >= 50_000.0 { "meets" } else { "MISSES" }
                ));
            }
            verdicts.push(format!(
                "{} 0.25x",
                if ratio >= 0.25 { "meets" } else { "MISSES" }
            ));
            if let Some(r) = ratio_to_insert {
                // PERFORMANCE.md FB-4/FB-5: the product's target, not the issue's floor
                verdicts.push(format!(
                    "{:.3}x bare insert (FB target 0.5x: {})",
                    r,
                    if r >= 0.5 { "met" } else { "not yet" }
                ));
            }
            let s = GroupSummary {
                backend: b.to_string(),
                path: p.to_string(),
                runs: rs.len(),
                events_per_s_min: min,
                events_per_s_median: med,
                events_per_s_max: max,
                seconds_median: median(&rs.iter().map(|r| r.seconds).collect::<Vec<_>>()),
                peak_rss_mib_median: median(&rs.iter().map(|r| r.peak_rss_mib).collect::<Vec<_>>()),
                ratio_median: ratio,
                ratio_to_insert_median: ratio_to_insert,
                cpu_us_per_event_median: median(
                    &rs.iter().map(|r| r.cpu_us_per_event).collect::<Vec<_>>(),
                ),
                verdicts,
            };
            println!(
                "{:<8} {:<4} {:>4} {:>10} {:>10} {:>10} {:>9.2} {:>9.1} {:>7.3} {:>9.1}  {}",
                s.backend,
                s.path,
                s.runs,
                fmt_n(s.events_per_s_min),
                fmt_n(s.events_per_s_median),
                fmt_n(s.events_per_s_max),
                s.seconds_median,
                s.peak_rss_mib_median,
                s.ratio_median,
                s.cpu_us_per_event_median,
                s.verdicts.join(", ")
            );
            summary.push(s);
        }
    }
    println!(
        "ceiling (same run): typed borrowed parse {} lines/s ({:.0} MB/s); Value parse {} lines/s; machine load now {}; total {:.0} s",
        fmt_n(ceilings.typed_lines_per_s),
        ceilings.typed_mb_per_s,
        fmt_n(ceilings.value_lines_per_s),
        procfs::loadavg(),
        started.elapsed().as_secs_f64()
    );
    for c in &inserts {
        println!(
            "ceiling (same run): bare batched INSERT on {}: {} rows/s ({} rows per commit)",
            c.backend,
            fmt_n(c.rows_per_s),
            c.rows_per_commit
        );
    }
    if let Some(out) = &args.out {
        let report = Report {
            command,
            machine: &machine,
            generated: &data.generated,
            ceilings: &ceilings,
            inserts: &inserts,
            runs: &results,
            summary: &summary,
            ok,
        };
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("report: {}", out.display());
    }
    if args.work.is_none() && ok && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_summary_is_read() {
        let m = parse_cli_summary(
            "1000 lines read in 0.5 s: 950 events created, 50 duplicates counted, 100 suppressed, 0 resolved, 0 skipped (not event types), 0 tickets opened, 0 lines refused; 2000 records/s\n",
        );
        assert_eq!(get_u64(&m, "events created").unwrap(), 950);
        assert_eq!(get_u64(&m, "duplicates").unwrap(), 50);
        assert_eq!(get_u64(&m, "suppressed").unwrap(), 100);
        assert_eq!(get_u64(&m, "lines refused").unwrap(), 0);
    }

    #[test]
    fn pg_url_gets_another_database() {
        assert_eq!(
            pg_url_for("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            pg_url_for("postgres://u@h/test?sslmode=disable", "x").unwrap(),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
