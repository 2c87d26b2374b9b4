//! `firebreak ticket ...`: the client of a running server's ticket API.

use crate::http::Conn;
use crate::support::{BIN, Env, Server, output_with_stdin, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The client in `cwd`, with nothing of the test's environment that names a server, a token or
/// a database.
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(s: &Server) -> String {
    format!("http://{}", s.addr)
}

/// A server on a fresh SQLite data dir, a responder's token, and an empty working directory.
struct World {
    _dir: tempfile::TempDir,
    env: Env,
    server: Server,
    token: String,
    work: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::sqlite(dir.path());
        let server = env.start();
        let token = env.user_token("ana", &["responder"]);
        World {
            _dir: dir,
            env,
            server,
            token,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// `firebreak ticket ARGS --url URL --token TOKEN`.
    fn ticket(&self, args: &[&str]) -> Output {
        self.ticket_as(&self.token, args)
    }

    fn ticket_as(&self, token: &str, args: &[&str]) -> Output {
        client(self.work.path())
            .arg("ticket")
            .args(args)
            .args(["--url", &url(&self.server), "--token", token])
            .output()
            .unwrap()
    }

    /// Succeeds, or the test fails showing the output; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ticket(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "ticket {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// The ticket as the API returns it.
    fn api_ticket(&self, reference: &str) -> Value {
        let r = Conn::new(self.server.addr)
            .request(
                "GET",
                &format!("/api/v1/tickets/{reference}"),
                Some(&self.token),
                None,
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }
}

#[test]
fn ticket_client_create_list_show_work_and_log() {
    let w = World::new();
    // create: the number alone on stdout, the id on stderr
    let out = w.ticket(&[
        "create",
        "--title",
        "Phishing mail to finance",
        "--severity",
        "high",
        "--description",
        "Three people got it.\nOne clicked.",
        "--source-kind",
        "employee",
        "--source-name",
        "Alice",
        "--tag",
        "phishing",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let number = stdout(&out).trim().to_string();
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let t = w.api_ticket(&number);
    assert_eq!(t["title"], "Phishing mail to finance");
    assert_eq!(t["severity"], "high");
    assert_eq!(t["priority"], "p2");
    assert_eq!(t["source"]["kind"], "employee");
    assert_eq!(t["source"]["name"], "Alice");
    assert_eq!(t["tags"], serde_json::json!(["phishing"]));
    assert!(
        stderr(&out).contains(t["id"].as_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // a second one, with the server and token from the environment and the description from stdin
    let mut cmd = client(w.work.path());
    cmd.args([
        "ticket",
        "create",
        "--title",
        "Port scan from 203.0.113.9",
        "--severity",
        "low",
        "--description-file",
        "-",
        "--json",
    ])
    .env("FIREBREAK_URL", url(&w.server))
    .env("FIREBREAK_TOKEN", &w.token);
    let out = output_with_stdin(cmd, b"seen by the IDS\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let second: Value = serde_json::from_slice(&out.stdout).expect("--json prints the ticket");
    assert_eq!(second["description"], "seen by the IDS\n");
    let second = second["number"].as_str().unwrap().to_string();
    assert_ne!(second, number);

    // list: a header and one row per ticket, newest first
    let table = w.ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NUMBER") && lines[0].contains("TITLE"),
        "{table}"
    );
    assert!(lines[1].starts_with(&second), "{table}");
    let row = lines[2];
    for want in [
        &number,
        "open",
        "high",
        "p2",
        "ana",
        "Phishing mail to finance",
    ] {
        assert!(row.contains(want), "{want} missing in {row:?}");
    }
    // filters go to the server
    let high = w.ok(&["list", "--severity", "high"]);
    assert_eq!(high.lines().count(), 2, "{high}");
    assert!(high.contains(&number) && !high.contains(&second), "{high}");
    // one page at a time, or every page
    let out = w.ticket(&["list", "--limit", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    let page: Value = serde_json::from_str(&w.ok(&["list", "--limit", "1", "--json"])).unwrap();
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let rest = w.ok(&["list", "--limit", "1", "--cursor", &cursor]);
    assert!(rest.contains(&number) && !rest.contains(&second), "{rest}");
    let all: Value =
        serde_json::from_str(&w.ok(&["list", "--limit", "1", "--all", "--json"])).unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");

    // show: the fields and the description
    let shown = w.ok(&["show", &number]);
    assert!(
        shown.starts_with(&format!("{number}  Phishing mail to finance\n")),
        "{shown}"
    );
    for want in [
        "status       open",
        "severity     high",
        "source       employee: Alice",
        "tags         phishing",
        "  One clicked.",
        "events: none linked",
    ] {
        assert!(shown.contains(want), "{want:?} missing in\n{shown}");
    }
    // by id as well as by number
    let id = w.api_ticket(&number)["id"].as_str().unwrap().to_string();
    let json: Value = serde_json::from_str(&w.ok(&["show", &id, "--json"])).unwrap();
    assert_eq!(json["number"], number.as_str());

    // work it: start, a note, resolve, the owner accepts, reopen by the generic action
    let started = w.ok(&["start", &number, "--comment", "on it"]);
    assert!(
        started.starts_with(&format!("{number} in_progress")),
        "{started}"
    );
    assert_eq!(w.api_ticket(&number)["assignee"], "ana");
    let noted = w.ok(&["note", &number, "--text", "Called the user; mail deleted"]);
    assert!(noted.contains("note added"), "{noted}");
    let out = w.ok(&[
        "note",
        &number,
        "--kind",
        "evidence",
        "--text",
        "headers saved\nsecond line",
    ]);
    assert!(out.contains("evidence added"), "{out}");
    w.ok(&[
        "resolve",
        &number,
        "--resolution",
        "mail purged from all mailboxes",
        "--category",
        "phishing",
    ]);
    assert_eq!(w.api_ticket(&number)["status"], "pending_closure");
    let closed = w.ok(&["action", &number, "accept-closure"]);
    assert!(closed.starts_with(&format!("{number} closed")), "{closed}");
    w.ok(&[
        "action",
        &number,
        "reopen",
        "--set",
        "reason=the user clicked again",
    ]);
    let t = w.api_ticket(&number);
    assert_eq!(t["status"], "in_progress");
    assert_eq!(t["resolution"], "mail purged from all mailboxes");

    // the timeline, oldest first, every change and both notes in it
    let log = w.ok(&["log", &number]);
    let pos = |s: &str| {
        log.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing in\n{log}"))
    };
    assert!(pos("ticket.created") < pos("Called the user; mail deleted"));
    assert!(pos("Called the user; mail deleted") < pos("headers saved"));
    assert!(pos("headers saved") < pos("the user clicked again"));
    assert!(
        log.lines().any(|l| l.trim() == "second line"),
        "a later line is indented under its entry:\n{log}"
    );
    let with_log = w.ok(&["show", &number, "--log"]);
    assert!(
        with_log.contains("\nlog (") && with_log.contains("Called the user"),
        "{with_log}"
    );
    let json: Value = serde_json::from_str(&w.ok(&["log", &number, "--json"])).unwrap();
    assert!(json["items"].as_array().unwrap().len() >= 6, "{json}");

    // fields, then an escalation with its report: the reason is shown
    let updated = w.ok(&[
        "update",
        &number,
        "--severity",
        "critical",
        "--add-tag",
        "finance",
        "--title",
        "Phishing: finance",
    ]);
    assert!(updated.contains("severity critical"), "{updated}");
    let t = w.api_ticket(&number);
    assert_eq!(t["title"], "Phishing: finance");
    assert_eq!(t["tags"], serde_json::json!(["phishing", "finance"]));
    w.ok(&[
        "escalate",
        &number,
        "--reason",
        "payroll credentials were entered",
        "--impact",
        "payroll may be diverted",
        "--system",
        "payroll",
        "--system",
        "mail",
        "--actions-taken",
        "password reset",
    ]);
    let t = w.api_ticket(&number);
    assert_eq!(t["criticality"], "escalation");
    let shown = w.ok(&["show", &number]);
    assert!(shown.contains("escalation   "), "{shown}");
    w.ok(&["assign", &second, "ana"]);
    assert_eq!(w.api_ticket(&second)["assignee"], "ana");
    let mine = w.ok(&["list", "--mine"]);
    assert!(mine.contains(&second), "{mine}");
    assert_eq!(mine, w.ok(&["list", "--assignee", "ana"]));

    // a phone call captured on the ticket
    let out = w.ok(&[
        "comm",
        "add",
        &second,
        "--channel",
        "phone",
        "--from",
        "Bob (network team)",
        "--subject",
        "scan source",
        "--text",
        "It is our own scanner.",
    ]);
    assert!(out.contains("inbound phone captured"), "{out}");
    let comms = w.ok(&["comm", "list", &second]);
    assert!(
        comms.contains("from Bob (network team)") && comms.contains("It is our own scanner."),
        "{comms}"
    );

    // nothing local: no data dir, no database, in the working directory
    assert_eq!(std::fs::read_dir(w.work.path()).unwrap().count(), 0);
    // every change went to the audit chain
    drop(w.server);
    let verify = w.env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[test]
fn ticket_client_refusals_exit_1_naming_code_and_fields() {
    let w = World::new();
    // an invalid severity: the server's 422 names the field
    let out = w.ticket(&["create", "--title", "x", "--severity", "urgent"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("422 validation_failed") && err.lines().any(|l| l.starts_with("  severity: ")),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    // several fields at once, each on its line
    let number = w.ok(&["create", "--title", "ok"]).trim().to_string();
    let out = w.ticket(&["update", &number, "--title", " ", "--tag", &"t".repeat(80)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.starts_with("  title: "))
            && err.lines().any(|l| l.starts_with("  tags[0]: ")),
        "{err}"
    );
    // a transition the state does not allow: 409 with what is missing
    let out = w.ticket(&["resolve", &number, "--resolution", "r", "--category", "c"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("409 invalid_transition") && stderr(&out).contains("start"),
        "{}",
        stderr(&out)
    );
    // no such ticket, no such action
    let out = w.ticket(&["show", "SEC-999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SEC-999999") && stderr(&out).contains("404 not_found"),
        "{}",
        stderr(&out)
    );
    let out = w.ticket(&["action", &number, "fly-away"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mark-false-positive"),
        "{}",
        stderr(&out)
    );
    // a role that may not: 403 with the server's reason
    let auditor = w.env.user_token("audrey", &["auditor"]);
    let out = w.ticket_as(&auditor, &["start", &number]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("403 forbidden"), "{}", stderr(&out));
    // a wrong token: 401, naming the server and what to check
    let out = w.ticket_as("fbk_not-a-token", &["list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("401 unauthenticated")
            && err.contains(&url(&w.server))
            && err.contains("--token"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
    assert_eq!(w.api_ticket(&number)["status"], "open");
}

#[test]
fn ticket_client_usage_errors_exit_2() {
    let w = World::new();
    let bare = |args: &[&str], envs: &[(&str, &str)]| {
        client(w.work.path())
            .arg("ticket")
            .args(args)
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    // no token, from flags or the environment
    let out = bare(&["list", "--url", &url(&w.server)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--token") && stderr(&out).contains("FIREBREAK_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = bare(&["list"], &[("FIREBREAK_URL", &url(&w.server))]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("FIREBREAK_TOKEN"), "{}", stderr(&out));
    // no server
    let out = bare(&["list"], &[("FIREBREAK_TOKEN", &w.token)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("FIREBREAK_URL"), "{}", stderr(&out));
    let out = bare(&["list", "--url", "ftp://x", "--token", "t"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // clap: a required flag missing, an unknown subcommand
    let out = w.ticket(&["resolve", "SEC-000001", "--resolution", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--category"), "{}", stderr(&out));
    let out = w.ticket(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // commands that cannot be sent as given
    let out = w.ticket(&["update", "SEC-000001"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to change"),
        "{}",
        stderr(&out)
    );
    let out = w.ticket(&["create", "--severity", "high"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--title"), "{}", stderr(&out));
    let out = w.ticket(&["action", "SEC-000001", "start", "--body", "{not json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = w.ticket(&["action", "SEC-000001", "../users"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // none of them reached the server
    let r = Conn::new(w.server.addr)
        .request("GET", "/api/v1/tickets", Some(&w.token), None)
        .unwrap();
    assert_eq!(r.json()["items"], serde_json::json!([]));
}

#[test]
fn ticket_client_unreachable_server_exits_3_naming_the_url() {
    let work = tempfile::tempdir().unwrap();
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["list"],
        vec!["create", "--title", "x"],
        vec!["start", "SEC-000001"],
    ] {
        let out = client(work.path())
            .arg("ticket")
            .args(&args)
            .args(["--url", &url, "--token", "fbk_x"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot reach {url}/api/v1/")),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

/// `--url` at something that is not Firebreak (a web server answering HTML pages): no usable
/// answer, exit 3, and the message says what was found.
#[test]
fn ticket_client_html_answer_exits_3() {
    use std::io::{Read, Write};
    let work = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let page = "<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>";
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    for args in [vec!["list"], vec!["create", "--title", "x"]] {
        let out = client(work.path())
            .arg("ticket")
            .args(&args)
            .args(["--url", &url, "--token", "fbk_x"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("HTML"), "{err}");
    }
}

/// A server that takes the request and never answers: the command fails after `--timeout`
/// seconds (exit 3, saying so), and a write is not sent again.
#[test]
fn ticket_client_gives_up_on_a_silent_server_after_the_timeout() {
    let work = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn); // read nothing, answer nothing
        }
    });
    for (args, write) in [
        (vec!["list"], false),
        (vec!["create", "--title", "x"], true),
    ] {
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let started = std::time::Instant::now();
        let out = client(work.path())
            .arg("ticket")
            .args(&args)
            .args(["--url", &url, "--token", "fbk_x", "--timeout", "1"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("no answer within 1 s"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?}"
        );
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst) - before,
            1,
            "one request, not retried"
        );
        if write {
            assert!(err.contains("may or may not have been made"), "{err}");
        }
    }
}
