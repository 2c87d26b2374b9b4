//! The web UI in a real browser: every `tests/browser/*.test.mjs` is run by Node (playwright-core
//! driving Debian's headless Chromium) against a `firebreak serve` of its own, on a fresh SQLite
//! data directory with an admin, a help desk agent, a responder, a manager and a senior responder.
//! Without node or chromium these tests fail: they are never skipped.
//!
//! `FIREBREAK_BROWSER_SPEC=smoke` runs only the spec files whose name contains `smoke`;
//! `FIREBREAK_BROWSER_TEST=text` (read by `lib.mjs`) only the tests whose name contains `text`.
//! Screenshots go to `target/browser/<spec>/`.

use crate::http::Conn;
use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install chromium nodejs npm";

/// Every user the specs get: (username, role, password). The first is the admin.
const USERS: [(&str, &str, &str); 5] = [
    ("admin", "admin", "admin-browser-pass-1"),
    ("hd", "helpdesk", "hd-browser-pass-1"),
    ("resp", "responder", "resp-browser-pass-1"),
    ("mgr", "manager", "mgr-browser-pass-1"),
    ("sr", "senior_responder", "sr-browser-pass-1"),
];

const SERVER_START: Duration = Duration::from_secs(180);
const SPEC_TIMEOUT: Duration = Duration::from_secs(900);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `name` on the PATH, or in /usr/bin.
fn program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.is_file(),
        "the browser tests need Debian's Chromium at {} (or $CHROMIUM), and it is not installed: {INSTALL}",
        path.display()
    );
    path
}

fn json_file(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `npm ci` when `node_modules` lacks a locked package (playwright-core, axe-core) at its
/// locked version.
fn ensure_node_modules(dir: &Path) {
    let lock = json_file(&dir.join("package-lock.json"))
        .expect("tests/browser/package-lock.json is readable JSON");
    let wanted: Vec<(String, String)> = ["playwright-core", "axe-core"]
        .iter()
        .map(|name| {
            let v = lock["packages"][format!("node_modules/{name}")]["version"]
                .as_str()
                .unwrap_or_else(|| panic!("tests/browser/package-lock.json locks {name}"))
                .to_string();
            ((*name).to_string(), v)
        })
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, v)| {
            json_file(&dir.join(format!("node_modules/{name}/package.json")))
                .and_then(|p| p["version"].as_str().map(String::from))
                .as_deref()
                != Some(v.as_str())
        })
        .map(|(name, v)| format!("{name} {v}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    let npm = program("npm").unwrap_or_else(|| {
        panic!("the browser tests need npm to install playwright-core and axe-core, and it is not installed: {INSTALL}")
    });
    eprintln!(
        "browser: {} not installed: npm ci in {}",
        missing.join(", "),
        dir.display()
    );
    let out = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run npm ci");
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spec files, sorted; only those whose name contains `$FIREBREAK_BROWSER_SPEC` if set.
fn specs(dir: &Path) -> Vec<PathBuf> {
    let only = std::env::var("FIREBREAK_BROWSER_SPEC").unwrap_or_default();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.mjs") && n.contains(only.as_str()))
        })
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "no tests/browser/*.test.mjs{}",
        if only.is_empty() {
            String::new()
        } else {
            format!(" matching FIREBREAK_BROWSER_SPEC={only:?}")
        }
    );
    v
}

