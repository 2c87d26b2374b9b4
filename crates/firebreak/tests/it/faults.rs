//! Faults against the real binary (RELIABILITY.md G3, G4; ASVS 13.1.2): slow and idle clients
//! bounded by the connection limits, PostgreSQL cut off and restored behind a proxy, the SQLite
//! data dir on a full filesystem. Each test prints the figures it measured.

use crate::http::{Conn, Response};
use crate::support::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Sockets the process holds open (`/proc/PID/fd` entries that are sockets).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// `(threads, resident KiB)` of a process.
fn threads_and_rss(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> usize {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Waits until the server closes `s` (EOF or reset), writing `drip` every 200 ms meanwhile
/// (when given); returns how long that took, or `None` if it stayed open past `limit`.
fn time_until_closed(mut s: TcpStream, drip: Option<&[u8]>, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if let Some(d) = drip
            && s.write_all(d).is_err()
        {
            return Some(start.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // an answer (none expected here): keep waiting for the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Reads one response from a raw stream (headers and a `Content-Length` body).
fn read_response(s: &mut TcpStream) -> std::io::Result<Response> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn timed_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (Response, Duration) {
    let start = Instant::now();
    let r = Conn::new(addr).request("GET", path, token, None).unwrap();
    (r, start.elapsed())
}

#[test]
fn slowloris_connections_are_closed_by_the_header_timeout_and_healthz_stays_fast() {
    const N: usize = 200;
    let header_timeout = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let server = env.start_with(&["--header-timeout-secs", "2"]);
    let addr = server.addr;
    let baseline = open_sockets(server.child.id());
    // N connections send a request line and a header, then one more header byte every 200 ms
    let handles: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").as_bytes())
                    .unwrap();
                time_until_closed(s, Some(b"a"), Duration::from_secs(20))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = open_sockets(server.child.id()).saturating_sub(baseline);
    // the peer address reaches handlers (loopback may read /metrics without a token), and the
    // open connections are counted
    let metrics = Conn::new(addr)
        .request("GET", "/metrics", None, None)
        .unwrap();
    assert_eq!(
        metrics.status,
        200,
        "{}",
        String::from_utf8_lossy(&metrics.body)
    );
    let open_gauge = String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix("firebreak_http_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        open_gauge >= (N * 9 / 10) as f64,
        "firebreak_http_connections {open_gauge}"
    );
    // meanwhile a fresh connection gets its answer at once
    let mut probes = Vec::new();
    for _ in 0..5 {
        let (r, took) = timed_get(addr, "/healthz", None);
        assert_eq!(r.status, 200);
        probes.push(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut lifetimes: Vec<Duration> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("a slowloris connection stayed open 20 s: the header timeout does not hold")
        })
        .collect();
    lifetimes.sort();
    let worst_probe = probes.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowloris: {N} connections (≈{held} held by the server at once), header timeout {}; lived min {} median {} max {}; /healthz meanwhile max {}",
        secs(header_timeout),
        secs(lifetimes[0]),
        secs(lifetimes[N / 2]),
        secs(lifetimes[N - 1]),
        secs(worst_probe)
    );
    assert!(
        held >= N * 9 / 10,
        "the server held only {held} of {N} slow connections: were they accepted at all?"
    );
    assert!(
        lifetimes[0] >= header_timeout - Duration::from_millis(600),
        "closed before the header timeout: {}",
        secs(lifetimes[0])
    );
    assert!(
        lifetimes[N - 1] <= header_timeout + Duration::from_secs(2),
        "a slow connection lived {} with a header timeout of {}",
        secs(lifetimes[N - 1]),
        secs(header_timeout)
    );
    assert!(
        worst_probe < Duration::from_secs(1),
        "/healthz took {} while slow clients were connected",
        secs(worst_probe)
    );
    // every slow connection is gone from the server too
    std::thread::sleep(Duration::from_millis(300));
    let left = open_sockets(server.child.id()).saturating_sub(baseline);
    assert!(left <= 2, "{left} sockets left open after the slow clients");
}

#[test]
fn a_trickled_body_gets_408_and_a_steady_one_is_accepted() {
    let body_timeout = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let token = env.user_token("rita", &["responder"]);
    let server = env.start_with(&["--body-timeout-secs", "2", "--body-min-rate", "1024"]);
    let head = |len: usize| {
        format!(
            "POST /api/v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };

    // one byte every 200 ms of a 1,000-byte body: 408 after the body timeout
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(head(1000).as_bytes()).unwrap();
    let start = Instant::now();
    let mut writer = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && writer.write_all(b" ").is_ok() {
                sent += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            sent
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let r = read_response(&mut s).expect("an answer to the trickled body");
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = trickle.join().unwrap();
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "timeout");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in time")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        took >= body_timeout - Duration::from_millis(300)
            && took <= body_timeout + Duration::from_secs(2),
        "408 after {}",
        secs(took)
    );
    // and the connection is closed after it
    assert!(time_until_closed(s, None, Duration::from_secs(3)).is_some());

    // a streamed intake body that stalls after three lines: 408, saying what is committed
    let ids = env.user_token("ids", &["reporter", "helpdesk"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let lines: String = (0..3)
        .map(|i| {
            json!({"timestamp": "2026-11-20T10:15:02.123456+0000", "event_type": "alert",
                   "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "proto": "TCP",
                   "alert": {"signature_id": i, "signature": format!("stalled {i}"), "severity": 2}})
            .to_string()
                + "\n"
        })
        .collect();
    s.write_all(
        format!(
            "POST /api/v1/ingest/ndjson?format=eve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ids}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{lines}"
        )
        .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let stalled_start = Instant::now();
    let r = read_response(&mut s).expect("an answer to the stalled stream");
    let stalled_took = stalled_start.elapsed();
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "timeout");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("are committed")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // 96 KiB in 8 KiB steps every 250 ms (32 KiB/s, 3 s): past the 2 s base but above the
    // minimum rate, so it is not cut
    let body = {
        let mut b = br#"{"title":"slow but steady"}"#.to_vec();
        b.resize(96 * 1024, b' ');
        b
    };
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(head(body.len()).as_bytes()).unwrap();
    let start = Instant::now();
    for chunk in body.chunks(8 * 1024) {
        std::thread::sleep(Duration::from_millis(250));
        s.write_all(chunk).unwrap();
    }
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let steady = read_response(&mut s).unwrap();
    let steady_took = start.elapsed();
    assert_eq!(
        steady.status,
        201,
        "{}",
        String::from_utf8_lossy(&steady.body)
    );

    // the trickled ticket was not created, the steady one was
    let list = Conn::new(server.addr)
        .request("GET", "/api/v1/tickets", Some(&token), None)
        .unwrap()
        .json();
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert_eq!(titles, ["slow but steady"]);
    eprintln!(
        "slow body: {sent} bytes trickled, 408 after {} (body timeout {}); stalled NDJSON stream 408 after {}; 96 KiB at 32 KiB/s accepted after {}",
        secs(took),
        secs(body_timeout),
        secs(stalled_took),
        secs(steady_took)
    );
}

#[test]
fn a_client_that_reads_nothing_is_dropped_after_the_send_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let server = env.start_with(&["--send-timeout-secs", "2"]);
    let size = Conn::new(server.addr)
        .request("GET", "/api/v1/openapi.json", None, None)
        .unwrap()
        .body
        .len();
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_sockets(pid);
    // far more pipelined responses than socket buffers hold, none of them read
    const REQUESTS: usize = 400;
    let mut s = TcpStream::connect(server.addr).unwrap();
    let req = "GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS);
    s.write_all(req.as_bytes()).unwrap();
    // watch the server's side (reading here would let it go on) until it gives up
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let holding = open_sockets(pid);
    assert!(
        holding > baseline,
        "the connection is not open on the server"
    );
    let closed_after = loop {
        if open_sockets(pid) <= baseline {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "a client that reads nothing kept its connection 25 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "slow reader: {REQUESTS} pipelined requests for {} KiB each ({} MiB), none read: the server dropped the connection after {} (send timeout 2 s: once the socket buffers were full)",
        size / 1024,
        REQUESTS * size / (1024 * 1024),
        secs(closed_after)
    );
    assert!(
        // the server fills the socket buffers first (slower on a busy machine), then stalls
        closed_after >= Duration::from_millis(1800) && closed_after <= Duration::from_secs(20),
        "dropped after {}",
        secs(closed_after)
    );
    drop(s);
}

#[test]
fn the_connection_cap_holds_and_the_server_keeps_serving() {
    const CAP: usize = 20;
    const IDLE: usize = 40;
    let header_timeout = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let env = Env::sqlite(dir.path());
    let mut server = env.start_with(&["--max-connections", "20", "--header-timeout-secs", "3"]);
    let (addr, pid) = (server.addr, server.child.id());
    // a request first: a keep-alive connection left idle is closed by the same timer
    let mut kept = Conn::new(addr);
    assert_eq!(
        kept.request("GET", "/healthz", None, None).unwrap().status,
        200
    );
    std::thread::sleep(header_timeout + Duration::from_secs(1));
    assert!(
        kept.request("GET", "/healthz", None, None).is_err(),
        "an idle keep-alive connection outlived the header timeout"
    );
    let baseline = open_sockets(pid);
    let (threads0, rss0) = threads_and_rss(pid);
    // IDLE connections that send nothing
    let idle: Vec<_> = (0..IDLE)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            std::thread::spawn(move || time_until_closed(s, None, Duration::from_secs(30)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let held = open_sockets(pid).saturating_sub(baseline);
    let (threads1, rss1) = threads_and_rss(pid);
    // a new client waits in the backlog until slots free, then gets its answer
    let (probe, probe_took) = timed_get(addr, "/healthz", None);
    let mut lifetimes: Vec<Duration> = idle
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("an idle connection stayed open 30 s")
        })
        .collect();
    lifetimes.sort();
    let first_wave = lifetimes
        .iter()
        .filter(|l| **l < header_timeout + header_timeout / 2)
        .count();
    eprintln!(
        "connection cap {CAP}: {IDLE} idle connections, {held} held by the server; lifetimes {} .. {} ({first_wave} in the first wave); /healthz from a new connection after {}; threads {threads0} -> {threads1}, RSS {} -> {} KiB",
        secs(lifetimes[0]),
        secs(lifetimes[IDLE - 1]),
        secs(probe_took + Duration::from_millis(800)),
        rss0,
        rss1
    );
    assert_eq!(probe.status, 200);
    assert!(
        held <= CAP,
        "the server held {held} connections with a cap of {CAP}"
    );
    assert!(held >= CAP - 2, "only {held} connections were accepted");
    // the first CAP were served (and timed out) at once, the others only as slots freed
    assert_eq!(
        first_wave, CAP,
        "connections closed within 1.5 header timeouts: {first_wave}, expected the cap"
    );
    assert!(lifetimes[IDLE - 1] >= 2 * header_timeout - Duration::from_millis(500));
    assert!(
        probe_took <= 3 * header_timeout + Duration::from_secs(2),
        "/healthz waited {}",
        secs(probe_took)
    );
    assert!(
        threads1 <= threads0 + 2,
        "threads grew from {threads0} to {threads1} with idle connections"
    );
    assert!(
        rss1 <= rss0 + 32 * 1024,
        "RSS grew from {rss0} to {rss1} KiB with {CAP} idle connections"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(open_sockets(pid) <= baseline + 1, "connections leaked");
    // SIGTERM with idle and half-sent requests open: a clean exit within the header timeout
    let _idle: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let status = server.terminate();
    let exit_took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        exit_took <= header_timeout + Duration::from_secs(2),
        "shutdown took {}",
        secs(exit_took)
    );
    eprintln!(
        "connection cap: SIGTERM with 6 open connections: exited in {}",
        secs(exit_took)
    );
}

// ---- PostgreSQL cut off ------------------------------------------------------------------

/// A TCP proxy in front of PostgreSQL that can be cut (listener closed, every forwarded
/// connection shut down) and restored on the same port.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Forwarding paused, connections kept open: a network partition.
    frozen: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut p = Proxy {
            port,
            upstream,
            stop: Arc::new(AtomicBool::new(false)),
            frozen: Arc::default(),
            acceptor: None,
            conns: Arc::default(),
        };
        p.run(listener);
        p
    }

    fn run(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (stop, conns, upstream) = (self.stop.clone(), self.conns.clone(), self.upstream);
        let frozen = self.frozen.clone();
        self.acceptor = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ];
                conns.lock().unwrap().extend([client, server]);
                for (mut from, mut to) in pairs {
                    let frozen = frozen.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            while frozen.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        }));
    }

    /// Closes the listener and every forwarded connection.
    fn cut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.acceptor.take() {
            h.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Stops forwarding (bytes are held, connections stay open) or resumes it.
    fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::Relaxed);
    }

    /// Listens again on the same port.
    fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.stop = Arc::new(AtomicBool::new(false));
        self.run(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `url` with its host and port replaced by `127.0.0.1:port`, and the address it named.
fn via_proxy(url: &str) -> (String, impl FnOnce(u16) -> String) {
    use std::net::ToSocketAddrs;
    let scheme_end = url.find("://").unwrap() + 3;
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    let upstream = hostport
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
        .to_string();
    let (head, tail) = (
        format!("{}{userinfo}", &url[..scheme_end]),
        rest[auth_end..].to_string(),
    );
    (upstream, move |port| {
        format!("{head}127.0.0.1:{port}{tail}")
    })
}

/// Asserts a 503 with `Retry-After` and the error envelope.
fn assert_unavailable(r: &Response, what: &str) {
    assert_eq!(
        r.status,
        503,
        "{what} while the database is cut off: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|s| s > 0),
        "{what}: 503 without Retry-After"
    );
    assert!(
        r.json()["error"]["code"].is_string(),
        "{what}: not the envelope"
    );
}

#[test]
fn postgres_cut_off_gives_503_with_retry_after_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema_url();
    let (upstream, proxied) = via_proxy(&url);
    let mut proxy = Proxy::start(upstream.parse().unwrap());
    let env = Env {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(proxied(proxy.port)),
        key_file: None,
        lease_secs: None,
    };
    let token = env.user_token("rita", &["responder"]);
    let server = env.start();
    let addr = server.addr;
    let mut acked: Vec<(String, String)> = Vec::new();
    let create = |c: &mut Conn, title: String, acked: &mut Vec<(String, String)>| {
        let start = Instant::now();
        let r = c
            .request(
                "POST",
                "/api/v1/tickets",
                Some(&token),
                Some(json!({ "title": title }).to_string().as_bytes()),
            )
            .unwrap();
        if r.status == 201 {
            acked.push((r.json()["number"].as_str().unwrap().to_string(), title));
        }
        (r, start.elapsed())
    };
    let mut c = Conn::new(addr);
    for i in 0..5 {
        let (r, _) = create(&mut c, format!("before {i}"), &mut acked);
        assert_eq!(r.status, 201);
    }
    assert_eq!(timed_get(addr, "/readyz", None).0.status, 200);

    // writers keep posting through the outage: requests in flight when it starts meet broken
    // connections in the pool, the writer's transaction or its COMMIT
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|client| {
            let (token, stop) = (token.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                let mut seen = Vec::new();
                for seq in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let title = format!("load {client}-{seq}");
                    let start = Instant::now();
                    let r = c
                        .request(
                            "POST",
                            "/api/v1/tickets",
                            Some(&token),
                            Some(json!({ "title": title }).to_string().as_bytes()),
                        )
                        .unwrap_or_else(|e| panic!("{title}: no answer: {e}"));
                    let took = start.elapsed();
                    let number =
                        (r.status == 201).then(|| r.json()["number"].as_str().unwrap().to_string());
                    if r.status != 201 {
                        assert_unavailable(&r, "POST /api/v1/tickets under load");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    seen.push((title, r.status, took, number));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    proxy.cut();
    let cut_at = Instant::now();
    // readiness notices
    let (ready, ready_took) = timed_get(addr, "/readyz", None);
    assert_unavailable(&ready, "/readyz");
    let (health, health_took) = timed_get(addr, "/healthz", None);
    assert_eq!(health.status, 200, "/healthz is liveness: it stays 200");
    // writes and reads, several at once: 503, bounded, never 500
    let first = acked[0].0.clone();
    let during: Vec<_> = (0..3)
        .flat_map(|i| {
            let requests = [
                (
                    "POST /api/v1/tickets",
                    "POST",
                    "/api/v1/tickets".to_string(),
                    Some(format!("during {i}")),
                ),
                (
                    "GET /api/v1/tickets",
                    "GET",
                    "/api/v1/tickets".to_string(),
                    None,
                ),
                (
                    "GET /api/v1/tickets/{ref}",
                    "GET",
                    format!("/api/v1/tickets/{first}"),
                    None,
                ),
            ];
            requests.map(|(what, method, path, title)| {
                let token = token.clone();
                std::thread::spawn(move || {
                    let body = title.map(|t| json!({ "title": t }).to_string());
                    let start = Instant::now();
                    let r = Conn::new(addr)
                        .request(
                            method,
                            &path,
                            Some(&token),
                            body.as_deref().map(str::as_bytes),
                        )
                        .unwrap();
                    (what, r, start.elapsed())
                })
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for h in during {
        let (what, r, took) = h.join().unwrap();
        assert_unavailable(&r, what);
        worst = worst.max(took);
    }
    assert!(
        worst <= Duration::from_secs(10),
        "a request took {} while the database was cut off",
        secs(worst)
    );
    let outage = cut_at.elapsed();

    proxy.restore();
    let restored_at = Instant::now();
    let ready_after = loop {
        let (r, _) = timed_get(addr, "/readyz", None);
        if r.status == 200 {
            break restored_at.elapsed();
        }
        assert!(
            restored_at.elapsed() < Duration::from_secs(15),
            "/readyz still {} 15 s after the database came back",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let write_after = loop {
        let (r, _) = create(&mut Conn::new(addr), "after".into(), &mut acked);
        if r.status == 201 {
            break restored_at.elapsed();
        }
        assert_ne!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            restored_at.elapsed() < Duration::from_secs(15),
            "writes still {} 15 s after the database came back",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut load_ok, mut load_503, mut load_worst, mut ok_after) = (0, 0, Duration::ZERO, 0);
    for h in loaders {
        let mut after_outage = false;
        for (title, status, took, number) in h.join().unwrap() {
            load_worst = load_worst.max(took);
            if status == 201 {
                load_ok += 1;
                ok_after += usize::from(after_outage);
                acked.push((number.unwrap(), title));
            } else {
                load_503 += 1;
                after_outage = true;
            }
        }
    }
    assert!(load_503 > 0, "the load never met the outage");
    assert!(ok_after > 0, "the load never wrote again after the outage");
    assert!(
        load_worst <= Duration::from_secs(10),
        "a write under load took {}",
        secs(load_worst)
    );
    for i in 0..5 {
        let (r, _) = create(&mut c, format!("after {i}"), &mut acked);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    c.assert_tickets_stored(&token, acked.iter().map(|(n, t)| (n, t)));
    drop(server);
    let verify = env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    eprintln!(
        "postgres cut: /readyz 503 in {}, /healthz 200 in {}, worst API 503 {} ({} of outage); after restore /readyz 200 in {}, first write 201 in {}; load of 4 writers: {load_ok} x 201 ({ok_after} after the outage), {load_503} x 503, slowest {}; {} acknowledged tickets all present, audit verified",
        secs(ready_took),
        secs(health_took),
        secs(worst),
        secs(outage),
        secs(ready_after),
        secs(write_after),
        secs(load_worst),
        acked.len()
    );
    drop(proxy);
    drop_pg_schema(&schema);
}

// ---- SQLite on a full filesystem ---------------------------------------------------------

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a tmpfs and needs root (CAP_SYS_ADMIN): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // the last partial blocks
    let small = [0u8; 512];
    while f.write(&small).is_ok_and(|n| n > 0) {
        written += 512;
    }
    let _ = f.sync_all();
    written
}

fn multipart(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "fbkfaultsboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A raw request with a content type of its own (the test client sends JSON only).
fn post_raw(addr: SocketAddr, path: &str, token: &str, ct: &str, body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    read_response(&mut s).unwrap()
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mount = Tmpfs::mount(&data, "8m");
    let env = Env::sqlite(&data);
    let token = env.user_token("rita", &["responder"]);
    let ids = env.user_token("ids", &["reporter", "helpdesk"]);
    let mut server = env.start();
    let addr = server.addr;
    let mut c = Conn::new(addr);
    let mut acked: Vec<(String, String)> = Vec::new();
    let post = |c: &mut Conn, title: &str| {
        c.request(
            "POST",
            "/api/v1/tickets",
            Some(&token),
            Some(
                json!({ "title": title, "description": "x".repeat(2000) })
                    .to_string()
                    .as_bytes(),
            ),
        )
        .unwrap()
    };
    for i in 0..5 {
        let title = format!("before {i}");
        let r = post(&mut c, &title);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        acked.push((r.json()["number"].as_str().unwrap().to_string(), title));
    }
    let ticket = acked[0].0.clone();
    let doc = post_raw(
        addr,
        &format!("/api/v1/tickets/{ticket}/documents"),
        &token,
        &multipart("before.bin", &[7u8; 4096]).0,
        &multipart("before.bin", &[7u8; 4096]).1,
    );
    assert_eq!(doc.status, 201, "{}", String::from_utf8_lossy(&doc.body));

    let filler = data.join("filler");
    let filled = fill(&filler);

    // writes until one is refused: some may still fit in space the WAL already holds (then
    // they are acknowledged and must be durable), the rest are 507 (or 503), never 500
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut refused_at = None;
    for i in 0..300 {
        let title = format!("full {i}");
        let r = post(&mut c, &title);
        *statuses.entry(r.status).or_default() += 1;
        match r.status {
            201 => acked.push((r.json()["number"].as_str().unwrap().to_string(), title)),
            507 | 503 => {
                assert!(
                    r.header("retry-after").is_some(),
                    "{} without Retry-After",
                    r.status
                );
                let code = r.json()["error"]["code"].as_str().unwrap_or("").to_string();
                assert!(
                    code == "storage_full" || code == "unavailable",
                    "{}",
                    String::from_utf8_lossy(&r.body)
                );
                refused_at.get_or_insert(i);
                if statuses.get(&507).copied().unwrap_or(0)
                    + statuses.get(&503).copied().unwrap_or(0)
                    >= 5
                {
                    break;
                }
            }
            s => panic!("{s} on a full disk: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!(
        refused_at.is_some(),
        "no write was refused on a full disk: {statuses:?}"
    );
    assert!(
        statuses.contains_key(&507),
        "a full disk is 507: {statuses:?}"
    );
    // an event report and a document: refused as cleanly
    let r = c
        .request(
            "POST",
            "/api/v1/events",
            Some(&token),
            Some(
                json!({"title": "phish", "description": "y".repeat(2000)})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .unwrap();
    assert!(
        matches!(r.status, 507 | 503 | 201),
        "event report on a full disk: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let event_status = r.status;
    // several writers at once: batches of change sets refused together
    let burst: Vec<_> = (0..4)
        .map(|client| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                (0..20)
                    .map(|i| {
                        let title = format!("burst {client}-{i}");
                        let r = c
                            .request(
                                "POST",
                                "/api/v1/tickets",
                                Some(&token),
                                Some(json!({ "title": title }).to_string().as_bytes()),
                            )
                            .unwrap();
                        (title, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut burst_statuses = std::collections::BTreeMap::<u16, usize>::new();
    for h in burst {
        for (title, r) in h.join().unwrap() {
            *burst_statuses.entry(r.status).or_default() += 1;
            match r.status {
                201 => acked.push((r.json()["number"].as_str().unwrap().to_string(), title)),
                507 | 503 => assert!(r.header("retry-after").is_some()),
                s => panic!("{s} on a full disk: {}", String::from_utf8_lossy(&r.body)),
            }
        }
    }
    // bulk intake
    let lines: String = (0..50)
        .map(|i| {
            json!({"timestamp": "2026-11-20T10:15:02.123456+0000", "event_type": "alert",
                   "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "proto": "TCP",
                   "alert": {"signature_id": i, "signature": format!("full {i}"), "severity": 2}})
            .to_string()
                + "\n"
        })
        .collect();
    let ingest = post_raw(
        addr,
        "/api/v1/ingest/ndjson?format=eve",
        &ids,
        "application/x-ndjson",
        lines.as_bytes(),
    );
    assert!(
        matches!(ingest.status, 507 | 503),
        "NDJSON intake on a full disk: {} {}",
        ingest.status,
        String::from_utf8_lossy(&ingest.body)
    );
    let (ct, body) = multipart("full.bin", &[9u8; 256 * 1024]);
    let full_doc = post_raw(
        addr,
        &format!("/api/v1/tickets/{ticket}/documents"),
        &token,
        &ct,
        &body,
    );
    assert!(
        matches!(full_doc.status, 507 | 503),
        "document upload on a full disk: {} {}",
        full_doc.status,
        String::from_utf8_lossy(&full_doc.body)
    );
    // reads still work
    let (r, _) = timed_get(addr, &format!("/api/v1/tickets/{ticket}"), Some(&token));
    assert_eq!(r.status, 200);
    let (ready_full, _) = timed_get(addr, "/readyz", None);

    // room again: writes work without a restart
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let recovered = loop {
        let title = "after".to_string();
        let r = post(&mut c, &title);
        if r.status == 201 {
            acked.push((r.json()["number"].as_str().unwrap().to_string(), title));
            break freed.elapsed();
        }
        assert_ne!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "writes still {} 10 s after space was freed",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for i in 0..5 {
        let title = format!("after {i}");
        let r = post(&mut c, &title);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        acked.push((r.json()["number"].as_str().unwrap().to_string(), title));
    }
    // the refused intake left nothing behind: the same lines are all new now
    let again = post_raw(
        addr,
        "/api/v1/ingest/ndjson?format=eve",
        &ids,
        "application/x-ndjson",
        lines.as_bytes(),
    );
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(
        again.json()["created"],
        50,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let (ct, body) = multipart("after.bin", &[9u8; 64 * 1024]);
    let doc = post_raw(
        addr,
        &format!("/api/v1/tickets/{ticket}/documents"),
        &token,
        &ct,
        &body,
    );
    assert_eq!(doc.status, 201, "{}", String::from_utf8_lossy(&doc.body));

    // stop, check the files, restart: everything acknowledged is there
    assert!(server.terminate().success());
    let db = data.join("firebreak.db");
    let integrity = sqlite_query(&db, "PRAGMA integrity_check");
    assert_eq!(integrity, ["ok"], "integrity_check after the disk was full");
    assert!(sqlite_query(&db, "PRAGMA foreign_key_check").is_empty());
    let verify = env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let server = env.start();
    let mut c = Conn::new(server.addr);
    c.assert_tickets_stored(&token, acked.iter().map(|(n, t)| (n, t)));
    let docs = c
        .request(
            "GET",
            &format!("/api/v1/tickets/{ticket}/documents"),
            Some(&token),
            None,
        )
        .unwrap();
    assert_eq!(docs.status, 200);
    let docs = docs.json()["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        docs.len(),
        2,
        "the refused upload left no document: {docs:?}"
    );
    for d in &docs {
        let id = d["id"].as_str().unwrap();
        let r = c
            .request(
                "GET",
                &format!("/api/v1/tickets/{ticket}/documents/{id}/content"),
                Some(&token),
                None,
            )
            .unwrap();
        assert_eq!(r.status, 200, "document {id} unreadable");
    }
    drop(server);
    let leftovers: Vec<_> = std::fs::read_dir(data.join("blobs").join("tmp"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "temporary files left in blobs/tmp: {leftovers:?}"
    );
    eprintln!(
        "disk full: tmpfs 8 MiB, filler {} KiB; ticket writes {statuses:?} (first refusal after {} more), 4 concurrent writers {burst_statuses:?}, event report {event_status}, NDJSON intake {}, document upload {}, /readyz {} while full; writes back {} after freeing space; {} acknowledged tickets present, integrity_check ok, audit verified",
        filled / 1024,
        refused_at.unwrap_or(0),
        ingest.status,
        full_doc.status,
        ready_full.status,
        secs(recovered),
        acked.len()
    );
    drop(mount);
}

/// Rows of a one-column query on a SQLite file (its first column, as text).
fn sqlite_query(db: &Path, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .unwrap_or_else(|_| format!("{:?}", r.try_get::<i64, _>(0)))
            })
            .collect()
    })
}

/// A server on a fresh PostgreSQL schema reached through a proxy, with a token.
struct PgSetup {
    _dir: tempfile::TempDir,
    env: Env,
    schema: String,
    url: String,
    proxy: Proxy,
    token: String,
}

impl PgSetup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, schema) = pg_schema_url();
        let (upstream, proxied) = via_proxy(&url);
        let proxy = Proxy::start(upstream.parse().unwrap());
        let env = Env {
            data_dir: dir.path().to_path_buf(),
            database_url: Some(proxied(proxy.port)),
            key_file: None,
            lease_secs: None,
        };
        let token = env.user_token("rita", &["responder"]);
        PgSetup {
            _dir: dir,
            env,
            schema,
            url,
            proxy,
            token,
        }
    }
}

impl Drop for PgSetup {
    fn drop(&mut self) {
        self.proxy.cut();
        drop_pg_schema(&self.schema);
    }
}

#[test]
fn postgres_partition_new_requests_get_503_within_the_acquire_timeout() {
    let pg = PgSetup::new();
    let server = pg.env.start();
    let addr = server.addr;
    let mut c = Conn::new(addr);
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&pg.token),
            Some(br#"{"title":"before"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let before = r.json()["number"].as_str().unwrap().to_string();
    // no reset, no error: the database just stops answering
    pg.proxy.freeze(true);
    let probes: Vec<_> = [
        ("POST", "/api/v1/tickets".to_string()),
        ("GET", "/api/v1/tickets".to_string()),
        ("GET", format!("/api/v1/tickets/{before}")),
        ("GET", "/readyz".to_string()),
    ]
    .into_iter()
    .map(|(method, path)| {
        let token = pg.token.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let body = (method == "POST").then_some(br#"{"title":"during"}"#.as_slice());
            let r = Conn::new(addr)
                .request(method, &path, Some(&token), body)
                .unwrap();
            (format!("{method} {path}"), r, start.elapsed())
        })
    })
    .collect();
    let (health, health_took) = timed_get(addr, "/healthz", None);
    assert_eq!(health.status, 200);
    let mut figures = Vec::new();
    for h in probes {
        let (what, r, took) = h.join().unwrap();
        assert_unavailable(&r, &what);
        let bound = if what.ends_with("/readyz") { 3 } else { 7 };
        assert!(
            took <= Duration::from_secs(bound),
            "{what}: 503 only after {}",
            secs(took)
        );
        figures.push(format!("{what} {}", secs(took)));
    }
    pg.proxy.freeze(false);
    let thawed = Instant::now();
    let back = loop {
        let r = c
            .request(
                "POST",
                "/api/v1/tickets",
                Some(&pg.token),
                Some(br#"{"title":"after"}"#),
            )
            .unwrap();
        if r.status == 201 {
            break thawed.elapsed();
        }
        assert_ne!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            thawed.elapsed() < Duration::from_secs(15),
            "writes still {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server);
    let verify = pg.env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    eprintln!(
        "postgres partition: 503s {}; /healthz {}; writes back {} after it ended",
        figures.join(", "),
        secs(health_took),
        secs(back)
    );
}

#[test]
fn postgres_stalled_writes_are_refused_after_the_write_timeout() {
    let pg = PgSetup::new();
    let server = pg.env.start_env(
        &[],
        &[("FIREBREAK_DB_WRITE_TIMEOUT_SECS", "3")],
        Duration::from_secs(60),
    );
    let addr = server.addr;
    let mut c = Conn::new(addr);
    let mut acked = Vec::new();
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&pg.token),
            Some(br#"{"title":"before"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    acked.push(r.json()["number"].as_str().unwrap().to_string());
    // another session holds the audit chain's head row: every write transaction waits on it
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut locker = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        sqlx::raw_sql("BEGIN; SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    });
    let start = Instant::now();
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let token = pg.token.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let r = Conn::new(addr)
                    .request(
                        "POST",
                        "/api/v1/tickets",
                        Some(&token),
                        Some(
                            json!({ "title": format!("stalled {i}") })
                                .to_string()
                                .as_bytes(),
                        ),
                    )
                    .unwrap();
                (r, start.elapsed())
            })
        })
        .collect();
    // reads are not held up meanwhile
    std::thread::sleep(Duration::from_millis(500));
    let (read, read_took) = timed_get(
        addr,
        &format!("/api/v1/tickets/{}", acked[0]),
        Some(&pg.token),
    );
    assert_eq!(read.status, 200);
    let mut worst = Duration::ZERO;
    for h in writers {
        let (r, took) = h.join().unwrap();
        assert_unavailable(&r, "POST /api/v1/tickets while writes stall");
        assert!(
            took >= Duration::from_millis(2500),
            "refused before the timeout: {}",
            secs(took)
        );
        worst = worst.max(took);
    }
    assert!(
        worst <= Duration::from_secs(3 + 2),
        "a stalled write was answered after {}",
        secs(worst)
    );
    let stalled_for = start.elapsed();
    rt.block_on(async {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut locker)
            .await
            .unwrap();
    });
    let released = Instant::now();
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(&pg.token),
            Some(br#"{"title":"after"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let back = released.elapsed();
    acked.push(r.json()["number"].as_str().unwrap().to_string());
    for n in &acked {
        let (r, _) = timed_get(addr, &format!("/api/v1/tickets/{n}"), Some(&pg.token));
        assert_eq!(r.status, 200, "acknowledged ticket {n} missing");
    }
    // the refused ones are not there
    let list = Conn::new(addr)
        .request("GET", "/api/v1/tickets?q=stalled", Some(&pg.token), None)
        .unwrap();
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["items"].as_array().map(Vec::len), Some(0));
    drop(server);
    let verify = pg.env.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    eprintln!(
        "postgres stalled writes: 4 writes refused with 503 after at most {} (write timeout 3 s; stall {}), a read meanwhile in {}; next write 201 {} after the stall ended",
        secs(worst),
        secs(stalled_for),
        secs(read_took),
        secs(back)
    );
}
