//! Several real `firebreak serve` processes on one PostgreSQL, driven concurrently: sessions
//! valid on every node, a configuration change applied on every node at once (LISTEN/NOTIFY,
//! not the caches' 5 s), a ticket made on one node announced on another node's live stream,
//! playbook runs executed once wherever they were started, a schedule's slot run once.

use crate::http::Conn;
use crate::live::LiveClient;
use crate::support::{Env, Server, drop_pg_schema, pg_schema_url, stdout};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn ingest(c: &mut Conn, token: &str, sid: u32, src: &str) -> Value {
    let line = json!({
        "timestamp": "2026-12-06T08:00:00.000000+0000",
        "event_type": "alert",
        "src_ip": src,
        "dest_ip": "10.1.2.3",
        "proto": "TCP",
        "alert": {"signature_id": sid, "signature": format!("cluster test {sid}"), "severity": 3, "category": "Misc activity"}
    });
    let r = c
        .request(
            "POST",
            "/api/v1/ingest/ndjson?format=eve",
            Some(token),
            Some(line.to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The session cookie set by signing in on `addr`.
pub fn sign_in(addr: std::net::SocketAddr, user: &str, password: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = crate::support::http_client()
            .post(format!("http://{addr}/api/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    })
}

fn session_status(addr: std::net::SocketAddr, cookie: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        crate::support::http_client()
            .get(format!("http://{addr}/api/v1/auth/session"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// Three nodes on a fresh schema of the test PostgreSQL, sharing the audit and document keys
/// and the webhook settings: (schema, environments, servers).
fn cluster(dir: &std::path::Path) -> (String, Vec<Env>, Vec<Server>) {
    let (url, schema) = pg_schema_url();
    let key = dir.join("shared-audit.key");
    std::fs::write(&key, format!("{}\n", "3b".repeat(32))).unwrap();
    let envs: Vec<Env> = (0..3)
        .map(|i| {
            let d = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            // every node shares the document key and the webhook settings
            std::fs::write(d.join("document.key"), "4c".repeat(32)).unwrap();
            std::fs::write(
                d.join("firebreak.toml"),
                "[webhooks]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYqr\"\nallow_private_targets = true\n",
            )
            .unwrap();
            Env {
                data_dir: d,
                database_url: Some(url.clone()),
                key_file: Some(key.clone()),
                lease_secs: None,
            }
        })
        .collect();
    let starters: Vec<_> = envs
        .iter()
        .cloned()
        .map(|e| std::thread::spawn(move || e.start()))
        .collect();
    let servers: Vec<Server> = starters.into_iter().map(|h| h.join().unwrap()).collect();
    (schema, envs, servers)
}

#[test]
fn three_nodes_share_sessions_config_changes_and_playbook_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, envs, servers) = cluster(dir.path());
    let admin = envs[0].user_token("ops", &["admin"]);
    let resp = envs[1].user_token("rita", &["responder", "helpdesk"]);
    let mut conns: Vec<Conn> = servers.iter().map(|s| Conn::new(s.addr)).collect();

    // a session made on one node is good on the others; signing out on one ends it everywhere
    let out = envs[2].cli_stdin(
        &[
            "user",
            "add",
            "sam",
            "--role",
            "responder",
            "--password-stdin",
        ],
        "a long passphrase for sam\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cookie = sign_in(servers[0].addr, "sam", "a long passphrase for sam");
    for s in &servers {
        assert_eq!(session_status(s.addr, &cookie), 200);
    }

    // a ticket made through node 0 is on node 1's live stream (relayed from NOTIFY) within 2 s,
    // and on node 0's own stream once (its own NOTIFY, heard back, is not told twice)
    let live1 = LiveClient::open(servers[1].addr, Some(&cookie)).unwrap();
    let live0 = LiveClient::open(servers[0].addr, Some(&cookie)).unwrap();
    let t0 = Instant::now();
    let r = conns[0]
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&resp),
            Some(br#"{"title":"seen on every node"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = t0.elapsed();
    let heard = live1
        .wait_for("tickets", t0, t0 + Duration::from_secs(2))
        .unwrap_or_else(|| {
            panic!(
                "node 1's stream did not announce node 0's ticket within 2 s: {:?}",
                live1.events()
            )
        });
    let cross_node = heard - t0;
    assert!(
        live0
            .wait_for("tickets", t0, t0 + Duration::from_secs(2))
            .is_some()
    );
    // long enough for the echo, and for a coalesced second message 250 ms later
    let quiet = Instant::now() + Duration::from_millis(800);
    while Instant::now() < quiet {
        std::thread::sleep(Duration::from_millis(20));
    }
    let told = live0
        .events()
        .into_iter()
        .filter(|(at, t)| *at >= t0 && t == "tickets")
        .count();
    assert_eq!(
        told,
        1,
        "node 0 told its own change once: {:?}",
        live0.events()
    );
    drop((live0, live1));

    // a suppression rule made on node 0 applies to node 1's very next event (node 1's intake
    // cache was loaded just before and would otherwise hold the old rules for 5 s)
    let warm = ingest(&mut conns[1], &resp, 9_100_000, "198.51.100.1");
    assert_eq!(warm["created"], 1, "{warm}");
    let r = conns[0]
        .request(
            "POST",
            "/api/v1/suppression-rules",
            Some(&resp),
            Some(
                json!({"name": "cluster noise", "condition": "event.rule_id == \"9100001\"", "reason": "lab scanner"})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let t0 = Instant::now();
    let suppressed_after = loop {
        std::thread::sleep(Duration::from_millis(100));
        let v = ingest(
            &mut conns[1],
            &resp,
            9_100_001,
            &format!("198.51.100.{}", 10 + t0.elapsed().as_millis() / 100),
        );
        if v["suppressed"] == 1 {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "node 1 still applies its cached rules: {v}"
        );
    };

    // playbook runs started on every node run once each
    let (hook, ids) = crate::support::webhook_receiver();
    let pb = json!({
        "name": "cluster-hook", "trigger": "manual",
        "steps": [{"id": "tell", "webhook": {"url": hook}}]
    });
    conns[0].create("/api/v1/playbooks", &admin, &pb);
    let r = conns[2]
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&resp),
            Some(br#"{"title":"cluster runs"}"#),
        )
        .unwrap();
    let number = r.json()["number"].as_str().unwrap().to_string();
    let body = json!({ "ticket": number }).to_string();
    let started = Instant::now();
    let mut runs = Vec::new();
    for i in 0..30 {
        let r = conns[i % 3]
            .request(
                "POST",
                "/api/v1/playbooks/cluster-hook/run",
                Some(&resp),
                Some(body.as_bytes()),
            )
            .unwrap();
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        runs.push(r.json()["id"].as_str().unwrap().to_string());
    }
    for (i, run) in runs.iter().enumerate() {
        loop {
            let v = conns[(i + 1) % 3]
                .request(
                    "GET",
                    &format!("/api/v1/playbook-runs/{run}"),
                    Some(&resp),
                    None,
                )
                .unwrap()
                .json();
            if v["status"] == "succeeded" {
                assert_eq!(v["attempts"], 0, "one clean attempt: {v}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {run} did not finish: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let all_done = started.elapsed();
    let got = ids.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(got.len(), 30, "each run's webhook delivered once: {got:?}");
    assert_eq!(distinct.len(), 30);

    // signing out on node 2 ends the session on every node
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let csrf = rt.block_on(async {
        let v: Value = crate::support::http_client()
            .get(format!("http://{}/api/v1/auth/session", servers[2].addr))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["csrf_token"].as_str().unwrap_or_default().to_string()
    });
    let status = rt.block_on(async {
        crate::support::http_client()
            .post(format!("http://{}/api/v1/auth/logout", servers[2].addr))
            .header("cookie", &cookie)
            .header("x-csrf-token", csrf)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204);
    for s in &servers {
        assert_eq!(session_status(s.addr, &cookie), 401);
    }
    eprintln!(
        "cluster: ticket created through node 0 in {created:?}, on node 1's live stream after {cross_node:?}; rule applied on another node after {suppressed_after:?}; 30 runs over 3 nodes done in {all_done:?}"
    );
    let verify = envs[0].cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    drop(servers);
    drop_pg_schema(&schema);
}

/// Unix milliseconds now.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A playbook scheduled every minute (the cron's finest step) on three nodes: each node's
/// schedule loop looks back 61 s every 20 s, so every slot is enqueued up to three times by
/// every node, the first time by all three within milliseconds (nodes started together tick
/// together); each slot must still be one run with one webhook delivered. Two slots are
/// waited for until they are past that window (two to three minutes of wall time). With a key
/// that is not the slot's alone (a fresh id in it) it fails, tried: 24 runs where 4 minutes began.
#[test]
fn three_nodes_run_each_schedule_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, envs, servers) = cluster(dir.path());
    let admin = envs[0].user_token("ops", &["admin"]);
    let (hook, ids) = crate::support::webhook_receiver();
    let created_ms = unix_ms();
    let pb = json!({
        "name": "every-minute",
        "trigger": {"on": "schedule", "cron": "* * * * *"},
        "steps": [{"id": "tell", "webhook": {"url": hook}}]
    });
    Conn::new(servers[0].addr).create("/api/v1/playbooks", &admin, &pb);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = rt
        .block_on(sqlx::PgPool::connect(&crate::support::pg_url()))
        .unwrap();
    // (slot in unix ms, run id, status) of every scheduled run
    let runs = || -> Vec<(i64, String, String)> {
        let rows: Vec<(String, String, String)> = rt
            .block_on(
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT idempotency_key, id::text, status FROM {schema}.jobs \
                     WHERE idempotency_key LIKE 'pb:every-minute:schedule:%'"
                )))
                .fetch_all(&pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|(key, id, status)| {
                let slot: i64 = key.rsplit(':').next().unwrap().parse().unwrap();
                (slot, id, status)
            })
            .collect()
    };
    // until two slots are past the minute in which the loops enqueue them (a slot is the
    // newest in every look back from its start to 61 s later: three 20 s ticks per node) and
    // their runs have finished
    const WINDOW_MS: i64 = 61_000 + 20_000 + 5_000;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (seen, ended_ms) = loop {
        let seen = runs();
        let now = unix_ms();
        let done: Vec<&(i64, String, String)> =
            seen.iter().filter(|r| now >= r.0 + WINDOW_MS).collect();
        let done_slots: BTreeSet<i64> = done.iter().map(|r| r.0).collect();
        if done_slots.len() >= 2 && done.iter().all(|r| r.2 == "succeeded") {
            break (seen, now);
        }
        assert!(
            Instant::now() < deadline,
            "two scheduled slots did not run: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let slots: BTreeSet<i64> = seen.iter().map(|r| r.0).collect();
    // one run per slot, whatever the key: no more runs than minutes began from a minute before
    // the playbook existed (the loop looks back one minute) to now
    let minutes = (created_ms - 61_000..=ended_ms)
        .filter(|ms| ms % 60_000 == 0)
        .count();
    assert!(
        seen.len() <= minutes,
        "{} runs for {minutes} slots: {seen:?}",
        seen.len()
    );
    assert_eq!(seen.len(), slots.len(), "a slot ran twice: {seen:?}");
    assert!(slots.iter().all(|s| s % 60_000 == 0), "{slots:?}");
    // each finished slot's webhook went out once (a newer slot's may be on its way)
    let done: Vec<&(i64, String, String)> = seen
        .iter()
        .filter(|r| ended_ms >= r.0 + WINDOW_MS)
        .collect();
    let want: BTreeSet<String> = done.iter().map(|r| format!("{}.tell", r.1)).collect();
    let got: Vec<String> = ids
        .lock()
        .unwrap()
        .iter()
        .filter(|id| want.contains(*id))
        .cloned()
        .collect();
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), done.len(), "one webhook per run: {got:?}");
    assert_eq!(distinct, want);
    assert!(
        ids.lock().unwrap().len() <= seen.len(),
        "no webhook of a run that does not exist"
    );
    eprintln!(
        "cluster schedule: {} slots over 3 nodes ({} past their enqueue window), one run and one webhook each, {:.0} s after the playbook was stored",
        slots.len(),
        done.len(),
        (ended_ms - created_ms) as f64 / 1000.0
    );
    rt.block_on(pool.close());
    drop(servers);
    drop_pg_schema(&schema);
}
