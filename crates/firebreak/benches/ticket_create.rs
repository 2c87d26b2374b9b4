//! FB-2/FB-3: durable ticket creation through the HTTP API, SQLite and PostgreSQL, 1 and 32
//! clients, with the ceilings measured in the same run (fsync rate, HTTP without storage, bare
//! PostgreSQL one-row transactions). Prints a table; min and median of several runs.
//!
//! `cargo bench -p firebreak --bench ticket_create` (env: FB_BENCH_SECS, FB_BENCH_RUNS,
//! FIREBREAK_TEST_DATABASE_URL).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failure is a panic"
)]

#[path = "../tests/it/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;

use http::Conn;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::Env;

/// One request of a load: `(connection, client index, iteration) -> success`.
type Request = Arc<dyn Fn(&mut Conn, usize, u64) -> bool + Send + Sync>;

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Runs `clients` threads issuing `req` for `secs`; latencies of successful requests only.
fn load(addr: std::net::SocketAddr, clients: usize, secs: f64, req: &Request) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, barrier, req) = (stop.clone(), barrier.clone(), req.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(addr);
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                barrier.wait();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if req(&mut conn, c, i) {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn create_ticket(token: String) -> Request {
    Arc::new(move |c, client, i| {
        let body = format!(
            r#"{{"title":"Suspicious outbound connection from host ws-{client}-{i}","description":"Sensor reported repeated connections to a known C2 address; user reported slowness. Captured by the help desk from a phone call.","severity":"high","source":{{"kind":"sensor","name":"ids-1","contact":"soc@example.org"}},"tags":["c2","network"]}}"#
        );
        matches!(c.request("POST", "/api/v1/tickets", Some(&token), Some(body.as_bytes())), Ok(r) if r.status == 201)
    })
}

fn health() -> Request {
    Arc::new(|c, _, _| matches!(c.request("GET", "/healthz", None, None), Ok(r) if r.status == 200))
}

/// 8 kB write + fdatasync on the data dir's filesystem, per second.
fn fsync_rate(dir: &std::path::Path, secs: f64) -> f64 {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let buf = vec![7u8; 8192];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Bare PostgreSQL: one single-row INSERT per transaction from `clients` connections (pgbench-like).
fn pg_bare_inserts(url: &str, clients: usize, secs: f64) -> f64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(clients as u32).connect(url).await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_bare (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)").execute(&pool).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (pool, stop) = (pool.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sqlx::query("INSERT INTO bench_bare (payload) VALUES ($1)").bind("x".repeat(600)).execute(&pool).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total as f64 / start.elapsed().as_secs_f64()
    })
}

fn summarize(name: &str, runs: &[Figures]) {
    let mut rps: Vec<f64> = runs.iter().map(|f| f.rps).collect();
    rps.sort_by(|a, b| a.total_cmp(b));
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let errors: u64 = runs.iter().map(|f| f.errors).sum();
    println!(
        "| {name:<34} | {:>9.0} | {:>9.0} | {:>7.2} | {:>7.2} | {errors:>6} |",
        rps[0],
        med(rps.clone()),
        med(runs.iter().map(|f| f.p50_ms).collect()),
        med(runs.iter().map(|f| f.p99_ms).collect()),
    );
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments
    let secs: f64 = std::env::var("FB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let runs: usize = std::env::var("FB_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "ticket_create: {runs} runs of {secs} s each; cores: {}; loadavg before: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_avg.trim()
    );

    let dir = tempfile::tempdir().unwrap();
    let fsync = fsync_rate(dir.path(), 2.0);
    println!("ceiling: 8 kB write + fdatasync: {fsync:.0}/s");
    println!();
    println!(
        "| scenario                           | min req/s | med req/s | p50 ms  | p99 ms  | errors |"
    );
    println!(
        "|------------------------------------|-----------|-----------|---------|---------|--------|"
    );

    // SQLite
    let sq_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sq_dir).unwrap();
    let env = Env::sqlite(&sq_dir);
    let token = env.user_token("bench", &["helpdesk"]);
    let server = env.start();
    for clients in [1, 32] {
        let f: Vec<_> = (0..runs)
            .map(|_| load(server.addr, clients, secs, &health()))
            .collect();
        summarize(&format!("ceiling: GET /healthz, {clients} conns"), &f);
    }
    for clients in [1, 32] {
        let f: Vec<_> = (0..runs)
            .map(|_| load(server.addr, clients, secs, &create_ticket(token.clone())))
            .collect();
        summarize(&format!("SQLite POST /tickets, {clients} conns"), &f);
    }
    drop(server);

    // PostgreSQL
    let (url, schema) = support::pg_schema_url();
    for clients in [1, 32] {
        let rates: Vec<f64> = (0..runs)
            .map(|_| pg_bare_inserts(&url, clients, secs))
            .collect();
        let f: Vec<Figures> = rates
            .into_iter()
            .map(|rps| Figures {
                rps,
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                errors: 0,
            })
            .collect();
        summarize(&format!("ceiling: PG bare 1-row tx, {clients} conns"), &f);
    }
    let pg_dir = dir.path().join("pg");
    std::fs::create_dir_all(&pg_dir).unwrap();
    let env = Env {
        data_dir: pg_dir,
        database_url: Some(url),
        key_file: None,
        lease_secs: None,
    };
    let token = env.user_token("bench", &["helpdesk"]);
    let server = env.start();
    for clients in [1, 32] {
        let f: Vec<_> = (0..runs)
            .map(|_| load(server.addr, clients, secs, &create_ticket(token.clone())))
            .collect();
        summarize(&format!("PostgreSQL POST /tickets, {clients} conns"), &f);
    }
    drop(server);
    support::drop_pg_schema(&schema);
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nloadavg after: {}", load_avg.trim());
}
