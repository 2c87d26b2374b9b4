//! `firebreak ingest --url URL --token TOKEN`: the command as a client of a running server.

use crate::http::Conn;
use crate::support::{BIN, Env, Server, output_with_stdin, stdout};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn alert(sid: u32, signature: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"alert","src_ip":"10.1.2.{}","dest_ip":"203.0.113.9","proto":"TCP","alert":{{"signature_id":{sid},"signature":"{signature}","severity":2}}}}"#,
        sid % 250
    )
}

const FLOW: &str = r#"{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"flow","src_ip":"10.1.2.3","dest_ip":"203.0.113.9","proto":"TCP"}"#;

/// The client, with nothing of the test's environment that names a server, a token or a
/// database, run in `cwd`.
fn client(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("FIREBREAK_URL")
        .env_remove("FIREBREAK_TOKEN")
        .env_remove("FIREBREAK_DATA_DIR")
        .env_remove("FIREBREAK_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .current_dir(cwd)
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run firebreak")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(s: &Server) -> String {
    format!("http://{}", s.addr)
}

fn events(server: &Server, token: &str) -> Vec<serde_json::Value> {
    let mut c = Conn::new(server.addr);
    let r = c
        .request("GET", "/api/v1/events?limit=100", Some(token), None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

/// A server on a fresh SQLite data dir and a token of a user who may report.
fn server() -> (tempfile::TempDir, Env, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let server = env.start();
    let token = env.user_token("sensor", &["reporter", "responder"]);
    (dir, env, server, token)
}

#[test]
fn ingest_client_counts_and_numbers_lines_as_the_whole_file() {
    let (_dir, _env, server, token) = server();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("eve.json");
    // chunks of two lines: the bad line is the 2nd of the 2nd request, the 4th of the file
    let lines = [
        alert(1, "ET TEST client one"),
        alert(2, "ET TEST client two"),
        FLOW.to_string(),
        "{not json".to_string(),
        alert(3, "ET TEST client three"),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(client(work.path()).args([
        "ingest",
        file.to_str().unwrap(),
        "--format",
        "eve",
        "--url",
        &url(&server),
        "--token",
        &token,
        "--chunk-lines",
        "2",
    ]));
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.contains("5 lines read in ")
            && text.contains(": 3 events created, 0 duplicates counted, 0 suppressed, 0 resolved, 1 skipped (not event types), ")
            && text.contains(" 1 lines refused; "),
        "{text}"
    );
    assert!(err.contains("line 4: "), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("line ")).count(),
        1,
        "{err}"
    );
    let got = events(&server, &token);
    assert_eq!(got.len(), 3, "{got:?}");
    for s in ["one", "two", "three"] {
        let sig = format!("ET TEST client {s}");
        assert!(
            got.iter().any(|e| e.to_string().contains(&sig)),
            "{sig} missing: {got:?}"
        );
    }
    // standard input, one request: the same lines again are repeats
    let mut cmd = client(work.path());
    cmd.args(["ingest", "-", "--format", "eve", "--url", &url(&server)])
        .env("FIREBREAK_TOKEN", &token);
    let out = output_with_stdin(cmd, (lines.join("\n") + "\n").as_bytes());
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.contains(": 0 events created, 3 duplicates counted"),
        "{text}"
    );
    assert!(err.contains("line 4: "), "{err}");
}

#[test]
fn ingest_client_from_env_creates_no_local_data_dir() {
    let (_dir, _env, server, token) = server();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("eve.json"), alert(7, "ET TEST env") + "\n").unwrap();
    let out = run(client(work.path())
        .args(["ingest", "eve.json", "--format", "eve", "--quiet"])
        .env("FIREBREAK_URL", url(&server))
        .env("FIREBREAK_TOKEN", &token));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 events created"),
        "{}",
        stdout(&out)
    );
    assert_eq!(events(&server, &token).len(), 1);
    // one email, from standard input, to the eml route
    let mut cmd = client(work.path());
    cmd.args(["ingest", "-", "--format", "eml"])
        .env("FIREBREAK_URL", url(&server))
        .env("FIREBREAK_TOKEN", &token);
    let out = output_with_stdin(
        cmd,
        b"From: Alice <alice@example.com>\r\nTo: soc@example.com\r\nSubject: Suspicious invoice mail\r\nMessage-ID: <m1@example.com>\r\n\r\nPlease look at this.\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("the server's answer");
    assert_eq!(events(&server, &token).len(), 2);
    // --user is for the local mode: the token names the user
    let out = run(client(work.path())
        .args(["ingest", "eve.json", "--format", "eve", "--user", "admin"])
        .env("FIREBREAK_URL", url(&server))
        .env("FIREBREAK_TOKEN", &token));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--user") && stderr(&out).contains("--url"),
        "{}",
        stderr(&out)
    );
    // --url without a token
    let out = run(client(work.path())
        .args(["ingest", "eve.json", "--format", "eve"])
        .env("FIREBREAK_URL", url(&server)));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["eve.json".to_string()], "nothing local created");
}

