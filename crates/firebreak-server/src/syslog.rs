//! The syslog listener: RFC 5424 and RFC 3164 messages over UDP (one datagram, one message)
//! and TCP (RFC 6587 octet counting or newline framing), with CEF and LEEF payloads detected.
//! Messages go through a bounded queue to one task that parses them and commits them in
//! batches. UDP has no flow control: when the queue is full a datagram is dropped and counted
//! (`firebreak_syslog_dropped_total`); a TCP sender is slowed down instead (it waits for room).

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
    let (tx, rx) = mpsc::channel::<String>(QUEUE);
    tokio::spawn(commit_loop(app, principal, rx, stats.clone()));
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

async fn udp_loop(udp: UdpSocket, tx: mpsc::Sender<String>, stats: Arc<SyslogStats>) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let n = match udp.recv_from(&mut buf).await {
            Ok((n, _)) => n,
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
        let Some(text) = message_text(&buf[..n], &stats) else {
            continue;
        };
        if tx.try_send(text).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("firebreak_syslog_dropped_total").increment(1);
        }
    }
}

async fn tcp_loop(tcp: TcpListener, tx: mpsc::Sender<String>, stats: Arc<SyslogStats>) {
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
                                && tx.send(text).await.is_err()
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
                    let _ = tx.send(text).await;
                }
            }
        });
    }
}

async fn commit_loop(
    app: App,
    principal: Principal,
    mut rx: mpsc::Receiver<String>,
    stats: Arc<SyslogStats>,
) {
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        metrics::gauge!("firebreak_syslog_queue_depth").set(rx.len() as f64);
        let now = time::OffsetDateTime::now_utc();
        let mut events = Vec::with_capacity(batch.len());
        for line in batch.drain(..) {
            let parsed = firebreak_intake::syslog::parse(&line, now)
                .and_then(|m| firebreak_intake::syslog::to_events(&m, &line));
            match parsed {
                Ok(evs) => events.extend(evs),
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
