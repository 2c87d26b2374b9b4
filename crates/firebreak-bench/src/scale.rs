//! `firebreak-bench scale` (issue 9): intake and API throughput of 1, 2 and 3 nodes on one
//! PostgreSQL, against one node on SQLite, in one run.
//!
//! Per configuration: a fresh database (SQLite data dir, or a PostgreSQL database created and
//! dropped beside `--pg-url`), one user and token made with the CLI, node 1 started and given
//! the generated assets and suppression rules through the API, then the other nodes (same
//! database, same audit and document key files, each its own data dir and port). Then:
//!
//! - intake: the generated EVE lines in bodies of `--body-lines`, POSTed to
//!   `/api/v1/ingest/ndjson?format=eve` by `--clients-per-node` keep-alive clients per node
//!   (round-robin over the nodes); a 200 means committed. The summaries must add up to the
//!   generated figures and `GET /events/counts` on every node must show every created event.
//! - API: `POST /api/v1/tickets` and `GET /api/v1/tickets/{number}` (of a ticket any node
//!   created) for `--seconds`, after `--warmup`; requests/s and p50/p99 per operation. Every
//!   ticket number answered must be unique across the nodes.
//!
//! Any non-2xx answer is an error, and errors fail the bench.

use crate::datagen::{Params, Rng};
use crate::intake::{
    DATA_VERSION, Env, Server, curl, fmt_n, log_problems, pg_url_for, print_data, psql,
    resolve_bin, run_cmd, try_text,
};
use crate::procfs;
use crate::ui::{Conn, percentile};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// EVE lines ingested per configuration.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Lines per intake request body.
    #[arg(long, default_value_t = 5_000)]
    pub body_lines: usize,
    /// Concurrent keep-alive clients per node (intake and API), spread round-robin.
    #[arg(long, default_value_t = 2)]
    pub clients_per_node: usize,
    /// The same number of clients for every configuration instead (spread round-robin over
    /// the nodes): separates the effect of more nodes from that of more clients.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Measured seconds of the API mix per configuration.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of API load before the measured stretch (not counted; errors still are).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// GET /tickets/{number} per POST /tickets in the API mix.
    #[arg(long, default_value_t = 3)]
    pub gets_per_post: u32,
    /// Node counts on PostgreSQL (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub pg_nodes: Vec<usize>,
    /// Leave out the SQLite single node.
    #[arg(long)]
    pub no_sqlite: bool,
    /// Share of lines that repeat an earlier line's key.
    #[arg(long, default_value_t = 0.05)]
    pub dup_ratio: f64,
    /// Suppression rules created before the intake.
    #[arg(long, default_value_t = 20)]
    pub rules: usize,
    /// Assets imported before the intake.
    #[arg(long, default_value_t = 10_000)]
    pub assets: usize,
    /// The firebreak binary (a release build).
    #[arg(long, default_value = "target/release/firebreak")]
    pub bin: PathBuf,
    /// Working directory; default a new temporary directory. Data generated earlier with the
    /// same parameters is reused.
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// A PostgreSQL database to connect to as an administrator; each configuration creates
    /// and drops its own database beside it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Write everything measured as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 20_261_120)]
    pub seed: u64,
    /// Keep the data dirs and PostgreSQL databases.
    #[arg(long)]
    pub keep: bool,
}

const USER: &str = "bench";
const NOTE: &str = "the nodes, PostgreSQL and this load generator share the machine's cores: more nodes cannot add CPU here, so the figures show the overhead and shape of scale-out, not its gains";