#[test]
fn ingest_client_wrong_token_fails_clearly() {
    let (_dir, env, server, _token) = server();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("eve.json"),
        alert(8, "ET TEST denied") + "\n",
    )
    .unwrap();
    let out = run(client(work.path()).args([
        "ingest",
        "eve.json",
        "--format",
        "eve",
        "--url",
        &url(&server),
        "--token",
        "fbk_not-a-token",
    ]));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("401") && err.contains(&url(&server)) && err.contains("--token"),
        "{err}"
    );
    assert!(!stdout(&out).contains("lines read"), "{}", stdout(&out));
    // a valid token of a user who may not report: 403 with the server's reason
    let auditor = env.user_token("watcher", &["auditor"]);
    let out = run(client(work.path()).args([
        "ingest",
        "eve.json",
        "--format",
        "eve",
        "--url",
        &url(&server),
        "--token",
        &auditor,
    ]));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("403"), "{err}");
}

#[test]
fn ingest_client_unreachable_server_fails_naming_the_url() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("eve.json"),
        alert(9, "ET TEST nowhere") + "\n",
    )
    .unwrap();
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(client(work.path()).args([
        "ingest", "eve.json", "--format", "eve", "--url", &url, "--token", "fbk_x",
    ]));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cannot reach {url}/api/v1/ingest/ndjson")),
        "{err}"
    );
    assert!(err.contains("lines up to 0 are committed"), "{err}");
}

#[test]
fn ingest_client_resume_skips_acknowledged_lines() {
    let (_dir, _env, server, token) = server();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("eve.json");
    let state = work.path().join("state.json");
    let first: Vec<String> = (0..5)
        .map(|i| alert(100 + i, &format!("ET TEST resume {i}")))
        .collect();
    std::fs::write(&file, first.join("\n") + "\n").unwrap();
    let ingest = |extra: &[&str]| {
        let mut c = client(work.path());
        c.args([
            "ingest",
            file.to_str().unwrap(),
            "--format",
            "eve",
            "--url",
            &url(&server),
            "--token",
            &token,
            "--chunk-lines",
            "2",
        ])
        .args(extra);
        run(&mut c)
    };
    let out = ingest(&["--resume", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("5 lines read in"), "{}", stdout(&out));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["line"], 5, "{saved}");
    // the file grows; the re-run sends only the new lines
    let more: Vec<String> = (5..8)
        .map(|i| alert(100 + i, &format!("ET TEST resume {i}")))
        .collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all((more.join("\n") + "\n").as_bytes())
        .unwrap();
    let out = ingest(&["--resume", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 lines read (after 5 committed earlier)")
            && stdout(&out).contains(": 3 events created, 0 duplicates counted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(events(&server, &token).len(), 8);
    // a state of another input is refused, as in the local mode
    let out = run(client(work.path()).args([
        "ingest",
        "-",
        "--format",
        "eve",
        "--url",
        &url(&server),
        "--token",
        &token,
        "--resume",
        state.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("resumes"), "{}", stderr(&out));
}

/// A server that answers the first request 503 with `Retry-After: 1`, then 200 with a summary
/// listing its line 1 as refused; returns the bodies it was sent.
fn busy_then_ok() -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                if len == 0 {
                    break;
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                tx.send(body).unwrap();
                n += 1;
                let reply = if n == 1 {
                    let b = r#"{"error":{"code":"busy","message":"intake busy","details":[]}}"#;
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    )
                } else {
                    let b = r#"{"received":1,"created":1,"duplicates":0,"suppressed":0,"resolved":0,"skipped":0,"tickets_opened":0,"errors":[{"line":1,"field":"line","message":"bad"}],"events":[]}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    )
                };
                if s.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn ingest_client_waits_out_a_busy_server_and_resends_the_chunk() {
    let (url, bodies) = busy_then_ok();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("x.log"), "a\nb\nc\n").unwrap();
    let started = std::time::Instant::now();
    let out = run(client(work.path()).args([
        "ingest",
        "x.log",
        "--format",
        "syslog",
        "--url",
        &url,
        "--token",
        "fbk_x",
        "--chunk-lines",
        "2",
    ]));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    // the busy answer's chunk went again, then the second chunk; each listed its line 1
    let sent: Vec<Vec<u8>> = bodies.try_iter().collect();
    assert_eq!(
        sent,
        vec![b"a\nb\n".to_vec(), b"a\nb\n".to_vec(), b"c\n".to_vec()]
    );
    assert!(
        text.contains("3 lines read in") && text.contains(": 2 events created"),
        "{text}"
    );
    assert!(text.contains(" 2 lines refused; "), "{text}");
    assert!(
        err.contains("line 1: line: bad") && err.contains("line 3: line: bad"),
        "{err}"
    );
}
