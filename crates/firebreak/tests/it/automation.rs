//! Automation through the real binary: `firebreak playbook test` (touching nothing),
//! `firebreak indicators import`, and a playbook run whose server is killed with `kill -9`
//! mid-step: after a restart the run resumes at that step, and the steps done before are not
//! repeated.

use crate::http::Conn;
use crate::support::{Env, stdout};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/examples")
}

#[test]
fn playbook_test_says_what_would_run_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let event = dir.path().join("event.json");
    // a raw Suricata alert with a hash: the EDR playbook would look it up
    let eve = r#"{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"alert","src_ip":"10.1.2.3","dest_ip":"203.0.113.9","proto":"TCP","alert":{"signature_id":2019999,"signature":"ET MALWARE dropper 44d88612fea8a8f36de82e1278abb02f","severity":1}}"#;
    std::fs::write(&event, eve).unwrap();
    let pb = examples().join("edr-malware-hash.yaml");
    let out = env.cli(&[
        "playbook",
        "test",
        pb.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--format",
        "eve",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("would run edr-malware-hash"), "{text}");
    assert!(
        text.contains("md5:44d88612fea8a8f36de82e1278abb02f"),
        "{text}"
    );
    assert!(text.contains("depends on a real run"), "{text}");
    // the condition is false for an event without a hash: nothing would run
    let plain = r#"{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"alert","src_ip":"10.1.2.3","dest_ip":"203.0.113.9","proto":"TCP","alert":{"signature_id":1,"signature":"ET SCAN nmap","severity":3}}"#;
    std::fs::write(&event, plain).unwrap();
    let out = env.cli(&[
        "playbook",
        "test",
        pb.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--format",
        "eve",
    ]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing would run"),
        "{}",
        stdout(&out)
    );
    // an invalid playbook: exit 1 with every error and its path
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ntrigger: { on: never }\nsteps:\n  - id: a\n    notify: { channel: fax }\n",
    )
    .unwrap();
    let out = env.cli(&[
        "playbook",
        "test",
        bad.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--format",
        "eve",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for p in [
        "trigger.on",
        "steps[0].notify.channel",
        "steps[0].notify.to",
        "steps[0].notify.title",
    ] {
        assert!(text.contains(p), "{p} not in {text}");
    }
    // usage errors: exit 2
    let out = env.cli(&[
        "playbook",
        "test",
        pb.to_str().unwrap(),
        "--event",
        "/nonexistent.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.cli(&[
        "playbook",
        "test",
        pb.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--format",
        "xml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // and nothing was created: no database in the data directory
    assert!(!dir.path().join("firebreak.db").exists());
}

#[test]
fn indicators_import_streams_csv_and_reports_bad_lines_by_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let csv = dir.path().join("feed.csv");
    let mut text = String::from("type,value,confidence\n");
    for i in 0..250_000u32 {
        text.push_str(&format!(
            "ip,10.{}.{}.{},80\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    text.push_str("banana,yellow,5\n");
    std::fs::write(&csv, text).unwrap();
    let out = env.cli(&[
        "indicators",
        "import",
        csv.to_str().unwrap(),
        "--format",
        "csv",
        "--source",
        "bulk",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}{err}", stdout(&out));
    assert!(stdout(&out).contains("imported 250000"), "{}", stdout(&out));
    assert!(
        err.contains("line 250002"),
        "the bad row is named by its line in the file: {err}"
    );
}

/// A webhook receiver that hangs on its first request (the server is killed meanwhile) and
/// answers 204 after: it records the `webhook-id` of every request.
fn hanging_receiver() -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let ids = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let (ids2, count2) = (ids.clone(), count.clone());
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let ids = ids2.clone();
            let n = count2.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = l.strip_prefix("webhook-id:") {
                        ids.lock().unwrap().push(v.trim().to_string());
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                if n == 0 {
                    // the first delivery hangs until the server that sent it is gone
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, ids, count)
}

#[test]
fn a_run_killed_mid_step_resumes_without_repeating_done_steps() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    std::fs::write(
        dir.path().join("firebreak.toml"),
        "[webhooks]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYqr\"\nallow_private_targets = true\n",
    )
    .unwrap();
    let admin = env.user_token("root", &["admin"]);
    let resp = env.user_token("rita", &["responder"]);
    let (url, ids, count) = hanging_receiver();
    // the lease is short so that the restarted server takes the run up at once
    let mut s = with_lease(&env);
    let mut c = Conn::new(s.addr);
    let pb = json!({
        "name": "three-steps", "trigger": "manual",
        "steps": [
            {"id": "one", "add_log": {"text": "step one ran"}},
            {"id": "two", "webhook": {"url": url}},
            {"id": "three", "add_log": {"text": "step three ran"}}
        ]
    });
    c.create("/api/v1/playbooks", &admin, &pb);
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&resp),
            Some(br#"{"title":"kill me mid-run"}"#),
        )
        .unwrap();
    let number = r.json()["number"].as_str().unwrap().to_string();
    let body = json!({"ticket": number}).to_string();
    let r = c
        .request(
            "POST",
            "/api/v1/playbooks/three-steps/run",
            Some(&resp),
            Some(body.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let run = r.json()["id"].as_str().unwrap().to_string();
    // wait until the webhook step is in flight, then kill the server
    let t0 = Instant::now();
    while count.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the run never reached its webhook step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    std::thread::sleep(Duration::from_secs(4));
    let s = with_lease(&env);
    let mut c = Conn::new(s.addr);
    let t0 = Instant::now();
    let view: Value = loop {
        let r = c
            .request(
                "GET",
                &format!("/api/v1/playbook-runs/{run}"),
                Some(&resp),
                None,
            )
            .unwrap();
        let v = r.json();
        if v["status"] == "succeeded" || v["status"] == "dead" || v["status"] == "failed" {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the run did not resume: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["attempts"], 1, "the killed attempt counts: {view}");
    let r = c
        .request(
            "GET",
            &format!("/api/v1/tickets/{number}/log?limit=200"),
            Some(&resp),
            None,
        )
        .unwrap();
    let log = r.json();
    let items = log["items"].as_array().unwrap();
    let count_text = |t: &str| items.iter().filter(|e| e["text"] == t).count();
    assert_eq!(
        count_text("step one ran"),
        1,
        "step one is not repeated after the crash"
    );
    assert_eq!(count_text("step three ran"), 1);
    assert!(log.to_string().contains("playbook.resumed"), "{log}");
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ids[1], "the same webhook-id on both deliveries");
    drop(s);
    let verify = env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

fn with_lease(env: &Env) -> crate::support::Server {
    let mut e = env.clone();
    e.lease_secs = Some(3);
    e.start()
}

#[test]
fn playbooks_load_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let ex = examples();
    let out = env.cli(&["playbook", "import", ex.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("stored").count(), 4, "{text}");
    let out = env.cli(&[
        "playbook",
        "import",
        ex.join("phishing-report.yaml").to_str().unwrap(),
    ]);
    assert!(
        stdout(&out).contains("updated phishing-report version 2"),
        "{}",
        stdout(&out)
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nsteps: []\n").unwrap();
    let out = env.cli(&["playbook", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("trigger: is required"),
        "{}",
        stdout(&out)
    );
    let verify = env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
