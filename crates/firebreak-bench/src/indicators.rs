//! `firebreak-bench indicators`: the local indicator store at scale (issue 8: 10,000,000
//! indicators loaded, matching adds < 5 µs per observable, memory < 1 GiB).
//!
//! 1. In process: the matcher (`IndicatorSet`) built from N indicators; its size, build time
//!    and the time of a lookup (hits and misses), single thread.
//! 2. End to end, on the release binary: `firebreak indicators import` of a CSV of N
//!    indicators; `firebreak serve` loading them (time until `/metrics` says N, and the
//!    server's resident memory with and without them); then the same EVE intake with and
//!    without the indicators loaded, 5% of events matching, to get what matching adds per
//!    observable on the real intake path.

use crate::intake::{Env, curl, pg_url_for, psql, resolve_bin};
use crate::procfs;
use anyhow::{Context, Result, bail};
use clap::Args;
use firebreak_intel::matcher::IndicatorSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct IndicatorsArgs {
    /// Indicators to load.
    #[arg(long, default_value_t = 10_000_000)]
    pub count: u64,
    /// EVE events ingested with and without the indicators (each has 2 IP observables).
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    #[arg(long, value_enum, default_value_t = crate::ui::UiBackends::Sqlite)]
    pub backend: crate::ui::UiBackends,
    #[arg(long, default_value = "target/release/firebreak")]
    pub bin: PathBuf,
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Skip the end-to-end part (matcher only).
    #[arg(long)]
    pub matcher_only: bool,
}

/// The i-th indicator: (kind, value). IPs from 11.0.0.0 up (unique), domains, SHA-256 and URLs.
fn indicator(i: u64) -> (&'static str, String) {
    match i % 10 {
        0..=3 => {
            let ip = 0x0B00_0000u32.wrapping_add((i / 10 * 4 + i % 10) as u32);
            ("ip", std::net::Ipv4Addr::from(ip).to_string())
        }
        4..=6 => ("domain", format!("bad-{i}.example-{}.com", i % 97)),
        7..=8 => (
            "sha256",
            format!(
                "{:016x}{:016x}{:016x}{:016x}",
                mix(i),
                mix(i + 1),
                mix(i + 2),
                mix(i + 3)
            ),
        ),
        _ => (
            "url",
            format!("https://phish-{}.example.net/login/{i}", i % 1013),
        ),
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn matcher(n: u64) -> (f64, f64, f64, f64, usize) {
    let started = Instant::now();
    let mut b = IndicatorSet::builder();
    b.reserve(n as usize);
    let mut keys = Vec::with_capacity(1_000);
    for i in 0..n {
        let (k, v) = indicator(i);
        if i % (n / 1000).max(1) == 0 {
            keys.push((k, v.clone()));
        }
        b.push(k, &v);
    }
    let set = b.build();
    let build_s = started.elapsed().as_secs_f64();
    // lookups: the keys are made before timing, so only `contains` is timed
    let hits: Vec<(&str, String)> = (0..200_000u64)
        .map(|j| keys[(j % keys.len() as u64) as usize].clone())
        .collect();
    let misses: Vec<(&str, String)> = (0..200_000u64)
        .map(|j| {
            (
                "ip",
                std::net::Ipv4Addr::from(0xC633_6400u32 + j as u32).to_string(),
            )
        })
        .collect();
    let t = Instant::now();
    let mut found = 0usize;
    for (k, v) in &hits {
        found += usize::from(set.contains(k, v));
    }
    let hit_ns = t.elapsed().as_nanos() as f64 / hits.len() as f64;
    let t = Instant::now();
    let mut wrong = 0usize;
    for (k, v) in &misses {
        wrong += usize::from(set.contains(k, v));
    }
    let miss_ns = t.elapsed().as_nanos() as f64 / misses.len() as f64;
    assert_eq!(found, hits.len(), "every loaded indicator is found");
    (
        build_s,
        hit_ns,
        miss_ns,
        set.memory_bytes() as f64 / 1048576.0,
        wrong,
    )
}

fn write_csv(path: &std::path::Path, n: u64) -> Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "type,value,confidence,source")?;
    for i in 0..n {
        let (k, v) = indicator(i);
        writeln!(w, "{k},{v},{},bench-feed", 50 + (i % 50))?;
    }
    w.flush()?;
    Ok(())
}

