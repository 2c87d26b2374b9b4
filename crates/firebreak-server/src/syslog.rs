//! The syslog listener: RFC 5424 and RFC 3164 messages over UDP (one datagram, one message)
//! and TCP (RFC 6587 octet counting or newline framing), with CEF and LEEF payloads detected.
//! Messages go through a bounded queue to one task that parses them and commits them in
//! batches. When the queue is full the readers wait: a TCP sender is slowed down; UDP has no
//! flow control, so datagrams wait in the socket's receive buffer, which the listener asks to
//! be [`UDP_RECV_BUFFER`] (capped by `net.core.rmem_max`). What overflows that buffer is lost:
//! the kernel counts it, and the listener reads that count from `/proc/net/udp` into
//! `firebreak_syslog_dropped_total`. Every message keeps its sender's address
//! (`fields.sender_ip`), which is also the event's host when the message names none
//! (RFC 3164 4.3.3: a relay adds the sender's address to a message without a hostname).

use firebreak_app::intake::BATCH;
use firebreak_app::{App, AppError, Principal};
use firebreak_domain::event::IngestSummary;
use firebreak_intake::syslog::FrameDecoder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// Largest message accepted (a longer TCP frame or datagram is counted as malformed).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Messages queued for the committer at most (at most 256 MiB even of maximal messages).
pub const QUEUE: usize = 4096;
/// Concurrent TCP connections at most.
pub const MAX_CONNECTIONS: usize = 512;
/// A TCP connection that sends nothing for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);
/// The UDP receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
pub const UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;
/// How often the kernel's drop count of the UDP socket is read.
const KERNEL_DROPS_EVERY: Duration = Duration::from_secs(5);

/// A message and the address it came from.
type Received = (String, std::net::IpAddr);

/// Counters of one listener (also exported as metrics).
#[derive(Debug, Default)]
pub struct SyslogStats {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub malformed: AtomicU64,
    pub events: AtomicU64,
}

/// The addresses a listener is bound to.
#[derive(Debug, Clone, Copy)]
pub struct SyslogAddrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

/// Binds UDP and TCP on `addr` (the same port for both; with port 0, the port UDP got is
/// used for TCP as well when free). Start-up fails naming the address if either bind fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    use anyhow::Context;
    let udp = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("syslog: cannot listen on udp {addr}"))?;
    let udp_addr = udp.local_addr()?;
    let tcp_addr = SocketAddr::new(addr.ip(), udp_addr.port());
    let tcp = match TcpListener::bind(tcp_addr).await {
        Ok(t) => t,
        Err(_) if addr.port() == 0 => TcpListener::bind(addr)
            .await
            .with_context(|| format!("syslog: cannot listen on tcp {addr}"))?,
        Err(e) => {
            return Err(e).with_context(|| format!("syslog: cannot listen on tcp {tcp_addr}"));
        }
    };
    Ok((udp, tcp))
}

/// Starts the listener's tasks; returns its addresses and counters.
pub fn start(
    app: App,
    principal: Principal,
    udp: UdpSocket,
    tcp: TcpListener,
) -> anyhow::Result<(SyslogAddrs, Arc<SyslogStats>)> {
    let addrs = SyslogAddrs {
        udp: udp.local_addr()?,
        tcp: tcp.local_addr()?,
    };
    let stats = Arc::new(SyslogStats::default());
    // every counter is exported from the start, so that `increase()` sees the first drop
    for name in [
        "firebreak_syslog_received_total",
        "firebreak_syslog_dropped_total",
        "firebreak_syslog_malformed_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    let sock = socket2::SockRef::from(&udp);
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::warn!(error = %e, "syslog: cannot enlarge the UDP receive buffer");
    }
    let recv_buffer = sock.recv_buffer_size().unwrap_or(0);
    if recv_buffer < UDP_RECV_BUFFER {
        tracing::info!(
            bytes = recv_buffer,
            wanted = UDP_RECV_BUFFER,
            "syslog: the kernel caps the UDP receive buffer (raise net.core.rmem_max for larger bursts)"
        );
    }
    let (tx, rx) = mpsc::channel::<Received>(QUEUE);
    tokio::spawn(commit_loop(app, principal, rx, stats.clone()));
    tokio::spawn(kernel_drops_loop(addrs.udp, stats.clone()));
    tokio::spawn(udp_loop(udp, tx.clone(), stats.clone()));
    tokio::spawn(tcp_loop(tcp, tx, stats.clone()));
    tracing::info!(udp = %addrs.udp, tcp = %addrs.tcp, "syslog listening");
    Ok((addrs, stats))
}