/// What the CPU and memory of one phase were.
#[derive(Debug, Clone, Default, Serialize)]
struct PhaseUsage {
    seconds: f64,
    /// Per node, % of one core.
    node_cpu_pct: Vec<f64>,
    /// All `postgres` processes, % of one core.
    postgres_cpu_pct: f64,
    /// This load generator, % of one core.
    bench_cpu_pct: f64,
    /// The machine, % of all cores.
    machine_busy_pct: f64,
    machine_iowait_pct: f64,
    /// Everything else on the machine (other builds and tests), % of one core: the machine's
    /// busy time less the nodes, PostgreSQL and the bench.
    others_cpu_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
struct IntakeResult {
    clients: usize,
    requests: usize,
    lines: u64,
    seconds: f64,
    events_per_s: f64,
    /// Per request (one body).
    p50_ms: f64,
    p99_ms: f64,
    received: u64,
    created: u64,
    duplicates: u64,
    suppressed: u64,
    refused: u64,
    tickets_opened: u64,
    /// `GET /events/counts` of each node, summed over statuses.
    stored_per_node: Vec<i64>,
    usage: PhaseUsage,
}

#[derive(Debug, Clone, Default, Serialize)]
struct OpResult {
    requests: usize,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ApiResult {
    clients: usize,
    seconds: f64,
    requests_per_s: f64,
    p99_ms: f64,
    post: OpResult,
    get: OpResult,
    /// Tickets created in all (warm-up included), and how many numbers came twice.
    tickets_created: usize,
    duplicate_numbers: usize,
    usage: PhaseUsage,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ConfigResult {
    name: String,
    backend: String,
    nodes: usize,
    load_before: String,
    /// Processes other than ours busy just before the intake: (name, % of a core).
    busy_before: Vec<(String, f64)>,
    setup_seconds: f64,
    intake: IntakeResult,
    api: ApiResult,
    /// VmHWM of each node at the end, MiB.
    peak_rss_mib: Vec<f64>,
    /// Before the intake, MiB.
    rss_before_mib: Vec<f64>,
    db_size_mib: f64,
    /// PostgreSQL's count of deadlocks in this configuration's database.
    pg_deadlocks: Option<i64>,
    errors: u64,
    error_samples: Vec<String>,
    server_log_problems: Vec<String>,
    failures: Vec<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    command: String,
    note: &'a str,
    nproc: usize,
    mem_total_mib: u64,
    loadavg_start: String,
    loadavg_end: String,
    kernel: String,
    firebreak_version: String,
    git: String,
    postgres_version: String,
    events: u64,
    body_lines: usize,
    clients_per_node: usize,
    clients: Option<usize>,
    api_seconds: u64,
    gets_per_post: u32,
    configs: &'a [ConfigResult],
    ok: bool,
}

/// Samples the nodes, PostgreSQL, this process and the machine while a phase runs.
struct Monitor {
    started: Instant,
    pids: Vec<u32>,
    with_pg: bool,
    node0: Vec<u64>,
    node_last: Vec<u64>,
    pg0: BTreeMap<u32, u64>,
    pg_last: BTreeMap<u32, u64>,
    self0: u64,
    cpu0: Option<(u64, u64, u64)>,
    ticks: u64,
}

impl Monitor {
    fn start(pids: &[u32], with_pg: bool) -> Self {
        let node0: Vec<u64> = pids
            .iter()
            .map(|p| procfs::process_ticks(*p).unwrap_or(0))
            .collect();
        let pg0 = if with_pg {
            procfs::postgres_ticks()
        } else {
            BTreeMap::new()
        };
        Self {
            started: Instant::now(),
            pids: pids.to_vec(),
            with_pg,
            node_last: node0.clone(),
            node0,
            pg_last: pg0.clone(),
            pg0,
            self0: procfs::process_ticks(std::process::id()).unwrap_or(0),
            cpu0: procfs::machine_cpu(),
            ticks: 0,
        }
    }

    fn sample(&mut self) {
        for (i, p) in self.pids.iter().enumerate() {
            if let Some(t) = procfs::process_ticks(*p) {
                self.node_last[i] = t;
            }
        }
        // postgres backends come and go with their connections: keep the last value of each
        if self.with_pg && self.ticks.is_multiple_of(5) {
            self.pg_last.extend(procfs::postgres_ticks());
        }
        self.ticks += 1;
    }

    /// Samples every 100 ms until every worker finished.
    fn wait(&mut self, done: impl Fn() -> bool) {
        while !done() {
            self.sample();
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn finish(mut self) -> PhaseUsage {
        let seconds = self.started.elapsed().as_secs_f64();
        self.sample();
        if self.with_pg {
            self.pg_last.extend(procfs::postgres_ticks());
        }
        let pct = |ticks: u64| ticks as f64 / procfs::HZ / seconds * 100.0;
        let pg_used: u64 = self
            .pg_last
            .iter()
            .map(|(p, t)| t.saturating_sub(self.pg0.get(p).copied().unwrap_or(0)))
            .sum();
        let (busy, iowait) = match (self.cpu0, procfs::machine_cpu()) {
            (Some((b0, w0, t0)), Some((b1, w1, t1))) if t1 > t0 => {
                let total = (t1 - t0) as f64;
                (
                    (b1 - b0) as f64 / total * 100.0,
                    (w1 - w0) as f64 / total * 100.0,
                )
            }
            _ => (0.0, 0.0),
        };
        let node_cpu_pct: Vec<f64> = self
            .node_last
            .iter()
            .zip(&self.node0)
            .map(|(b, a)| pct(b.saturating_sub(*a)))
            .collect();
        let postgres_cpu_pct = if self.with_pg { pct(pg_used) } else { 0.0 };
        let bench_cpu_pct = pct(procfs::process_ticks(std::process::id())
            .unwrap_or(0)
            .saturating_sub(self.self0));
        let ours = node_cpu_pct.iter().sum::<f64>() + postgres_cpu_pct + bench_cpu_pct;
        PhaseUsage {
            seconds,
            others_cpu_pct: (busy * procfs::nproc() as f64 - ours).max(0.0),
            node_cpu_pct,
            postgres_cpu_pct,
            bench_cpu_pct,
            machine_busy_pct: busy,
            machine_iowait_pct: iowait,
        }
    }
}

/// Errors of one phase: a count and the first few messages.
#[derive(Default)]
struct Errors {
    count: u64,
    samples: Vec<String>,
}

impl Errors {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.samples.len() < 10 {
            self.samples.push(what);
        }
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for s in other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// The EVE file split into request bodies of `per` lines.
struct Bodies {
    data: Vec<u8>,
    ranges: Vec<(usize, usize, u64)>,
}

fn split_bodies(eve: &Path, per: usize) -> Result<Bodies> {
    let data = std::fs::read(eve).with_context(|| format!("reading {}", eve.display()))?;
    let mut ranges = Vec::new();
    let (mut start, mut lines) = (0usize, 0u64);
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            lines += 1;
            if lines as usize == per.max(1) {
                ranges.push((start, i + 1, lines));
                start = i + 1;
                lines = 0;
            }
        }
    }
    if start < data.len() {
        ranges.push((
            start,
            data.len(),
            lines + u64::from(data.last() != Some(&b'\n')),
        ));
    }
    Ok(Bodies { data, ranges })
}

#[derive(Default)]
struct IntakeOut {
    latencies_ms: Vec<f64>,
    received: u64,
    created: u64,
    duplicates: u64,
    suppressed: u64,
    refused: u64,
    tickets_opened: u64,
    errors: Errors,
}

fn intake_client(base: &str, auth: &str, bodies: &Bodies, next: &AtomicUsize) -> IntakeOut {
    let mut out = IntakeOut::default();
    let mut conn: Option<Conn> = None;
    let path = "/api/v1/ingest/ndjson?format=eve";
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/x-ndjson"),
    ];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(a, b, _)) = bodies.ranges.get(i) else {
            return out;
        };
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(base) {
                Ok(c) => c,
                Err(e) => {
                    out.errors.add(format!("{base}: body {i}: {e:#}"));
                    continue;
                }
            },
        };
        let t = Instant::now();
        let answer = c.send("POST", path, &headers, &bodies.data[a..b]);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Err(e) => out.errors.add(format!("{base}: body {i}: {e:#}")),
            Ok(ans) if ans.status != 200 => {
                out.errors.add(format!(
                    "{base}: body {i}: HTTP {} {}",
                    ans.status,
                    snippet(&ans.body)
                ));
                conn = Some(c);
            }
            Ok(ans) => {
                conn = Some(c);
                out.latencies_ms.push(ms);
                match serde_json::from_slice::<serde_json::Value>(&ans.body) {
                    Ok(v) => {
                        let n = |k: &str| v[k].as_u64().unwrap_or(0);
                        out.received += n("received");
                        out.created += n("created");
                        out.duplicates += n("duplicates");
                        out.suppressed += n("suppressed");
                        out.tickets_opened += n("tickets_opened");
                        out.refused += v["errors"].as_array().map_or(0, |x| x.len() as u64);
                    }
                    Err(e) => out.errors.add(format!(
                        "{base}: body {i}: summary not JSON ({e}): {}",
                        snippet(&ans.body)
                    )),
                }
            }
        }
    }
}