/// EVE lines, 2 IPs each; with `hits`, every 20th source address is a loaded indicator.
fn eve(n: u64, salt: u64, hits: bool) -> String {
    let mut body = String::with_capacity(n as usize * 380);
    for i in 0..n {
        let src = if hits && i % 20 == 0 {
            indicator((i / 20 * 10) % 1_000_000).1
        } else {
            std::net::Ipv4Addr::from(0xCB00_7100u32 + ((i + salt) % 60_000) as u32).to_string()
        };
        let line = serde_json::json!({
            "timestamp": "2026-12-06T06:00:00.000000+0000", "event_type": "alert",
            "src_ip": src, "src_port": 40000 + (i % 20000),
            "dest_ip": format!("10.9.{}.{}", (i / 200) % 200, i % 200), "dest_port": 443, "proto": "TCP",
            "alert": {"action": "allowed", "gid": 1, "signature_id": 2_100_000 + ((i + salt) % 5000), "rev": 1,
                      "signature": format!("ET POLICY indicator bench {}", (i + salt) % 5000), "category": "Misc activity", "severity": 3},
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    body
}

fn ingest(base: &str, token: &str, body: &str) -> Result<f64> {
    let tmp = std::env::temp_dir().join(format!("fb-ind-{}.ndjson", std::process::id()));
    std::fs::write(&tmp, body)?;
    let n = body.lines().count() as f64;
    let started = Instant::now();
    let (code, text) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &format!("@{}", tmp.display()),
        &format!("{base}/api/v1/ingest/ndjson?format=eve"),
    ])?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&tmp);
    if code != 200 {
        bail!("ingest answered {code}: {text}");
    }
    Ok(n / secs)
}