fn malformed(stats: &SyslogStats) {
    stats.malformed.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("firebreak_syslog_malformed_total").increment(1);
}

fn message_text(bytes: &[u8], stats: &SyslogStats) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    if text.trim().is_empty() {
        return None;
    }
    stats.received.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("firebreak_syslog_received_total").increment(1);
    Some(text.to_string())
}

/// The kernel's count of datagrams dropped on the UDP socket bound to `addr`: the `drops`
/// column of its line in `/proc/net/udp` or `/proc/net/udp6` (None when not found, as on a
/// system without procfs).
fn kernel_drops(addr: SocketAddr) -> Option<u64> {
    let file = if addr.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(file).ok()?;
    let port = format!(":{:04X}", addr.port());
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
        let local = cols.get(1)?;
        if !local.ends_with(&port) {
            return None;
        }
        cols.get(12)?.parse().ok()
    })
}

async fn kernel_drops_loop(addr: SocketAddr, stats: Arc<SyslogStats>) {
    let Some(start) = kernel_drops(addr) else {
        return;
    };
    let mut tick = tokio::time::interval(KERNEL_DROPS_EVERY);
    loop {
        tick.tick().await;
        let Some(now) = kernel_drops(addr) else {
            return;
        };
        let since = now.saturating_sub(start);
        let before = stats.dropped.swap(since, Ordering::Relaxed);
        if since > before {
            metrics::counter!("firebreak_syslog_dropped_total").increment(since - before);
            tracing::warn!(
                dropped = since - before,
                "syslog: the kernel dropped UDP datagrams (receive buffer full)"
            );
        }
    }
}

async fn udp_loop(udp: UdpSocket, tx: mpsc::Sender<Received>, stats: Arc<SyslogStats>) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok((n, from)) => (n, from.ip()),
            Err(e) => {
                tracing::warn!(error = %e, "syslog udp receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if n > MAX_MESSAGE {
            malformed(&stats);
            continue;
        }
        for part in datagram_messages(&buf[..n]) {
            let Some(text) = message_text(part, &stats) else {
                continue;
            };
            // a full queue holds the reader back: datagrams then wait in the socket's buffer
            // (8 MiB asked for), and only what overflows it is lost, counted by the kernel
            if tx.send((text, from)).await.is_err() {
                return;
            }
        }
    }
}

/// The messages of one datagram: one (RFC 5426), or several when a sender batched
/// newline-separated messages into it (each line after the first starting with a `<PRI>`);
/// a multi-line message whose later lines do not start with one stays whole.
fn datagram_messages(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let starts_with_pri = |l: &[u8]| {
        l.first() == Some(&b'<')
            && l.iter()
                .skip(1)
                .take(4)
                .position(|b| *b == b'>')
                .is_some_and(|i| i > 0 && l[1..=i].iter().all(u8::is_ascii_digit))
    };
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    if lines.len() > 1
        && lines.iter().all(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l.is_empty() || starts_with_pri(l)
        })
    {
        lines.into_iter().filter(|l| !l.is_empty()).collect()
    } else {
        vec![bytes]
    }
}