#[derive(Default)]
struct ApiOut {
    post_ms: Vec<f64>,
    get_ms: Vec<f64>,
    numbers: Vec<String>,
    errors: Errors,
}

#[derive(serde::Deserialize)]
struct Created {
    number: String,
}

struct ApiPlan {
    warm_end: Instant,
    end: Instant,
    gets_per_post: u32,
}

fn api_client(
    base: &str,
    auth: &str,
    client: usize,
    plan: &ApiPlan,
    pool: &RwLock<Vec<String>>,
) -> ApiOut {
    let mut out = ApiOut::default();
    let mut rng = Rng::new(0x5CA1_E000 + client as u64);
    let mut conn: Option<Conn> = None;
    let severities = ["low", "medium", "high", "critical"];
    let post_headers = [
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ];
    let get_headers = [("Authorization", auth)];
    let mut k: u64 = 0;
    loop {
        let start = Instant::now();
        if start >= plan.end {
            return out;
        }
        let measured = start >= plan.warm_end;
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(base) {
                Ok(c) => c,
                Err(e) => {
                    out.errors.add(format!("{base}: connecting: {e:#}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let pick = if k.is_multiple_of(u64::from(plan.gets_per_post) + 1) {
            None
        } else {
            pool.read()
                .ok()
                .filter(|p| !p.is_empty())
                .map(|p| p[rng.below(p.len() as u64) as usize].clone())
        };
        k += 1;
        match pick {
            None => {
                let body = serde_json::json!({
                    "title": format!("scale bench c{client} #{k}: suspicious login on host-{}", k % 997),
                    "description": "Reported by the scale benchmark; see the attached mail.",
                    "severity": severities[(k % 4) as usize],
                    "tags": [format!("site-{}", k % 40)],
                })
                .to_string();
                let answer = c.send("POST", "/api/v1/tickets", &post_headers, body.as_bytes());
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                match answer {
                    Err(e) => out.errors.add(format!("{base}: POST /tickets: {e:#}")),
                    Ok(a) => {
                        conn = Some(c);
                        if a.status != 201 {
                            out.errors.add(format!(
                                "{base}: POST /tickets: HTTP {} {}",
                                a.status,
                                snippet(&a.body)
                            ));
                            continue;
                        }
                        match serde_json::from_slice::<Created>(&a.body) {
                            Ok(t) => {
                                if measured {
                                    out.post_ms.push(ms);
                                }
                                if let Ok(mut p) = pool.write() {
                                    p.push(t.number.clone());
                                }
                                out.numbers.push(t.number);
                            }
                            Err(e) => out.errors.add(format!(
                                "{base}: POST /tickets: no number ({e}): {}",
                                snippet(&a.body)
                            )),
                        }
                    }
                }
            }
            Some(number) => {
                let path = format!("/api/v1/tickets/{number}");
                let answer = c.send("GET", &path, &get_headers, b"");
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                match answer {
                    Err(e) => out.errors.add(format!("{base}: GET {path}: {e:#}")),
                    Ok(a) => {
                        conn = Some(c);
                        let needle = format!("\"{number}\"");
                        if a.status != 200 {
                            out.errors.add(format!(
                                "{base}: GET {path}: HTTP {} {}",
                                a.status,
                                snippet(&a.body)
                            ));
                        } else if !a.body.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                            out.errors.add(format!(
                                "{base}: GET {path}: another ticket answered: {}",
                                snippet(&a.body)
                            ));
                        } else if measured {
                            out.get_ms.push(ms);
                        }
                    }
                }
            }
        }
    }
}

fn op_result(mut ms: Vec<f64>, seconds: f64) -> OpResult {
    ms.sort_by(f64::total_cmp);
    OpResult {
        requests: ms.len(),
        per_s: ms.len() as f64 / seconds,
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

/// One node's environment: its own data dir and log, the shared database and keys.
struct Node {
    env: Env,
    keys: Option<(PathBuf, PathBuf)>,
}

impl Node {
    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        if let Some((audit, document)) = &self.keys {
            c.env("FIREBREAK_AUDIT_KEY_FILE", audit)
                .env("FIREBREAK_DOCUMENT_KEY_FILE", document);
        }
        c
    }

    fn start(&self) -> Result<Server> {
        self.env.start_server_with(self.cmd())
    }
}

struct Ctx<'a> {
    args: &'a ScaleArgs,
    bin: &'a Path,
    work: &'a Path,
    data: &'a crate::intake::Data,
    bodies: &'a Bodies,
}

fn one_config(ctx: &Ctx<'_>, backend: &str, nodes: usize) -> Result<ConfigResult> {
    let name = if backend == "sqlite" {
        "SQLite, 1 node".to_string()
    } else {
        format!(
            "PostgreSQL, {nodes} node{}",
            if nodes == 1 { "" } else { "s" }
        )
    };
    let mut r = ConfigResult {
        name,
        backend: backend.into(),
        nodes,
        ..Default::default()
    };
    let run_dir = ctx.work.join(format!("{backend}-{nodes}"));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    let pg_db = if backend == "postgres" {
        let db = format!("fbscale_{}_{nodes}", std::process::id());
        psql(&ctx.args.pg_url, &format!("DROP DATABASE IF EXISTS {db}"))?;
        psql(&ctx.args.pg_url, &format!("CREATE DATABASE {db}"))?;
        Some(db)
    } else {
        None
    };
    let outcome = (|| -> Result<()> {
        let database_url = match &pg_db {
            Some(db) => Some(pg_url_for(&ctx.args.pg_url, db)?),
            None => None,
        };
        // every node on one PostgreSQL shares the audit and document keys
        let keys = if database_url.is_some() {
            let audit = run_dir.join("shared-audit.key");
            let document = run_dir.join("shared-document.key");
            let mut rng = Rng::new(ctx.args.seed ^ nodes as u64);
            let hex64 = |rng: &mut Rng| {
                (0..4)
                    .map(|_| format!("{:016x}", rng.next_u64()))
                    .collect::<String>()
            };
            std::fs::write(&audit, format!("{}\n", hex64(&mut rng)))?;
            std::fs::write(&document, format!("{}\n", hex64(&mut rng)))?;
            Some((audit, document))
        } else {
            None
        };
        let node_list: Vec<Node> = (0..nodes)
            .map(|i| {
                let dir = run_dir.join(format!("node{}", i + 1));
                std::fs::create_dir_all(&dir)?;
                Ok(Node {
                    env: Env {
                        bin: ctx.bin.to_path_buf(),
                        data_dir: dir.join("data"),
                        run_dir: dir,
                        database_url: database_url.clone(),
                    },
                    keys: keys.clone(),
                })
            })
            .collect::<Result<_>>()?;
        let mut servers: Vec<Server> = Vec::new();
        let result = run_config(ctx, &node_list, &mut servers, &mut r);
        for (i, s) in servers.into_iter().enumerate() {
            match s.stop() {
                Ok(st) if st.contains("killed") => r.failures.push(format!("node {}: {st}", i + 1)),
                Ok(_) => {}
                Err(e) => r.failures.push(format!("stopping node {}: {e:#}", i + 1)),
            }
        }
        for (i, n) in node_list.iter().enumerate() {
            for l in log_problems(&n.env.run_dir.join("server.log"), 5) {
                let short: String = l.chars().take(400).collect();
                r.server_log_problems
                    .push(format!("node {}: {short}", i + 1));
            }
        }
        result
    })();
    if let Some(db) = &pg_db {
        if let Ok(size) = psql(
            &ctx.args.pg_url,
            &format!("SELECT pg_database_size('{db}')"),
        ) {
            r.db_size_mib = size.parse::<f64>().unwrap_or(0.0) / 1048576.0;
        }
        r.pg_deadlocks = psql(
            &ctx.args.pg_url,
            &format!("SELECT deadlocks FROM pg_stat_database WHERE datname = '{db}'"),
        )
        .ok()
        .and_then(|d| d.parse().ok());
        if !ctx.args.keep
            && let Err(e) = psql(
                &ctx.args.pg_url,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            )
        {
            eprintln!("warning: dropping {db}: {e:#}");
        }
    } else {
        r.db_size_mib = std::fs::metadata(run_dir.join("node1/data/firebreak.db"))
            .map_or(0.0, |m| m.len() as f64 / 1048576.0);
    }
    if !ctx.args.keep {
        for i in 0..nodes {
            let _ = std::fs::remove_dir_all(run_dir.join(format!("node{}/data", i + 1)));
        }
    }
    outcome.map(|()| r)
}

fn run_config(
    ctx: &Ctx<'_>,
    nodes: &[Node],
    servers: &mut Vec<Server>,
    r: &mut ConfigResult,
) -> Result<()> {
    let args = ctx.args;
    let g = &ctx.data.generated;
    let setup = Instant::now();
    let first = nodes.first().ok_or_else(|| anyhow!("no nodes"))?;
    // the user and token (the CLI creates the schema on first use)
    run_cmd(
        first.cmd().args([
            "user",
            "add",
            USER,
            "--role",
            "responder",
            "--role",
            "admin",
        ]),
        "firebreak user add",
    )?;
    let token = run_cmd(
        first.cmd().args(["token", "create", "--user", USER]),
        "firebreak token create",
    )?
    .trim()
    .to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("firebreak token create printed {token:?}, not a token");
    }
    let auth = format!("Bearer {token}");
    let auth_header = format!("authorization: {auth}");
    // node 1 gets the assets and rules; the others start after, so their first intake
    // snapshot has them
    servers.push(first.start()?);
    let api = format!("{}/api/v1", servers[0].base);
    let assets_arg = format!("@{}", ctx.data.assets.display());
    let (code, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &assets_arg,
        "-H",
        "content-type: text/csv",
        "-H",
        &auth_header,
        &format!("{api}/assets/import"),
    ])?;
    if code != 200 {
        bail!("assets/import answered {code}: {body}");
    }
    for rule in &g.rules {
        let json = serde_json::json!({
            "name": rule.name, "condition": rule.condition, "reason": rule.reason,
        })
        .to_string();
        let (code, body) = curl(&[
            "-X",
            "POST",
            "--data-binary",
            &json,
            "-H",
            "content-type: application/json",
            "-H",
            &auth_header,
            &format!("{api}/suppression-rules"),
        ])?;
        if code != 201 {
            bail!(
                "suppression-rules answered {code} to {:?}: {body}",
                rule.condition
            );
        }
    }
    for n in &nodes[1..] {
        servers.push(n.start()?);
    }
    r.setup_seconds = setup.elapsed().as_secs_f64();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    let with_pg = r.backend == "postgres";
    let clients = args
        .clients
        .unwrap_or(args.clients_per_node * nodes.len())
        .max(1);

    // intake
    let _ = Command::new("sync").status();
    r.load_before = procfs::loadavg();
    r.busy_before = procfs::busy_others(&pids);
    r.rss_before_mib = pids
        .iter()
        .map(|p| procfs::vm_rss_kib(*p).map_or(0.0, |k| k as f64 / 1024.0))
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let bodies: &Bodies = ctx.bodies;
    let mut monitor = Monitor::start(&pids, with_pg);
    let outs: Vec<IntakeOut> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let base = bases[c % bases.len()].as_str();
                let (auth, next) = (auth.as_str(), next.clone());
                s.spawn(move || intake_client(base, auth, bodies, &next))
            })
            .collect();
        monitor.wait(|| handles.iter().all(|h| h.is_finished()));
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let usage = monitor.finish();
    let mut errors = Errors::default();
    let mut i = IntakeResult {
        clients,
        requests: bodies.ranges.len(),
        lines: bodies.ranges.iter().map(|x| x.2).sum(),
        seconds: usage.seconds,
        ..Default::default()
    };
    let mut lat = Vec::new();
    for o in outs {
        lat.extend(o.latencies_ms);
        i.received += o.received;
        i.created += o.created;
        i.duplicates += o.duplicates;
        i.suppressed += o.suppressed;
        i.refused += o.refused;
        i.tickets_opened += o.tickets_opened;
        errors.merge(o.errors);
    }
    lat.sort_by(f64::total_cmp);
    i.p50_ms = percentile(&lat, 0.50);
    i.p99_ms = percentile(&lat, 0.99);
    i.events_per_s = i.lines as f64 / usage.seconds;
    i.usage = usage;
    // nothing lost: every node sees every created event
    for b in &bases {
        let (code, body) = curl(&["-H", &auth_header, &format!("{b}/api/v1/events/counts")])?;
        if code != 200 {
            bail!("{b}: events/counts answered {code}: {body}");
        }
        let counts: BTreeMap<String, i64> =
            serde_json::from_str(&body).context("events/counts answer")?;
        i.stored_per_node.push(counts.values().sum());
    }
    let mut fail = |ok: bool, what: String| {
        if !ok {
            r.failures.push(what);
        }
    };
    fail(
        i.refused == 0,
        format!("intake: {} lines refused", i.refused),
    );
    fail(
        i.received == i.lines,
        format!("intake: {} lines received of {} sent", i.received, i.lines),
    );
    fail(
        i.created + i.duplicates == i.lines,
        format!(
            "intake: created {} + duplicates {} != {} lines",
            i.created, i.duplicates, i.lines
        ),
    );
    fail(
        i.created == g.distinct && i.duplicates == g.duplicates,
        format!(
            "intake: created {} / duplicates {} != {} / {} generated",
            i.created, i.duplicates, g.distinct, g.duplicates
        ),
    );
    fail(
        i.suppressed == g.suppressed_lines,
        format!(
            "intake: suppressed {} != {} lines the rules match",
            i.suppressed, g.suppressed_lines
        ),
    );
    for (n, stored) in i.stored_per_node.iter().enumerate() {
        fail(
            *stored == i.created as i64,
            format!(
                "intake: node {} counts {stored} events, {} were created",
                n + 1,
                i.created
            ),
        );
    }
    r.intake = i;

    // API mix
    let pool: RwLock<Vec<String>> = RwLock::new(Vec::new());
    let started = Instant::now();
    let plan = ApiPlan {
        warm_end: started + Duration::from_secs(args.warmup),
        end: started + Duration::from_secs(args.warmup + args.seconds),
        gets_per_post: args.gets_per_post,
    };
    let (outs, monitor): (Vec<ApiOut>, Monitor) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let base = bases[c % bases.len()].as_str();
                let (auth, plan, pool) = (auth.as_str(), &plan, &pool);
                s.spawn(move || api_client(base, auth, c, plan, pool))
            })
            .collect();
        // measured from the end of the warm-up
        while Instant::now() < plan.warm_end && !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut m = Monitor::start(&pids, with_pg);
        m.wait(|| handles.iter().all(|h| h.is_finished()));
        let outs = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (outs, m)
    });
    let usage = monitor.finish();
    let seconds = args.seconds as f64;
    let mut a = ApiResult {
        clients,
        seconds,
        ..Default::default()
    };
    let (mut post, mut get, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
    for o in outs {
        post.extend(o.post_ms);
        get.extend(o.get_ms);
        numbers.extend(o.numbers);
        errors.merge(o.errors);
    }
    let mut all: Vec<f64> = post.iter().chain(get.iter()).copied().collect();
    all.sort_by(f64::total_cmp);
    a.requests_per_s = all.len() as f64 / seconds;
    a.p99_ms = percentile(&all, 0.99);
    a.post = op_result(post, seconds);
    a.get = op_result(get, seconds);
    a.tickets_created = numbers.len();
    numbers.sort();
    let mut dups: Vec<String> = numbers
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    dups.dedup();
    a.duplicate_numbers = dups.len();
    a.usage = usage;
    if !dups.is_empty() {
        r.failures.push(format!(
            "API: {} ticket numbers answered more than once across the nodes, e.g. {:?}",
            dups.len(),
            dups.iter().take(5).collect::<Vec<_>>()
        ));
    }
    r.api = a;
    r.peak_rss_mib = pids
        .iter()
        .map(|p| procfs::vm_hwm_kib(*p).map_or(0.0, |k| k as f64 / 1024.0))
        .collect();
    r.errors = errors.count;
    r.error_samples = errors.samples;
    if r.errors > 0 {
        r.failures
            .push(format!("{} requests failed (non-2xx or I/O)", r.errors));
    }
    Ok(())
}