/// A server of its own for one spec file: the users created, a token each, `/healthz` up.
struct Site {
    _dir: tempfile::TempDir,
    server: Server,
    /// In the order of `USERS`.
    tokens: Vec<String>,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    // created before the first start, so no random initial admin is made
    for (name, role, password) in USERS {
        let out = env.cli_stdin(
            &["user", "add", name, "--role", role, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // an API token for each user (the first is the admin's)
    let tokens: Vec<String> = USERS
        .iter()
        .map(|(name, _, _)| {
            let out = env.cli(&["token", "create", "--user", name, "--name", "browser-tests"]);
            assert!(
                out.status.success(),
                "token create --user {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout(&out).trim().to_string()
        })
        .collect();
    let server = env.start_within(&[], SERVER_START);
    let deadline = Instant::now() + SERVER_START;
    let mut conn = Conn::new(server.addr);
    loop {
        match conn.request("GET", "/healthz", None, None) {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "firebreak at {} not healthy after {SERVER_START:?}: {other:?}",
                server.addr
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Site {
        _dir: dir,
        server,
        tokens,
    }
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `node SPEC` against a fresh site; returns whether it passed, and its output.
fn run_spec(node: &Path, chromium: &Path, spec: &Path) -> (bool, Vec<String>) {
    let name = spec.file_name().unwrap().to_string_lossy().into_owned();
    let short = name.trim_end_matches(".test.mjs").to_string();
    let site = site();
    let users: serde_json::Map<String, serde_json::Value> = USERS
        .iter()
        .map(|(n, _, p)| (n.to_string(), json!(p)))
        .collect();
    let roles: serde_json::Map<String, serde_json::Value> = USERS
        .iter()
        .map(|(n, r, _)| (n.to_string(), json!(r)))
        .collect();
    let tokens: serde_json::Map<String, serde_json::Value> = USERS
        .iter()
        .zip(&site.tokens)
        .map(|((n, _, _), t)| (n.to_string(), json!(t)))
        .collect();
    let out_dir = workspace().join("target/browser");
    let started = Instant::now();
    eprintln!(
        "browser: {name} against http://{} (screenshots in {})",
        site.server.addr,
        out_dir.join(&short).display()
    );
    let mut child = Command::new(node)
        .arg(spec)
        .current_dir(spec.parent().unwrap())
        .env("FIREBREAK_URL", format!("http://{}", site.server.addr))
        .env("FIREBREAK_ADMIN_USER", USERS[0].0)
        .env("FIREBREAK_ADMIN_PASSWORD", USERS[0].2)
        .env("FIREBREAK_TOKEN", &site.tokens[0])
        .env(
            "FIREBREAK_TOKENS",
            serde_json::Value::Object(tokens).to_string(),
        )
        .env(
            "FIREBREAK_USERS",
            serde_json::Value::Object(users).to_string(),
        )
        .env(
            "FIREBREAK_USER_ROLES",
            serde_json::Value::Object(roles).to_string(),
        )
        .env("FIREBREAK_BROWSER_OUT", &out_dir)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // its own process group: a timeout ends node and every browser process it started
        .process_group(0)
        .spawn()
        .expect("run node");
    let pgid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    let pipe = |r: Box<dyn Read + Send>, tag: &'static str, tx: mpsc::Sender<String>| {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(format!("{tag}{line}")).is_err() {
                    break;
                }
            }
        })
    };
    pipe(Box::new(child.stdout.take().unwrap()), "", tx.clone());
    pipe(Box::new(child.stderr.take().unwrap()), "stderr: ", tx);
    let mut output = Vec::new();
    let mut timed_out = false;
    let mut exited_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                eprintln!("[{short}] {line}");
                output.push(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if exited_at.is_none() && child.try_wait().unwrap().is_some() {
            exited_at = Some(Instant::now());
        }
        // a browser left behind must not keep the pipes open forever
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
            kill_group(pgid);
        }
        if started.elapsed() > SPEC_TIMEOUT && !timed_out {
            timed_out = true;
            output.push(format!("(killed after {SPEC_TIMEOUT:?})"));
            kill_group(pgid);
        }
    }
    let status = child.wait().unwrap();
    kill_group(pgid);
    drop(site);
    // `run()` prints `# <spec>: N passed, M failed` last: without it the spec never ran its tests
    let summary = output
        .iter()
        .any(|l| l.starts_with(&format!("# {short}: ")) && l.ends_with(" passed, 0 failed"));
    let ok = status.success() && !timed_out && summary;
    eprintln!(
        "browser: {name}: {} ({status}, {:.1} s)",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if status.success() && !summary {
        output.push(format!(
            "(exited 0 without the `# {short}: N passed, 0 failed` line: does it end with `await run()`?)"
        ));
    }
    (ok, output)
}

/// The lines about failures: each `not ok` with its indented details; the whole tail if none.
fn failure_report(output: &[String]) -> String {
    let mut report = Vec::new();
    let mut in_failure = false;
    for line in output {
        if line.starts_with("not ok") {
            in_failure = true;
        } else if !line.starts_with("    ") {
            in_failure = false;
        }
        if in_failure || line.starts_with("stderr: ") || line.starts_with('(') {
            report.push(line.as_str());
        }
    }
    if report.is_empty() {
        report = output
            .iter()
            .skip(output.len().saturating_sub(40))
            .map(String::as_str)
            .collect();
    }
    report.join("\n")
}

#[test]
fn every_browser_spec_passes_in_headless_chromium() {
    let node = program("node").unwrap_or_else(|| {
        panic!("the browser tests need Node.js, and it is not installed: {INSTALL}")
    });
    let chromium = chromium();
    let dir = workspace().join("tests/browser");
    ensure_node_modules(&dir);
    let specs = specs(&dir);
    let mut failures = Vec::new();
    for spec in &specs {
        let (ok, output) = run_spec(&node, &chromium, spec);
        if !ok {
            failures.push(format!(
                "--- {}\n{}",
                spec.file_name().unwrap().to_string_lossy(),
                failure_report(&output)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} browser spec files failed (full output above):\n{}",
        failures.len(),
        specs.len(),
        failures.join("\n")
    );
}
