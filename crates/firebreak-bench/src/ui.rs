//! `firebreak-bench ui`: the web UI's page times with many tickets (issue 7: every page's
//! server time p95 < 50 ms with 100,000 tickets). Seeds tickets through the API (concurrent
//! keep-alive connections) and events through NDJSON, signs in, then times each page with
//! sequential requests on one keep-alive connection over loopback.

use crate::intake::{Env, curl, pg_url_for, psql, resolve_bin, try_text};
use crate::procfs;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UiBackends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Tickets to create before timing the pages.
    #[arg(long, default_value_t = 100_000)]
    pub tickets: u64,
    /// Events to ingest before timing the pages.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Concurrent connections while seeding.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[arg(long, value_enum, default_value_t = UiBackends::Sqlite)]
    pub backend: UiBackends,
    #[arg(long, default_value = "target/release/firebreak")]
    pub bin: PathBuf,
    /// Work directory (default: a new one under the system temp dir).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
}

pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-ui-password-1";

/// One keep-alive HTTP/1.1 connection: just enough client for the bench.
pub(crate) struct Conn {
    r: BufReader<TcpStream>,
    host: String,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Conn {
    pub(crate) fn open(base: &str) -> Result<Self> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("{base}: http only"))?
            .to_string();
        let s = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            r: BufReader::new(s),
            host,
        })
    }

    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let s = self.r.get_mut();
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().to_string();
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
                headers.push((k, v));
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            self.r.read_exact(&mut body)?;
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn seed_tickets(base: &str, token: &str, n: u64, conns: usize) -> Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conns.max(1) {
        let next = next.clone();
        let base = base.to_string();
        let auth = format!("Bearer {token}");
        handles.push(std::thread::spawn(move || -> Result<()> {
            let mut c = Conn::open(&base)?;
            let severities = ["low", "medium", "high", "critical"];
            let words = ["phishing", "malware", "lost laptop", "port scan", "credential stuffing", "ransomware note", "suspicious login", "data leak"];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(());
                }
                let body = serde_json::json!({
                    "title": format!("{} on host-{} #{i}", words[(i % 8) as usize], i % 997),
                    "description": format!("Reported by user{} at site {}; see the attached mail.", i % 5000, i % 40),
                    "severity": severities[(i % 4) as usize],
                    "tags": [format!("site-{}", i % 40)],
                });
                let a = c.send("POST", "/api/v1/tickets", &[("Authorization", &auth), ("Content-Type", "application/json")], body.to_string().as_bytes())?;
                if a.status != 201 {
                    bail!("POST /api/v1/tickets: {} {}", a.status, String::from_utf8_lossy(&a.body));
                }
            }
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow!("a seeding thread panicked"))??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn seed_events(base: &str, token: &str, n: u64) -> Result<f64> {
    let mut body = String::with_capacity(n as usize * 400);
    for i in 0..n {
        let line = serde_json::json!({
            "timestamp": "2026-11-27T08:00:00.000000+0000",
            "event_type": "alert",
            "src_ip": format!("203.0.{}.{}", (i / 250) % 250, i % 250),
            "src_port": 40000 + (i % 20000),
            "dest_ip": format!("10.0.{}.{}", (i / 200) % 200, i % 200),
            "dest_port": 443,
            "proto": "TCP",
            "host": format!("sensor-{}", i % 12),
            "alert": {"action": "allowed", "gid": 1, "signature_id": 2_000_000 + (i % 3000), "rev": 1,
                      "signature": format!("ET POLICY bench signature {}", i % 3000), "category": "Misc activity", "severity": 1 + (i % 3)},
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let started = Instant::now();
    let mut c = Conn::open(base)?;
    let auth = format!("Bearer {token}");
    let a = c.send(
        "POST",
        "/api/v1/ingest/ndjson?format=eve",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        body.as_bytes(),
    )?;
    if a.status != 200 {
        bail!("ingest: {} {}", a.status, String::from_utf8_lossy(&a.body));
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Creates the bench user ([`USER`], [`PASSWORD`]) with these roles; returns a fresh API token.
pub(crate) fn bench_user(env: &Env, roles: &[&str]) -> Result<String> {
    let mut args = vec!["user", "add", USER];
    for r in roles {
        args.extend(["--role", r]);
    }
    args.push("--password-stdin");
    let mut child = env
        .cmd()
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("firebreak user add")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("user add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = env
        .cmd()
        .args(["token", "create", "--user", USER])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("token create: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn sign_in(base: &str) -> Result<String> {
    let mut c = Conn::open(base)?;
    let body = serde_json::json!({"username": USER, "password": PASSWORD}).to_string();
    let a = c.send(
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )?;
    if a.status != 200 {
        bail!("sign-in: {} {}", a.status, String::from_utf8_lossy(&a.body));
    }
    let cookie = a
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .and_then(|(_, v)| v.split(';').next())
        .ok_or_else(|| anyhow!("sign-in set no cookie"))?;
    Ok(cookie.to_string())
}

struct PageTimes {
    path: String,
    bytes: usize,
    /// The first request (cold caches: the overview computes its trends).
    first: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn time_page(base: &str, cookie: &str, path: &str, n: usize) -> Result<PageTimes> {
    let mut c = Conn::open(base)?;
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    let mut first = 0.0;
    // two warm-up requests (caches, statements)
    for i in 0..n + 2 {
        let t = Instant::now();
        let a = c.send("GET", path, &[("Cookie", cookie)], b"")?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if a.status != 200 {
            bail!(
                "GET {path}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        bytes = a.body.len();
        if i == 0 {
            first = ms;
        }
        if i >= 2 {
            times.push(ms);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(PageTimes {
        path: path.to_string(),
        bytes,
        first,
        p50: percentile(&times, 0.50),
        p95: percentile(&times, 0.95),
        p99: percentile(&times, 0.99),
        max: *times.last().unwrap_or(&0.0),
    })
}

fn one_backend(
    args: &UiArgs,
    bin: &std::path::Path,
    work: &std::path::Path,
    backend: &str,
) -> Result<bool> {
    let run_dir = work.join(format!("ui-{backend}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let database_url = if backend == "postgres" {
        let db = format!("firebreak_bench_ui_{}", std::process::id());
        psql(&args.pg_url, &format!("DROP DATABASE IF EXISTS {db}"))?;
        psql(&args.pg_url, &format!("CREATE DATABASE {db}"))?;
        Some(pg_url_for(&args.pg_url, &db)?)
    } else {
        None
    };
    let env = Env {
        bin: bin.to_path_buf(),
        data_dir: run_dir.join("data"),
        run_dir: run_dir.clone(),
        database_url,
    };
    let token = bench_user(&env, &["helpdesk", "responder", "manager", "admin"])?;
    let server = env.start_server()?;
    let base = server.base.clone();
    println!(
        "{backend}: seeding {} tickets over {} connections...",
        args.tickets, args.connections
    );
    let rate = seed_tickets(&base, &token, args.tickets, args.connections)?;
    println!("{backend}: {} tickets at {rate:.0}/s", args.tickets);
    if args.events > 0 {
        let rate = seed_events(&base, &token, args.events)?;
        println!("{backend}: {} events at {rate:.0}/s", args.events);
    }
    let (code, _) = curl(&["-o", "/dev/null", &format!("{base}/healthz")])?;
    if code != 200 {
        bail!("not healthy after seeding");
    }
    let cookie = sign_in(&base)?;
    let mid = args.tickets / 2;
    let pages = [
        "/".to_string(),
        "/events".to_string(),
        "/events?status=all&q=signature%2042".to_string(),
        "/tickets".to_string(),
        "/tickets?status=open".to_string(),
        "/tickets?severity=critical&criticality=normal".to_string(),
        "/tickets?q=ransomware".to_string(),
        "/tickets/rows".to_string(),
        format!("/tickets/SEC-{mid:06}"),
        "/tickets/new".to_string(),
        "/suppression-rules".to_string(),
        "/report".to_string(),
        "/account".to_string(),
        "/admin/users".to_string(),
        "/admin/plan".to_string(),
    ];
    println!(
        "{backend}: {} requests per page, one keep-alive connection, machine load {}",
        args.requests,
        procfs::loadavg()
    );
    println!(
        "{:<48} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  verdict (p95 < 50 ms)",
        "page", "KiB", "p50 ms", "p95 ms", "p99 ms", "max ms", "first ms"
    );
    let mut ok = true;
    for p in &pages {
        let t = time_page(&base, &cookie, p, args.requests)?;
        let pass = t.p95 < 50.0;
        ok &= pass;
        println!(
            "{:<48} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2}  {}",
            t.path,
            t.bytes as f64 / 1024.0,
            t.p50,
            t.p95,
            t.p99,
            t.max,
            t.first,
            if pass { "ok" } else { "MISSES" }
        );
    }
    println!("{backend}: server stopped: {}", server.stop()?);
    Ok(ok)
}

pub fn run(args: &UiArgs) -> Result<bool> {
    let bin = resolve_bin(&args.bin)?;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("firebreak-bench-ui-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    println!(
        "firebreak-bench ui: {} tickets, {} events; {} CPUs, load {}; {} ({})",
        args.tickets,
        args.events,
        procfs::nproc(),
        procfs::loadavg(),
        try_text(&bin.display().to_string(), &["--version"]),
        try_text("git", &["rev-parse", "--short", "HEAD"])
    );
    let backends: &[&str] = match args.backend {
        UiBackends::Sqlite => &["sqlite"],
        UiBackends::Postgres => &["postgres"],
        UiBackends::Both => &["sqlite", "postgres"],
    };
    let mut ok = true;
    for b in backends {
        ok &= one_backend(args, &bin, &work, b)?;
    }
    Ok(ok)
}
