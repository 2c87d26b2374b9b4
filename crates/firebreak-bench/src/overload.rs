//! `firebreak-bench overload` (issue 9 item 4, RELIABILITY.md G4): measure the sustainable
//! intake rate of one SQLite node, then offer ten times that for a while. The server must stay
//! responsive (`/healthz` and a signed-in UI page answered with p99 < 200 ms), shed with 429/503
//! and `Retry-After` (every refusal, every request answered), keep its memory bounded
//! (RSS ≤ 512 MiB), lose nothing it accepted, and be back at its sustainable rate within 10 s
//! of the storm (the rate it sustains on the database the storm grew, measured after a rest).

use crate::intake::{Env, resolve_bin};
use crate::procfs;
use crate::ui::{Conn, bench_user, percentile, sign_in};
use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct OverloadArgs {
    /// The firebreak binary (a release build).
    #[arg(long, default_value = "target/release/firebreak")]
    pub bin: PathBuf,
    /// Working directory; default a new temporary directory.
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Seconds of closed-loop intake that measure the sustainable rate.
    #[arg(long, default_value_t = 15)]
    pub capacity_secs: u64,
    /// Seconds of overload.
    #[arg(long, default_value_t = 60)]
    pub overload_secs: u64,
    /// The overload as a multiple of the sustainable rate.
    #[arg(long, default_value_t = 10.0)]
    pub factor: f64,
    /// EVE lines per NDJSON body.
    #[arg(long, default_value_t = 500)]
    pub lines: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Unique EVE lines (no duplicates: every accepted line is a new event).
struct Bodies {
    next: AtomicU64,
    lines: usize,
}

impl Bodies {
    fn body(&self) -> (Vec<u8>, u64) {
        let base = self.next.fetch_add(self.lines as u64, Ordering::Relaxed);
        let mut b = Vec::with_capacity(self.lines * 330);
        for i in base..base + self.lines as u64 {
            let _ = writeln!(
                b,
                r#"{{"timestamp":"2026-12-06T09:00:00.000000+0000","flow_id":{i},"event_type":"alert","src_ip":"10.{}.{}.{}","src_port":{},"dest_ip":"192.0.2.10","dest_port":443,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":{},"rev":1,"signature":"overload line {i}","category":"Misc activity","severity":3}}}}"#,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                1024 + (i % 60000),
                2_000_000 + i
            );
        }
        (b, self.lines as u64)
    }
}

#[derive(Default)]
struct Tally {
    bodies_ok: u64,
    events_ok: u64,
    shed_503: u64,
    shed_429: u64,
    shed_with_retry_after: u64,
    other: Vec<u16>,
    io_errors: u64,
}

/// Posts bodies until `stop`, pacing each client to `interval` between sends (open loop) or
/// back to back (`None`).
fn sender(
    base: &str,
    token: &str,
    bodies: &Bodies,
    tally: &Mutex<Tally>,
    stop: &AtomicBool,
    interval: Option<Duration>,
    offered: &AtomicU64,
) {
    let auth = format!("Bearer {token}");
    let mut conn: Option<Conn> = None;
    let mut next_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(iv) = interval {
            let now = Instant::now();
            if next_at > now {
                std::thread::sleep(next_at - now);
            }
            next_at += iv;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let (body, n) = bodies.body();
        offered.fetch_add(n, Ordering::Relaxed);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(base) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    tally.lock().map(|mut t| t.io_errors += 1).ok();
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let res = c.send(
            "POST",
            "/api/v1/ingest/ndjson?format=eve",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/x-ndjson"),
            ],
            &body,
        );
        let Ok(a) = res else {
            conn = None;
            tally.lock().map(|mut t| t.io_errors += 1).ok();
            continue;
        };
        let retry_after = a.headers.iter().any(|(k, _)| k == "retry-after");
        let close = a
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        if let Ok(mut t) = tally.lock() {
            match a.status {
                200 => {
                    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    t.bodies_ok += 1;
                    t.events_ok += v["created"].as_u64().unwrap_or(0)
                        + v["duplicates"].as_u64().unwrap_or(0)
                        + v["suppressed"].as_u64().unwrap_or(0);
                }
                503 | 429 => {
                    if a.status == 503 {
                        t.shed_503 += 1;
                    } else {
                        t.shed_429 += 1;
                    }
                    if retry_after {
                        t.shed_with_retry_after += 1;
                    }
                }
                s => t.other.push(s),
            }
        }
        if close {
            conn = None;
        }
    }
}