fn loaded(base: &str) -> Option<u64> {
    let (code, text) = curl(&["-s", &format!("{base}/metrics")]).ok()?;
    if code != 200 {
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("firebreak_indicators_loaded"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

fn end_to_end(
    args: &IndicatorsArgs,
    bin: &std::path::Path,
    work: &std::path::Path,
    csv: &std::path::Path,
    backend: &str,
) -> Result<bool> {
    let run_dir = work.join(format!("ind-{backend}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let database_url = if backend == "postgres" {
        let db = format!("firebreak_bench_ind_{}", std::process::id());
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
    let out = env
        .cmd()
        .args([
            "user", "add", "bench", "--role", "admin", "--role", "helpdesk",
        ])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("user add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = env
        .cmd()
        .args(["token", "create", "--user", "bench"])
        .stdin(Stdio::null())
        .output()?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // baseline: intake with no indicators
    let server = env.start_server()?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_empty = procfs::vm_rss_kib(server.pid()).unwrap_or(0) as f64 / 1024.0;
    let warm = eve(20_000, 7, false);
    ingest(&server.base, &token, &warm)?;
    let base_rate = ingest(&server.base, &token, &eve(args.events, 1_000, false))?;
    server.stop()?;
    // import
    let started = Instant::now();
    let out = env
        .cmd()
        .args([
            "indicators",
            "import",
            &csv.display().to_string(),
            "--format",
            "csv",
            "--source",
            "bench-feed",
        ])
        .stdin(Stdio::null())
        .output()?;
    let import_s = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "indicators import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "{backend}: import of {} indicators: {import_s:.1} s ({:.0}/s): {}",
        args.count,
        args.count as f64 / import_s,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    // load, then the same intake with matching off and on, alternated on the same database
    // (the database grows with every run: alternating keeps that out of the difference)
    let started = Instant::now();
    let server = env.start_server()?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if loaded(&server.base) == Some(args.count) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server did not load the indicators within 30 min");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let load_s = started.elapsed().as_secs_f64();
    let rss_loaded = procfs::vm_rss_kib(server.pid()).unwrap_or(0) as f64 / 1024.0;
    let hwm = procfs::vm_hwm_kib(server.pid()).unwrap_or(0) as f64 / 1024.0;
    server.stop()?;
    println!(
        "{backend}: server start to {} indicators loaded: {load_s:.1} s; resident memory {rss_empty:.0} MiB empty, {rss_loaded:.0} MiB loaded (peak {hwm:.0} MiB)",
        args.count
    );
    let (mut off, mut on, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..2u64 {
        for matching in [false, true] {
            let mut c = env.cmd();
            c.env(
                "FIREBREAK_INDICATOR_MATCHING",
                if matching { "on" } else { "off" },
            );
            let server = env.start_server_with(c)?;
            if matching {
                while loaded(&server.base) != Some(args.count) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            ingest(&server.base, &token, &eve(20_000, 11 + round, false))?;
            let r = ingest(
                &server.base,
                &token,
                &eve(args.events, 3_000 + round * 7, false),
            )?;
            if matching {
                on.push(r);
                hits.push(ingest(
                    &server.base,
                    &token,
                    &eve(args.events, 5_000 + round * 7, true),
                )?);
            } else {
                off.push(r);
            }
            server.stop()?;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (off_r, on_r, hits_r) = (mean(&off), mean(&on), mean(&hits));
    let per_obs_us = ((1e6 / on_r - 1e6 / off_r) / 2.0).max(0.0);
    println!(
        "{backend}: EVE intake {base_rate:.0} ev/s on the empty database; with {} indicators stored: matching off {:.0} ev/s {:?}, on {:.0} ev/s {:?} (nothing matches), on {:.0} ev/s {:?} (5% of events match)",
        args.count,
        off_r,
        off.iter().map(|x| x.round()).collect::<Vec<_>>(),
        on_r,
        on.iter().map(|x| x.round()).collect::<Vec<_>>(),
        hits_r,
        hits.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    println!(
        "{backend}: matching adds {per_obs_us:.2} µs per observable (2 per event, off vs on on the same database){}",
        if per_obs_us < 5.0 {
            " ok (< 5 µs)"
        } else {
            " MISSES (< 5 µs)"
        }
    );
    Ok(per_obs_us < 5.0 && rss_loaded < 1024.0)
}

pub fn run(args: &IndicatorsArgs) -> Result<bool> {
    println!(
        "machine: {} cores, {} MiB available of {} MiB, load {}",
        procfs::nproc(),
        procfs::mem_available_mib(),
        procfs::mem_total_mib(),
        procfs::loadavg()
    );
    let (build_s, hit_ns, miss_ns, mib, wrong) = matcher(args.count);
    println!(
        "matcher: {} indicators in {mib:.1} MiB, built in {build_s:.1} s (with making the strings); lookup {hit_ns:.0} ns on a hit, {miss_ns:.0} ns on a miss; {wrong} false hits in 200,000 misses",
        args.count
    );
    let mut ok = hit_ns < 5_000.0 && miss_ns < 5_000.0 && mib < 1024.0;
    if args.matcher_only {
        return Ok(ok);
    }
    let bin = resolve_bin(&args.bin)?;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("firebreak-bench-ind-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let csv = work.join("indicators.csv");
    let t = Instant::now();
    write_csv(&csv, args.count).context("writing the CSV")?;
    println!(
        "generated {} ({} MiB) in {:.1} s",
        csv.display(),
        std::fs::metadata(&csv)?.len() >> 20,
        t.elapsed().as_secs_f64()
    );
    let backends: &[&str] = match args.backend {
        crate::ui::UiBackends::Sqlite => &["sqlite"],
        crate::ui::UiBackends::Postgres => &["postgres"],
        crate::ui::UiBackends::Both => &["sqlite", "postgres"],
    };
    for b in backends {
        ok &= end_to_end(args, &bin, &work, &csv, b)?;
    }
    Ok(ok)
}
