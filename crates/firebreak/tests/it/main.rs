//! The real binary: CLI, first start, audit verification, kill -9 durability, several nodes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

mod automation;
mod backup;
mod browser;
mod cluster;
mod crash;
mod faults;
mod http;
mod ingest_client;
mod live;
mod logs;
mod support;
mod ticket_client;
mod tidy;

use http::Conn;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[test]
fn fresh_install_creates_admin_and_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let mut server = env.start();
    let pw_file = dir.path().join("initial-admin-password");
    let meta =
        std::fs::metadata(&pw_file).expect("password file written when stdout is not a terminal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(&pw_file).unwrap().trim().len() >= 16);
    let out = env.cli(&["token", "create", "--user", "admin", "--name", "ops"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(
        text.lines().count(),
        1,
        "token create prints only the token: {text:?}"
    );
    let token = text.trim();
    assert!(token.starts_with("fbk_"));
    let mut c = Conn::new(server.addr);
    let me = c
        .request("GET", "/api/v1/users/me", Some(token), None)
        .unwrap();
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "admin");
    assert_eq!(me.json()["roles"], json!(["admin"]));
    assert_eq!(c.request("GET", "/readyz", None, None).unwrap().status, 200);
    // a restart does not create a second admin
    let status = server.terminate();
    assert!(status.success(), "SIGTERM ends serve cleanly: {status:?}");
    let _server = env.start();
    let users = env.cli(&["user", "list"]);
    assert_eq!(
        stdout(&users)
            .lines()
            .filter(|l| l.starts_with("admin "))
            .count(),
        1
    );
}

#[test]
fn user_and_token_commands() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let out = env.cli_stdin(
        &[
            "user",
            "add",
            "cso",
            "--role",
            "manager",
            "--role",
            "senior_responder",
            "--title",
            "CSO",
            "--seniority",
            "9",
            "--email",
            "cso@example.org",
            "--password-stdin",
        ],
        "correct horse battery staple\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout(&out).contains("password"),
        "no password printed with --password-stdin"
    );
    let out = env.cli(&["user", "add", "rita", "--role", "responder"]);
    assert!(
        stdout(&out).contains("password: "),
        "a random password is printed once"
    );
    let bad = env.cli(&["user", "add", "x", "--role", "boss"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("senior_responder"),
        "lists the valid roles"
    );
    let dup = env.cli(&["user", "add", "rita", "--role", "responder"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let list = stdout(&env.cli(&["user", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("cso ") && l.contains("CSO") && l.contains("manager")),
        "{list}"
    );

    let server = env.start();
    let token = stdout(&env.cli(&[
        "token",
        "create",
        "--user",
        "rita",
        "--scope",
        "read",
        "--expires",
        "1d",
    ]))
    .trim()
    .to_string();
    let mut c = Conn::new(server.addr);
    assert_eq!(
        c.request("GET", "/api/v1/tickets", Some(&token), None)
            .unwrap()
            .status,
        200
    );
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&token),
            Some(br#"{"title":"x"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 403, "read-scoped token cannot write");
    // a second token, revoked by id: it fails at once, the first keeps working
    let other = stdout(&env.cli(&["token", "create", "--user", "rita", "--name", "laptop"]))
        .trim()
        .to_string();
    assert_eq!(
        c.request("GET", "/api/v1/tickets", Some(&other), None)
            .unwrap()
            .status,
        200
    );
    let list = stdout(&env.cli(&["token", "list", "--user", "rita"]));
    let id = list
        .lines()
        .find(|l| l.contains("laptop"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(!list.contains("fbk_"), "token list never shows secrets");
    assert!(
        env.cli(&["token", "revoke", "--user", "rita", &id])
            .status
            .success()
    );
    assert_eq!(
        c.request("GET", "/api/v1/tickets", Some(&other), None)
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        c.request("GET", "/api/v1/tickets", Some(&token), None)
            .unwrap()
            .status,
        200
    );
    assert!(
        stdout(&env.cli(&["token", "list", "--user", "rita"]))
            .lines()
            .any(|l| l.contains("laptop") && l.contains("revoked"))
    );
    let out = env.cli(&["user", "set-role", "rita", "--role", "auditor"]);
    assert!(stdout(&out).contains("auditor"));
    // disabling from the CLI ends the token at once, while the server runs
    assert!(env.cli(&["user", "disable", "rita"]).status.success());
    assert_eq!(
        c.request("GET", "/api/v1/tickets", Some(&token), None)
            .unwrap()
            .status,
        401
    );
    let bad = env.cli(&["token", "create", "--user", "rita", "--expires", "soon"]);
    assert!(!bad.status.success());
    let verify = env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

fn create_tickets(env: &Env, token: &str, n: usize) {
    let server = env.start();
    let mut c = Conn::new(server.addr);
    for i in 0..n {
        let r = c
            .request(
                "POST",
                "/api/v1/tickets",
                Some(token),
                Some(json!({"title": format!("t{i}")}).to_string().as_bytes()),
            )
            .unwrap();
        assert_eq!(r.status, 201);
        c.request(
            "POST",
            &format!(
                "/api/v1/tickets/{}/log",
                r.json()["number"].as_str().unwrap()
            ),
            Some(token),
            Some(br#"{"text":"note"}"#),
        )
        .unwrap();
    }
}

fn sqlite_exec(db: &std::path::Path, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn audit_verify_detects_every_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    let env = Env::sqlite(&base);
    let token = env.user_token("rita", &["responder"]);
    create_tickets(&env, &token, 5);
    let ok = env.cli(&["audit", "verify"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("audit chain intact"));

    // Each attack is made with database access only (no access to the audit key).
    let attacks: &[(&str, &str, &str)] = &[
        (
            "edit",
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4",
            "entry 4",
        ),
        (
            "edit details",
            "UPDATE audit_log SET details = '{}' WHERE seq = 5",
            "entry 5",
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 6", "entry 6"),
        (
            "reorder",
            "UPDATE audit_log SET seq = -1 WHERE seq = 7; UPDATE audit_log SET seq = 7 WHERE seq = 8; UPDATE audit_log SET seq = 8 WHERE seq = -1",
            "entry 7",
        ),
        (
            "cut the tail",
            "DELETE FROM audit_log WHERE seq > 9; DELETE FROM audit_checkpoints WHERE seq > 9",
            "newest entries removed",
        ),
        (
            "forge a checkpoint",
            "UPDATE audit_checkpoints SET signature = CASE WHEN substr(signature, 1, 2) = '00' THEN '11' ELSE '00' END || substr(signature, 3) WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)",
            "signature",
        ),
        (
            "insert",
            "INSERT INTO audit_log SELECT seq + 1000, id, occurred_at, 'mallory', action, object_type, object_id, ticket_id, details, prev_hash, hash FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            "entry",
        ),
    ];
    for (name, sql, needle) in attacks {
        let case = dir.path().join(name.replace(' ', "_"));
        copy_dir(&base, &case);
        sqlite_exec(&case.join("firebreak.db"), sql);
        let out = Env::sqlite(&case).cli(&["audit", "verify"]);
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: verify must fail: {text}"
        );
        assert!(
            text.contains("AUDIT CHAIN BROKEN") && text.contains(needle),
            "{name}: {text}"
        );
    }
    // the head file outside the database is required once entries exist
    let case = dir.path().join("no_head");
    copy_dir(&base, &case);
    std::fs::remove_file(case.join("audit-head")).unwrap();
    let out = Env::sqlite(&case).cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // a wrong key does not verify
    let case = dir.path().join("other_key");
    copy_dir(&base, &case);
    std::fs::write(case.join("audit.key"), format!("{}\n", "11".repeat(32))).unwrap();
    let out = Env::sqlite(&case).cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

/// Posts tickets from several clients until the server dies; returns what was acknowledged.
fn load_until_killed(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    round: usize,
    acked: &Arc<Mutex<BTreeMap<String, String>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (token, acked, stop) = (token.to_string(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(addr);
                for seq in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let title = format!("r{round}-c{c}-s{seq}");
                    let body = json!({"title": title, "tags": ["crash"]}).to_string();
                    match conn.request(
                        "POST",
                        "/api/v1/tickets",
                        Some(&token),
                        Some(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 201 => {
                            acked
                                .lock()
                                .unwrap()
                                .insert(r.json()["number"].as_str().unwrap().to_string(), title);
                        }
                        Ok(r) => panic!(
                            "unexpected status {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

fn crash_rounds(env: &Env, rounds: usize) {
    let token = env.user_token("rita", &["responder"]);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..rounds {
        let mut server = env.start();
        let stop = Arc::new(AtomicBool::new(false));
        let handles = load_until_killed(server.addr, &token, 8, round, &acked, &stop);
        std::thread::sleep(Duration::from_millis(700 + 400 * round as u64));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load produced too few writes ({}) to mean anything",
        acked.len()
    );
    let server = env.start();
    let mut c = Conn::new(server.addr);
    c.assert_tickets_stored(&token, &acked);
    let verify = env.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit chain after kill -9: {}",
        stdout(&verify)
    );
    eprintln!(
        "crash test: {rounds} rounds, {} acknowledged creates, 0 lost",
        acked.len()
    );
}

#[test]
fn acknowledged_tickets_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crash_rounds(&Env::sqlite(dir.path()), 3);
}

#[test]
fn acknowledged_tickets_survive_kill_9_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let env = Env {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url),
        key_file: None,
        lease_secs: None,
    };
    crash_rounds(&env, 2);
    drop_pg_schema(&schema);
}

#[test]
fn three_nodes_on_one_postgres_number_tickets_uniquely() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let key = dir.path().join("shared-audit.key");
    let envs: Vec<Env> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Env {
                data_dir: d,
                database_url: Some(url.clone()),
                key_file: Some(key.clone()),
                lease_secs: None,
            }
        })
        .collect();
    std::fs::write(&key, format!("{}\n", "2a".repeat(32))).unwrap();
    // started together: migrations and the first admin happen once
    let starters: Vec<_> = envs
        .iter()
        .cloned()
        .map(|e| std::thread::spawn(move || e.start()))
        .collect();
    let servers: Vec<Server> = starters.into_iter().map(|h| h.join().unwrap()).collect();
    let admins = stdout(&envs[0].cli(&["user", "list"]))
        .lines()
        .filter(|l| l.starts_with("admin "))
        .count();
    assert_eq!(
        admins, 1,
        "exactly one admin created by three nodes starting together"
    );
    let token = envs[0].user_token("rita", &["responder"]);
    let numbers = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..6)
        .map(|c| {
            let addr = servers[c % 3].addr;
            let (token, numbers) = (token.clone(), numbers.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(addr);
                for i in 0..40 {
                    let r = conn
                        .request(
                            "POST",
                            "/api/v1/tickets",
                            Some(&token),
                            Some(json!({"title": format!("n{c}-{i}")}).to_string().as_bytes()),
                        )
                        .unwrap();
                    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                    numbers
                        .lock()
                        .unwrap()
                        .push(r.json()["number"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut n = numbers.lock().unwrap().clone();
    let total = n.len();
    n.sort();
    n.dedup();
    assert_eq!(n.len(), total, "duplicate ticket numbers across nodes");
    assert_eq!(total, 240);
    let verify = envs[0].cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    drop(servers);
    drop_pg_schema(&schema);
}

#[test]
fn audit_verify_passes_while_a_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let token = env.user_token("rita", &["responder"]);
    let server = env.start();
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load_until_killed(server.addr, &token, 4, 0, &acked, &stop);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "verify under load: {}", stdout(&out));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert!(!acked.lock().unwrap().is_empty());
}

#[test]
fn a_command_with_the_wrong_audit_key_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let a = Env {
        data_dir: dir.path().join("a"),
        database_url: Some(url.clone()),
        key_file: None,
        lease_secs: None,
    };
    let b = Env {
        data_dir: dir.path().join("b"),
        database_url: Some(url),
        key_file: None,
        lease_secs: None,
    };
    std::fs::create_dir_all(&a.data_dir).unwrap();
    std::fs::create_dir_all(&b.data_dir).unwrap();
    a.user_token("rita", &["responder"]);
    // b's data dir has no key: it would generate its own and sign with it
    let out = b.cli(&["user", "add", "sam", "--role", "responder"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FIREBREAK_AUDIT_KEY_FILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !b.data_dir.join("audit.key").exists(),
        "the stray key is not left behind"
    );
    assert!(a.cli(&["audit", "verify"]).status.success());
    drop_pg_schema(&schema);
}

#[test]
fn nul_and_control_characters_are_422_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let env = Env {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url),
        key_file: None,
        lease_secs: None,
    };
    let token = env.user_token("rita", &["responder"]);
    let server = env.start();
    let mut c = Conn::new(server.addr);
    for body in [
        r#"{"title":"a\u0000b"}"#,
        r#"{"title":"ok","description":"x\u0000"}"#,
        r#"{"title":"ok","tags":["\u0000"]}"#,
        r#"{"title":"ok","assignee":"a\u0000"}"#,
    ] {
        let r = c
            .request(
                "POST",
                "/api/v1/tickets",
                Some(&token),
                Some(body.as_bytes()),
            )
            .unwrap();
        assert_eq!(
            r.status,
            422,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for q in ["q=%00", "tag=%00", "assignee=%00"] {
        let r = c
            .request("GET", &format!("/api/v1/tickets?{q}"), Some(&token), None)
            .unwrap();
        assert_eq!(r.status, 422, "{q}: {}", String::from_utf8_lossy(&r.body));
    }
    drop(server);
    drop_pg_schema(&schema);
}

#[tokio::test]
async fn serve_terminates_tls_sends_hsts_and_signs_in_the_first_admin() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    // a key that does not match is refused at start-up, naming the problem
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    let bad_key = dir.path().join("other.key");
    std::fs::write(&bad_key, other.signing_key.serialize_pem()).unwrap();
    let out = env.cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        bad_key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not match"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = env.start_with(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    let base = format!("https://localhost:{}", server.addr.port());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    // the first admin's password was written to the data dir (no terminal here)
    let password = std::fs::read_to_string(dir.path().join("initial-admin-password")).unwrap();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .header("origin", &base)
        .json(&serde_json::json!({"username": "admin", "password": password.trim()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = client
        .get(format!("{base}/api/v1/users/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<serde_json::Value>().await.unwrap()["username"],
        "admin"
    );
    // the TLS peer's address reaches handlers: loopback reads /metrics without a token
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // plain HTTP on the TLS port gets no answer
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn set_password_and_reset_mfa_commands() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let out = env.cli_stdin(
        &[
            "user",
            "add",
            "ana",
            "--role",
            "helpdesk",
            "--password-stdin",
        ],
        "first passphrase 1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cli_stdin(
        &["user", "set-password", "ana", "--password-stdin"],
        "second passphrase 2\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cli_stdin(
        &["user", "set-password", "ana", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = env.cli(&["user", "reset-mfa", "ana"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cli(&["user", "reset-mfa", "nobody"]);
    assert!(!out.status.success());
    let server = env.start();
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let login = |pw: &'static str| {
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "ana", "password": pw}))
            .send()
    };
    assert_eq!(login("first passphrase 1").await.unwrap().status(), 401);
    assert_eq!(login("second passphrase 2").await.unwrap().status(), 200);
    // both changes are on the record
    drop(server);
    let out = env.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn plan_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let out = env.cli(&["plan", "export", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.starts_with("# response plan version 0 (built-in)"),
        "{yaml}"
    );
    assert!(yaml.contains("War Room"));
    let file = dir.path().join("plan.yaml");
    std::fs::write(
        &file,
        yaml.replace("Built-in response plan", "Our plan").replace(
            "status_report_every_hours: 24",
            "status_report_every_hours: 6",
        ),
    )
    .unwrap();
    let out = env.cli(&["plan", "import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));
    let out = env.cli(&["plan", "export", "-"]);
    let again = String::from_utf8(out.stdout).unwrap();
    assert!(
        again.contains("Our plan") && again.contains("status_report_every_hours: 6"),
        "{again}"
    );
    // an invalid plan is refused, naming the path
    std::fs::write(&file, "name: x\nwar_rooms: []\nstatus_report_every_hours: 6\nretention: {audit_days: 400, documents_days: 1}\n").unwrap();
    let out = env.cli(&["plan", "import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("war_rooms"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, "name: x\nwar_rooms: [{name: A, size: 3}]\n").unwrap();
    let out = env.cli(&["plan", "import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("war_rooms[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// EVE NDJSON batches posted by several clients while the server is killed with SIGKILL:
/// every line of every batch answered 200 is an event after the restart, none twice.
fn intake_crash_rounds(env: &Env, rounds: usize) {
    let token = env.user_token("ids", &["reporter", "helpdesk"]);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    for round in 0..rounds {
        let mut server = env.start();
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..4u64)
            .map(|client| {
                let (addr, token, acked, stop) =
                    (server.addr, token.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut conn = Conn::new(addr);
                    let mut batch = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        batch += 1;
                        let base = ((round as u64 * 10 + client) * 100_000) + batch * 100;
                        let ids: Vec<u64> = (base..base + 100).collect();
                        let body: String = ids
                            .iter()
                            .map(|id| {
                                json!({"timestamp": "2026-11-20T10:15:02.123456+0000", "event_type": "alert",
                                       "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "proto": "TCP",
                                       "alert": {"signature_id": id, "signature": format!("crash sig {id} end"), "severity": 2}})
                                .to_string()
                                    + "\n"
                            })
                            .collect();
                        match conn.request("POST", "/api/v1/ingest/ndjson?format=eve", Some(&token), Some(body.as_bytes())) {
                            Ok(r) if r.status == 200 => {
                                assert_eq!(r.json()["created"], 100, "{}", String::from_utf8_lossy(&r.body));
                                acked.lock().unwrap().extend(ids);
                            }
                            _ => break, // killed: unacknowledged, may or may not be in
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(800 + 300 * round as u64));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "too few acknowledged lines ({}) to mean anything",
        acked.len()
    );
    let server = env.start();
    let mut c = Conn::new(server.addr);
    let counts = c
        .request("GET", "/api/v1/events/counts", Some(&token), None)
        .unwrap()
        .json();
    let total = counts["new"].as_u64().unwrap();
    assert!(
        total >= acked.len() as u64,
        "{total} events stored, {} acknowledged",
        acked.len()
    );
    // every acknowledged line is there, exactly once (sampled: one request per id is slow)
    for id in acked.iter().step_by((acked.len() / 60).max(1)) {
        let r = c
            .request(
                "GET",
                &format!("/api/v1/events?q=crash%20sig%20{id}%20end"),
                Some(&token),
                None,
            )
            .unwrap();
        let items = r.json()["items"].as_array().unwrap().clone();
        assert_eq!(
            items.len(),
            1,
            "acknowledged event {id} lost or doubled after kill -9"
        );
        assert_eq!(items[0]["occurrences"], 1);
    }
    let verify = env.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit chain after kill -9: {}",
        stdout(&verify)
    );
    eprintln!(
        "intake crash test: {rounds} rounds, {} acknowledged lines, {total} stored, 0 lost",
        acked.len()
    );
}

#[test]
fn acknowledged_events_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    intake_crash_rounds(&Env::sqlite(dir.path()), 3);
}

#[test]
fn acknowledged_events_survive_kill_9_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let env = Env {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url),
        key_file: None,
        lease_secs: None,
    };
    intake_crash_rounds(&env, 2);
    drop_pg_schema(&schema);
}
