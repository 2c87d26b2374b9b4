//! The structured log (RELIABILITY.md G12, issue 9 item 7): `serve --log-json` writes one JSON
//! object per line, HTTP lines carry the request id, and no secret or document content ever
//! appears in it — passwords (right and wrong), tokens (valid and forged), a connector's secret,
//! a document's bytes — in plain, base64 or URL-encoded form.

use crate::http::Conn;
use crate::support::{Env, stdout};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn json_logs_carry_request_ids_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let password = "CANARYpass5b1e7d";
    let out = env.cli_stdin(
        &[
            "user",
            "add",
            "logan",
            "--role",
            "responder",
            "--role",
            "helpdesk",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    assert!(out.status.success());
    let token = {
        let o = env.cli(&["token", "create", "--user", "logan"]);
        stdout(&o).trim().to_string()
    };
    let admin = env.user_token("root", &["admin"]);

    let mut child = env
        .command(&["serve", "--listen", "127.0.0.1:0", "--log-json"])
        .env("RUST_LOG", "debug,sqlx=warn,hyper=info,h2=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // (from stderr, line): the log is stderr; stdout says where the server listens
    let logs = Arc::new(Mutex::new(Vec::<(bool, String)>::new()));
    for (is_log, pipe) in [
        (
            true,
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        (false, Box::new(child.stdout.take().unwrap())),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                logs.lock().unwrap().push((is_log, line));
            }
        });
    }
    let addr = {
        let t0 = std::time::Instant::now();
        loop {
            let found = logs.lock().unwrap().iter().find_map(|(_, l)| {
                l.strip_prefix("firebreak listening on http://")
                    .map(|a| a.parse::<std::net::SocketAddr>().unwrap())
            });
            if let Some(a) = found {
                break a;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut c = Conn::new(addr);
    // sign-ins: right, wrong
    for pw in [password, "CANARYwrong1d2e9a"] {
        let _ = c.request(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(
                json!({"username": "logan", "password": pw})
                    .to_string()
                    .as_bytes(),
            ),
        );
    }
    // a forged token, a real one
    let forged = "fbt_CANARYforged0c4d8e2f";
    let r = c
        .request("GET", "/api/v1/tickets", Some(forged), None)
        .unwrap();
    assert_eq!(r.status, 401);
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&token),
            Some(br#"{"title":"log canary ticket"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let number = r.json()["number"].as_str().unwrap().to_string();
    // a connector's secret
    let secret = "CANARYsecret77ab3f";
    let r = c
        .request(
            "PUT",
            "/api/v1/connectors/vt",
            Some(&admin),
            Some(
                json!({"kind": "virustotal", "secret": secret})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .unwrap();
    assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
    // a document's content
    let doc = "CANARYdocument9f3c21";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let boundary = "logcanary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.txt\"\r\nContent-Type: text/plain\r\n\r\n{doc}\r\n--{boundary}--\r\n"
        );
        let r = crate::support::http_client()
            .post(format!("http://{addr}/api/v1/tickets/{number}/documents"))
            .bearer_auth(&token)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    let logs = logs.lock().unwrap().clone();

    use base64::Engine;
    let mut needles: Vec<String> = Vec::new();
    for s in [
        password,
        "CANARYwrong1d2e9a",
        forged,
        token.as_str(),
        secret,
        doc,
    ] {
        needles.push(s.to_string());
        needles.push(base64::engine::general_purpose::STANDARD.encode(s));
        needles.push(base64::engine::general_purpose::STANDARD_NO_PAD.encode(s));
    }
    let mut json_lines = 0;
    let mut with_request_id = 0;
    for (is_log, line) in &logs {
        for n in &needles {
            assert!(!line.contains(n.as_str()), "a secret in the output: {line}");
        }
        if !is_log {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        json_lines += 1;
        if v.to_string().contains("request_id") {
            with_request_id += 1;
        }
    }
    assert!(json_lines > 5, "{logs:?}");
    assert!(
        with_request_id > 0,
        "no line names its request id: {logs:?}"
    );
}