/// Times `/healthz` and a signed-in UI page every 100 ms, each on a new connection (as a load
/// balancer's probe and a browser would).
fn prober(
    base: &str,
    cookie: &str,
    stop: &AtomicBool,
    health: &Mutex<Vec<f64>>,
    ui: &Mutex<Vec<f64>>,
    failures: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        for (path, out, headers) in [
            ("/healthz", health, vec![]),
            ("/events", ui, vec![("Cookie", cookie)]),
        ] {
            let t0 = Instant::now();
            let ok = Conn::open(base)
                .and_then(|mut c| c.send("GET", path, &headers, b""))
                .map(|a| a.status == 200)
                .unwrap_or(false);
            if ok {
                if let Ok(mut v) = out.lock() {
                    v.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            } else {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Serialize, Default)]
struct Phase {
    seconds: f64,
    offered_events_per_s: f64,
    accepted_events_per_s: f64,
    accepted_events: u64,
    shed_503: u64,
    shed_429: u64,
    shed_with_retry_after: u64,
    other_statuses: Vec<u16>,
    io_errors: u64,
    health_p50_ms: f64,
    health_p99_ms: f64,
    ui_p50_ms: f64,
    ui_p99_ms: f64,
    probe_failures: u64,
    peak_rss_mib: f64,
}

struct Ctx {
    base: String,
    token: String,
    cookie: String,
    pid: u32,
    bodies: Arc<Bodies>,
}

fn phase(ctx: &Ctx, secs: u64, clients: usize, interval: Option<Duration>) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let offered = Arc::new(AtomicU64::new(0));
    let (health, ui) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let failures = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for i in 0..clients {
        let (base, token, bodies, tally, stop, offered) = (
            ctx.base.clone(),
            ctx.token.clone(),
            ctx.bodies.clone(),
            tally.clone(),
            stop.clone(),
            offered.clone(),
        );
        // spread the open-loop clients' first sends over one interval
        let delay = interval.map(|iv| iv.mul_f64(i as f64 / clients as f64));
        handles.push(std::thread::spawn(move || {
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            sender(&base, &token, &bodies, &tally, &stop, interval, &offered)
        }));
    }
    {
        let (base, cookie, stop, health, ui, failures) = (
            ctx.base.clone(),
            ctx.cookie.clone(),
            stop.clone(),
            health.clone(),
            ui.clone(),
            failures.clone(),
        );
        handles.push(std::thread::spawn(move || {
            prober(&base, &cookie, &stop, &health, &ui, &failures)
        }));
    }
    let mut peak = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        peak = peak.max(procfs::vm_rss_kib(ctx.pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    peak = peak.max(procfs::vm_rss_kib(ctx.pid).unwrap_or(0));
    let secs = t0.elapsed().as_secs_f64();
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    let mut h = std::mem::take(&mut *health.lock().unwrap_or_else(|e| e.into_inner()));
    let mut u = std::mem::take(&mut *ui.lock().unwrap_or_else(|e| e.into_inner()));
    h.sort_by(f64::total_cmp);
    u.sort_by(f64::total_cmp);
    Phase {
        seconds: secs,
        offered_events_per_s: offered.load(Ordering::Relaxed) as f64 / secs,
        accepted_events_per_s: t.events_ok as f64 / secs,
        accepted_events: t.events_ok,
        shed_503: t.shed_503,
        shed_429: t.shed_429,
        shed_with_retry_after: t.shed_with_retry_after,
        other_statuses: t.other,
        io_errors: t.io_errors,
        health_p50_ms: percentile(&h, 0.5),
        health_p99_ms: percentile(&h, 0.99),
        ui_p50_ms: percentile(&u, 0.5),
        ui_p99_ms: percentile(&u, 0.99),
        probe_failures: failures.load(Ordering::Relaxed),
        peak_rss_mib: peak as f64 / 1024.0,
    }
}

fn row(name: &str, p: &Phase) {
    println!(
        "| {name} | {:.0} | {:.0} | {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.0} |",
        p.offered_events_per_s,
        p.accepted_events_per_s,
        p.shed_503 + p.shed_429,
        p.shed_with_retry_after,
        p.other_statuses.len() as u64 + p.io_errors,
        p.health_p50_ms,
        p.health_p99_ms,
        p.ui_p50_ms,
        p.ui_p99_ms,
        p.probe_failures,
        p.peak_rss_mib
    );
}

#[derive(Serialize)]
struct Report {
    machine: String,
    capacity: Phase,
    overload: Phase,
    recovery: Phase,
    reference: Phase,
    stored_events: u64,
    accepted_events: u64,
}

/// Rest before the reference measure, after the recovery.
const SETTLE_SECS: u64 = 15;

pub fn run(args: &OverloadArgs) -> Result<bool> {
    let bin = resolve_bin(&args.bin)?;
    let tmp;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("firebreak-overload-{}", std::process::id()));
            tmp
        }
    };
    let run_dir = work.join("overload");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let env = Env {
        bin,
        data_dir: run_dir.join("data"),
        run_dir: run_dir.clone(),
        database_url: None,
    };
    let token = bench_user(&env, &["helpdesk", "responder"])?;
    let server = env.start_server()?;
    let cookie = sign_in(&server.base)?;
    let ctx = Ctx {
        base: server.base.clone(),
        token,
        cookie,
        pid: server.pid(),
        bodies: Arc::new(Bodies {
            next: AtomicU64::new(1),
            lines: args.lines,
        }),
    };
    let machine = format!(
        "{} CPUs, load {} at start",
        procfs::nproc(),
        procfs::loadavg()
    );
    println!("firebreak-bench overload: one SQLite node; {machine}");
    println!(
        "capacity: 2 clients back to back for {} s, {} lines a body",
        args.capacity_secs, args.lines
    );
    let capacity = phase(&ctx, args.capacity_secs, 2, None);
    let rate = capacity.accepted_events_per_s.max(1.0);
    let bodies_per_s = rate * args.factor / args.lines as f64;
    // a refused request waits for a slot up to 2 s: enough clients that the offer is kept up
    let clients = ((bodies_per_s * 3.0).ceil() as usize).clamp(8, 800);
    let interval = Duration::from_secs_f64(clients as f64 / bodies_per_s);
    println!(
        "overload: {:.0}× = {:.0} events/s offered by {clients} clients, one body each every {:.2} s, for {} s",
        args.factor,
        rate * args.factor,
        interval.as_secs_f64(),
        args.overload_secs
    );
    let overload = phase(&ctx, args.overload_secs, clients, Some(interval));
    println!("recovery: 2 clients back to back for 10 s right after");
    let recovery = phase(&ctx, 10, 2, None);
    // The storm grew the database (by a million events or more), and the rate of a node falls
    // as its database grows: the rate to be back at is measured on the grown database, after
    // a rest that lets anything the storm left behind finish, so that it is what the node
    // sustains at that size. Compared with the first measure the check would blame the storm
    // for the size of the database.
    println!("reference: {SETTLE_SECS} s of rest, then 2 clients back to back for 10 s");
    std::thread::sleep(Duration::from_secs(SETTLE_SECS));
    let reference = phase(&ctx, 10, 2, None);
    // nothing accepted is lost
    let mut c = Conn::open(&ctx.base)?;
    let auth = format!("Bearer {}", ctx.token);
    let a = c.send(
        "GET",
        "/api/v1/events/counts",
        &[("Authorization", auth.as_str())],
        b"",
    )?;
    let counts: serde_json::Value = serde_json::from_slice(&a.body)?;
    let stored: u64 = counts
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let accepted = capacity.accepted_events
        + overload.accepted_events
        + recovery.accepted_events
        + reference.accepted_events;
    let stop = server.stop()?;
    println!();
    println!(
        "| phase | offered ev/s | accepted ev/s | shed (503/429) | with Retry-After | other errors | /healthz p50 / p99 ms | UI p50 / p99 ms | probe failures | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    row("capacity", &capacity);
    row(&format!("{}× overload", args.factor), &overload);
    row("recovery", &recovery);
    row("reference", &reference);
    println!();
    println!("stored events {stored}, accepted {accepted}; server stopped: {stop}");
    let mut ok = true;
    let mut check = |cond: bool, what: String| {
        println!("{} {what}", if cond { "ok  " } else { "FAIL" });
        ok &= cond;
    };
    let shed = overload.shed_503 + overload.shed_429;
    check(shed > 0, format!("the overload was shed ({shed} refusals)"));
    check(
        overload.shed_with_retry_after == shed,
        format!(
            "every refusal had Retry-After ({} of {shed})",
            overload.shed_with_retry_after
        ),
    );
    check(
        overload.other_statuses.is_empty(),
        format!(
            "no other error status ({:?})",
            &overload.other_statuses[..overload.other_statuses.len().min(10)]
        ),
    );
    check(
        overload.health_p99_ms < 200.0,
        format!("/healthz p99 {:.1} ms < 200 ms", overload.health_p99_ms),
    );
    check(
        overload.ui_p99_ms < 200.0,
        format!("UI page p99 {:.1} ms < 200 ms", overload.ui_p99_ms),
    );
    check(
        overload.peak_rss_mib <= 512.0,
        format!("peak RSS {:.0} MiB ≤ 512 MiB", overload.peak_rss_mib),
    );
    check(
        stored >= accepted,
        format!("nothing accepted was lost (stored {stored} ≥ accepted {accepted})"),
    );
    check(
        overload.io_errors == 0,
        format!(
            "every request was answered (connection errors: {})",
            overload.io_errors
        ),
    );
    check(
        recovery.accepted_events_per_s >= 0.7 * reference.accepted_events_per_s,
        format!(
            "back to the sustainable rate within 10 s of the storm ({:.0} vs {:.0} events/s on the grown database; {:.0} on the empty one)",
            recovery.accepted_events_per_s,
            reference.accepted_events_per_s,
            capacity.accepted_events_per_s
        ),
    );
    if let Some(out) = &args.out {
        std::fs::write(
            out,
            serde_json::to_string_pretty(&Report {
                machine,
                capacity,
                overload,
                recovery,
                reference,
                stored_events: stored,
                accepted_events: accepted,
            })?,
        )?;
    }
    Ok(ok)
}
