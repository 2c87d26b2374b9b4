//! The live stream `GET /live` of the real binary: a signed-in browser's server-sent events
//! name what changed (here on SQLite; across nodes in `cluster.rs`), bursts are coalesced, a
//! request without a session is 401, and an open stream does not hold up SIGTERM.

use crate::http::Conn;
use crate::support::{Env, Server};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An open `GET /live`, read by a thread of its own: every event with the time it arrived.
pub struct LiveClient {
    events: Arc<Mutex<Vec<(Instant, String)>>>,
    ended: Arc<Mutex<Option<Instant>>>,
    stream: TcpStream,
}

impl LiveClient {
    /// Opens the stream with the session `cookie`; `Err(status)` when it is refused.
    pub fn open(addr: SocketAddr, cookie: Option<&str>) -> Result<Self, u16> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let mut head =
            format!("GET /live HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(c) = cookie {
            head.push_str(&format!("Cookie: {c}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut content_type = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-type:") {
                content_type = v.trim().to_string();
            }
        }
        if status != 200 {
            return Err(status);
        }
        assert_eq!(content_type, "text/event-stream");
        let events = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (ev, end) = (events.clone(), ended.clone());
        std::thread::spawn(move || {
            // chunk sizes, comments and data lines pass by; `event:` lines are kept
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(t) = line.trim_end().strip_prefix("event: ") {
                            ev.lock().unwrap().push((Instant::now(), t.to_string()));
                        }
                    }
                }
            }
            *end.lock().unwrap() = Some(Instant::now());
        });
        Ok(Self {
            events,
            ended,
            stream: s,
        })
    }

    /// When `topic` first arrived at or after `since`, waiting until `deadline` for it.
    pub fn wait_for(&self, topic: &str, since: Instant, deadline: Instant) -> Option<Instant> {
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|(at, t)| *at >= since && t == topic)
                .map(|(at, _)| *at);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every event received so far, with its arrival time.
    pub fn events(&self) -> Vec<(Instant, String)> {
        self.events.lock().unwrap().clone()
    }

    /// When the server ended the stream, waiting until `deadline`.
    pub fn wait_end(&self, deadline: Instant) -> Option<Instant> {
        loop {
            let e = *self.ended.lock().unwrap();
            if e.is_some() || Instant::now() >= deadline {
                return e;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Adds `name` with a password and signs in on `addr`: the session cookie.
pub fn user_session(env: &Env, addr: SocketAddr, name: &str, role: &str) -> String {
    let password = format!("a long passphrase for {name}");
    let out = env.cli_stdin(
        &["user", "add", name, "--role", role, "--password-stdin"],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::cluster::sign_in(addr, name, &password)
}

pub fn eve_line(sid: u32, src: &str) -> String {
    json!({
        "timestamp": "2026-12-06T08:00:00.000000+0000",
        "event_type": "alert",
        "src_ip": src,
        "dest_ip": "10.1.2.3",
        "proto": "TCP",
        "alert": {"signature_id": sid, "signature": format!("live test {sid}"), "severity": 3, "category": "Misc activity"}
    })
    .to_string()
}

#[test]
fn live_stream_names_what_changed_coalesces_bursts_and_ends_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let token = env.user_token("hd", &["helpdesk"]);
    let mut server: Server = env.start();
    let cookie = user_session(&env, server.addr, "watcher", "responder");
    let mut c = Conn::new(server.addr);

    // no session, no stream
    assert_eq!(LiveClient::open(server.addr, None).err(), Some(401));
    assert_eq!(
        LiveClient::open(server.addr, Some("__Host-firebreak_session=nope")).err(),
        Some(401)
    );

    // the fragments the pages refresh answer 401 with a way to the sign-in page, not a page
    for path in [
        "/tickets/rows",
        "/events/rows",
        "/events/counts",
        "/tickets/SEC-000001/timeline",
    ] {
        let r = c.request("GET", path, None, None).unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("hx-redirect"), Some("/login"), "{path}");
    }

    let live = LiveClient::open(server.addr, Some(&cookie)).unwrap();

    // one user holds 16 streams at most (each is a connection held open): the 17th is 429
    let more: Vec<LiveClient> = (0..15)
        .map(|_| LiveClient::open(server.addr, Some(&cookie)).unwrap())
        .collect();
    assert_eq!(
        LiveClient::open(server.addr, Some(&cookie)).err(),
        Some(429)
    );
    drop(more);

    // an ingested event is `events`
    let t0 = Instant::now();
    let r = c
        .request(
            "POST",
            "/api/v1/ingest/ndjson?format=eve",
            Some(&token),
            Some(eve_line(9_300_000, "198.51.100.7").as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = live
        .wait_for("events", t0, t0 + Duration::from_secs(2))
        .expect("`events` on the stream within 2 s of the intake");
    let events_latency = got - t0;

    // a new ticket is `tickets`
    let t1 = Instant::now();
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&token),
            Some(br#"{"title":"live ticket"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let got = live
        .wait_for("tickets", t1, t1 + Duration::from_secs(2))
        .expect("`tickets` on the stream within 2 s of the new ticket");
    let tickets_latency = got - t1;

    // a burst of 40 intake requests: `events` at most once per 250 ms, and once more after it
    let t2 = Instant::now();
    for i in 0..40 {
        let r = c
            .request(
                "POST",
                "/api/v1/ingest/ndjson?format=eve",
                Some(&token),
                Some(eve_line(9_300_100 + i, &format!("198.51.100.{}", 20 + i)).as_bytes()),
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let burst = t2.elapsed();
    // the burst's last commit is announced, at most 250 ms later
    let last = live.wait_for(
        "events",
        t2 + burst,
        Instant::now() + Duration::from_secs(2),
    );
    assert!(last.is_some(), "the end of the burst was announced");
    let sent: Vec<Instant> = live
        .events()
        .into_iter()
        .filter(|(at, t)| *at >= t2 && t == "events")
        .map(|(at, _)| at)
        .collect();
    let most = (burst.as_millis() / 250 + 2) as usize;
    assert!(
        sent.len() <= most,
        "{} `events` messages for 40 commits in {burst:?} (at most {most})",
        sent.len()
    );
    for w in sent.windows(2) {
        // arrival times jitter a little; the server spaces them by 250 ms
        assert!(w[1] - w[0] >= Duration::from_millis(200), "{sent:?}");
    }

    // SIGTERM with the stream open: the stream ends and the server exits at once, not after
    // the 30 s drain
    let t3 = Instant::now();
    let status = server.terminate();
    let exited = t3.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        live.wait_end(Instant::now() + Duration::from_secs(1))
            .is_some(),
        "the stream ended"
    );
    assert!(exited < Duration::from_secs(5), "exit took {exited:?}");
    eprintln!(
        "live: `events` after {events_latency:?}, `tickets` after {tickets_latency:?}; 40 intake commits in {burst:?} gave {} `events` messages; SIGTERM with a stream open: exited in {exited:?}",
        sent.len()
    );
}