async fn tcp_loop(tcp: TcpListener, tx: mpsc::Sender<Received>, stats: Arc<SyslogStats>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "syslog tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "syslog: too many connections; refused");
            continue;
        };
        let tx = tx.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut stream = stream;
            let mut dec = FrameDecoder::new(MAX_MESSAGE);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => break,
                };
                dec.push(&buf[..n]);
                while let Some(frame) = dec.next_frame() {
                    match frame {
                        Ok(bytes) => {
                            if let Some(text) = message_text(&bytes, &stats)
                                && tx.send((text, peer.ip())).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(_) => malformed(&stats),
                    }
                }
            }
            // what is left without a final newline is the last message
            dec.push(b"\n");
            while let Some(Ok(bytes)) = dec.next_frame() {
                if let Some(text) = message_text(&bytes, &stats) {
                    let _ = tx.send((text, peer.ip())).await;
                }
            }
        });
    }
}

/// The sender's address on an event from the listener: in `fields.sender_ip`, and as the
/// host when the message named none.
fn with_sender(
    mut e: firebreak_intake::NormalizedEvent,
    from: std::net::IpAddr,
) -> firebreak_intake::NormalizedEvent {
    let ip = from.to_canonical().to_string();
    if e.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
        e.host = Some(ip.clone());
    }
    e.fields.insert("sender_ip".into(), ip.into());
    e
}

async fn commit_loop(
    app: App,
    principal: Principal,
    mut rx: mpsc::Receiver<Received>,
    stats: Arc<SyslogStats>,
) {
    let mut batch: Vec<Received> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        metrics::gauge!("firebreak_syslog_queue_depth").set(rx.len() as f64);
        let now = time::OffsetDateTime::now_utc();
        let mut events = Vec::with_capacity(batch.len());
        for (line, from) in batch.drain(..) {
            // a message with a broken RFC 5424 header is kept as text, saying why
            let parsed =
                firebreak_intake::syslog::parse_lenient(&line, now).and_then(|(m, err)| {
                    if err.is_some() {
                        malformed(&stats);
                    }
                    firebreak_intake::syslog::to_events(&m, &line).map(|evs| (evs, err))
                });
            match parsed {
                Ok((evs, err)) => events.extend(evs.into_iter().map(|mut e| {
                    if let Some(err) = &err {
                        e.fields
                            .insert("header_error".into(), err.to_string().into());
                    }
                    with_sender(e, from)
                })),
                Err(e) => {
                    malformed(&stats);
                    tracing::debug!(error = %e, "syslog message not parsed");
                }
            }
        }
        let n = events.len() as u64;
        // a store that is down is waited for: these messages were taken off the socket
        // already; a batch the store refuses for its content goes in one event at a time, and
        // the events it still refuses are counted as malformed
        let mut delay = Duration::from_millis(100);
        loop {
            let mut summary = IngestSummary::default();
            match app.ingest(&principal, events.clone(), &mut summary).await {
                Ok(()) => {
                    stats.events.fetch_add(n, Ordering::Relaxed);
                    break;
                }
                Err(e @ (AppError::Unavailable(_) | AppError::StorageFull)) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "syslog batch not committed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "syslog batch refused; committing its events one by one");
                    for ev in events.drain(..) {
                        let mut one = IngestSummary::default();
                        match app.ingest(&principal, vec![ev], &mut one).await {
                            Ok(()) => {
                                stats.events.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => malformed(&stats),
                        }
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::datagram_messages;

    #[test]
    fn a_datagram_of_several_messages_is_split_only_at_pri_lines() {
        let one = b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n".as_slice();
        assert_eq!(datagram_messages(one), vec![one]);
        let two = b"<34>Oct 11 22:14:15 a su: one\n<13>Oct 11 22:14:16 b app: two\n";
        assert_eq!(
            datagram_messages(two),
            vec![
                b"<34>Oct 11 22:14:15 a su: one".as_slice(),
                b"<13>Oct 11 22:14:16 b app: two".as_slice()
            ]
        );
        // a stack trace in one message stays one message
        let multi = b"<11>Oct 11 22:14:15 a app: panic\n  at main.rs:1\n  at lib.rs:2";
        assert_eq!(datagram_messages(multi), vec![multi.as_slice()]);
    }
}