fn join_f(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_details(r: &ConfigResult) {
    let i = &r.intake;
    let a = &r.api;
    println!(
        "  intake: {} lines in {} bodies, {} clients: {:.1} s, {} events/s; per body p50 {:.0} ms, p99 {:.0} ms; created {}, duplicates {}, suppressed {}, tickets opened {}; stored per node {:?}",
        i.lines,
        i.requests,
        i.clients,
        i.seconds,
        fmt_n(i.events_per_s),
        i.p50_ms,
        i.p99_ms,
        i.created,
        i.duplicates,
        i.suppressed,
        i.tickets_opened,
        i.stored_per_node
    );
    println!(
        "  intake CPU (% of a core): nodes {}, postgres {:.0}, bench {:.0}, other processes {:.0}; machine busy {:.0}%, iowait {:.1}%",
        join_f(&i.usage.node_cpu_pct, 0),
        i.usage.postgres_cpu_pct,
        i.usage.bench_cpu_pct,
        i.usage.others_cpu_pct,
        i.usage.machine_busy_pct,
        i.usage.machine_iowait_pct
    );
    println!(
        "  API: {} clients, {:.0} s: {} req/s (p99 {:.1} ms); POST /tickets {} req/s, p50 {:.2} / p99 {:.2} / max {:.1} ms; GET /tickets/{{n}} {} req/s, p50 {:.2} / p99 {:.2} / max {:.1} ms; {} tickets, {} duplicate numbers",
        a.clients,
        a.seconds,
        fmt_n(a.requests_per_s),
        a.p99_ms,
        fmt_n(a.post.per_s),
        a.post.p50_ms,
        a.post.p99_ms,
        a.post.max_ms,
        fmt_n(a.get.per_s),
        a.get.p50_ms,
        a.get.p99_ms,
        a.get.max_ms,
        a.tickets_created,
        a.duplicate_numbers
    );
    println!(
        "  API CPU (% of a core): nodes {}, postgres {:.0}, bench {:.0}, other processes {:.0}; machine busy {:.0}%, iowait {:.1}%",
        join_f(&a.usage.node_cpu_pct, 0),
        a.usage.postgres_cpu_pct,
        a.usage.bench_cpu_pct,
        a.usage.others_cpu_pct,
        a.usage.machine_busy_pct,
        a.usage.machine_iowait_pct
    );
    println!(
        "  RSS MiB per node: before intake {}, peak {}; database {:.0} MiB{}; load before {}, busy before {}; setup {:.1} s; errors {}",
        join_f(&r.rss_before_mib, 0),
        join_f(&r.peak_rss_mib, 0),
        r.db_size_mib,
        r.pg_deadlocks
            .map(|d| format!(", {d} deadlocks"))
            .unwrap_or_default(),
        r.load_before,
        if r.busy_before.is_empty() {
            "nothing else".to_string()
        } else {
            r.busy_before
                .iter()
                .map(|(n, p)| format!("{n} {p:.0}%"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        r.setup_seconds,
        r.errors
    );
    for e in &r.error_samples {
        println!("    error: {e}");
    }
    for l in &r.server_log_problems {
        println!("    server log: {l}");
    }
    for f in &r.failures {
        println!("    CHECK FAILED: {f}");
    }
}

fn print_table(rs: &[ConfigResult]) {
    println!(
        "| configuration | clients | intake events/s | API req/s | POST /tickets req/s, p50 / p99 ms | GET /tickets/{{n}} req/s, p50 / p99 ms | API p99 ms | errors | peak RSS MiB per node | API CPU, % of a core: nodes / PostgreSQL / other processes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rs {
        if r.api.clients == 0 {
            println!(
                "| {} | | failed: {} | | | | | | | |",
                r.name,
                r.failures.first().map_or("", String::as_str)
            );
            continue;
        }
        let nodes_cpu = r.api.usage.node_cpu_pct.iter().sum::<f64>();
        println!(
            "| {} | {} | {} | {} | {}, {:.1} / {:.1} | {}, {:.1} / {:.1} | {:.1} | {} | {} | {:.0} / {} / {:.0} |",
            r.name,
            r.api.clients,
            fmt_n(r.intake.events_per_s),
            fmt_n(r.api.requests_per_s),
            fmt_n(r.api.post.per_s),
            r.api.post.p50_ms,
            r.api.post.p99_ms,
            fmt_n(r.api.get.per_s),
            r.api.get.p50_ms,
            r.api.get.p99_ms,
            r.api.p99_ms,
            r.errors,
            join_f(&r.peak_rss_mib, 0),
            nodes_cpu,
            if r.backend == "postgres" {
                format!("{:.0}", r.api.usage.postgres_cpu_pct)
            } else {
                "-".into()
            },
            r.api.usage.others_cpu_pct
        );
    }
}

pub fn run(args: &ScaleArgs) -> Result<bool> {
    let started = Instant::now();
    let bin = resolve_bin(&args.bin)?;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("firebreak-bench-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = work.canonicalize()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let nproc = procfs::nproc();
    let loadavg_start = procfs::loadavg();
    let firebreak_version = try_text(&bin.display().to_string(), &["--version"]);
    let git = {
        let head = try_text("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = try_text("git", &["status", "--porcelain", "--untracked-files=no"]);
        if dirty.is_empty() || dirty == "?" {
            head
        } else {
            format!("{head} (+ uncommitted changes)")
        }
    };
    let mut configs: Vec<(&str, usize)> = Vec::new();
    if !args.no_sqlite {
        configs.push(("sqlite", 1));
    }
    let postgres_version = if args.pg_nodes.is_empty() {
        String::new()
    } else {
        psql(&args.pg_url, "SHOW server_version").unwrap_or_else(|e| format!("? ({e:#})"))
    };
    for n in &args.pg_nodes {
        if *n == 0 {
            bail!("--pg-nodes: a configuration needs at least one node");
        }
        configs.push(("postgres", *n));
    }
    println!("firebreak-bench scale: {command}");
    println!(
        "machine: nproc {nproc}, {} MiB RAM, load average {loadavg_start} at start; {firebreak_version} at {} ({git}); PostgreSQL {postgres_version}",
        procfs::mem_total_mib(),
        bin.display(),
    );
    println!("note: {NOTE} (nproc {nproc})");
    println!("work: {}", work.display());
    let params = Params {
        events: args.events,
        dup_ratio: args.dup_ratio,
        rules: args.rules,
        non_literal_rules: args.rules.min(3),
        assets: args.assets,
        seed: args.seed,
        version: DATA_VERSION,
    };
    let data = crate::intake::prepare(&params, &work)?;
    print_data(&data.generated);
    let bodies = split_bodies(&data.eve, args.body_lines)?;
    let clients_text = match args.clients {
        Some(c) => format!("{c} clients in all"),
        None => format!("{} clients per node", args.clients_per_node),
    };
    println!(
        "intake: {} bodies of up to {} lines, {clients_text}; API: GET:POST = {}:1 for {} s after {} s of warm-up",
        bodies.ranges.len(),
        args.body_lines,
        args.gets_per_post,
        args.seconds,
        args.warmup
    );
    let ctx = Ctx {
        args,
        bin: &bin,
        work: &work,
        data: &data,
        bodies: &bodies,
    };
    let mut results = Vec::new();
    let mut ok = true;
    for (backend, nodes) in configs {
        println!();
        println!(
            "== {backend}, {nodes} node(s), load {} ==",
            procfs::loadavg()
        );
        let r = match one_config(&ctx, backend, nodes) {
            Ok(r) => r,
            Err(e) => ConfigResult {
                name: format!("{backend}, {nodes} node(s)"),
                backend: backend.into(),
                nodes,
                failures: vec![format!("{e:#}")],
                ..Default::default()
            },
        };
        print_details(&r);
        ok &= r.failures.is_empty();
        results.push(r);
    }
    let loadavg_end = procfs::loadavg();
    println!();
    println!(
        "nproc {nproc}, load average {loadavg_start} at start, {loadavg_end} at the end; {} events per configuration in bodies of {} lines, {clients_text}; API mix GET:POST {}:1, {} s; {firebreak_version} ({git}); total {:.0} s",
        args.events,
        args.body_lines,
        args.gets_per_post,
        args.seconds,
        started.elapsed().as_secs_f64()
    );
    println!("note: {NOTE}");
    println!();
    print_table(&results);
    if let Some(out) = &args.out {
        let report = Report {
            command,
            note: NOTE,
            nproc,
            mem_total_mib: procfs::mem_total_mib(),
            loadavg_start,
            loadavg_end,
            kernel: try_text("uname", &["-r"]),
            firebreak_version,
            git,
            postgres_version,
            events: args.events,
            body_lines: args.body_lines,
            clients_per_node: args.clients_per_node,
            clients: args.clients,
            api_seconds: args.seconds,
            gets_per_post: args.gets_per_post,
            configs: &results,
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
    fn bodies_split_on_line_ends() {
        let dir = std::env::temp_dir().join(format!("fbbench-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.json");
        std::fs::write(&f, "a\nb\nc\nd\ne").unwrap();
        let b = split_bodies(&f, 2).unwrap();
        let parts: Vec<(&[u8], u64)> = b
            .ranges
            .iter()
            .map(|&(s, e, n)| (&b.data[s..e], n))
            .collect();
        assert_eq!(
            parts,
            vec![(&b"a\nb\n"[..], 2), (&b"c\nd\n"[..], 2), (&b"e"[..], 1)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
