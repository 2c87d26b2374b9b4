//! The accept loop: HTTP/1.1 connections served by hyper with limits on how many and for how
//! long (OWASP ASVS 13.1.2, documented in docs/OPERATIONS.md "Connection limits").
//!
//! - At most `max_connections` connections are served at once. At the cap the loop stops
//!   accepting until one closes: further clients wait in the kernel's listen backlog (and are
//!   served in order as slots free) instead of being reset; nothing is allocated for them.
//! - The request line and headers must arrive within `header_timeout` of the server starting to
//!   wait for them. hyper starts that timer on a new connection and again after every response,
//!   so it also closes idle keep-alive connections; trickling header bytes does not extend it.
//! - A request body must arrive within `body_timeout` plus one second per `body_min_rate`
//!   bytes received (the mod_reqtimeout rule): a client trickling a body is answered 408 and the
//!   connection closed, while a large upload at a reasonable rate is not cut.
//! - A response the client does not read (its socket accepts no bytes) for `send_timeout`
//!   closes the connection.
//! - On shutdown the loop stops accepting, asks every connection to finish its request in
//!   flight and close, and gives up on those still open after `shutdown_grace`. A response
//!   that would never finish by itself (the live stream) watches [`Stopping`] and ends.

use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// A connection's read buffer at most (hyper's default is ~400 KB): request heads larger than
/// this are refused (431), bodies are read in chunks of it at most.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Connection limits and timeouts of `serve` (`[http]` in firebreak.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The request line and headers must arrive within this (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// A request body must arrive within this, plus one second per `body_min_rate` bytes.
    pub body_timeout: Duration,
    /// Bytes per second that extend the body deadline by one second.
    pub body_min_rate: u64,
    /// A response the client does not read for this long closes the connection.
    pub send_timeout: Duration,
    /// Requests in flight at shutdown get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            send_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; `info` turns a peer address into
/// the `ConnectInfo` handlers see.
pub(crate) async fn serve_with<L, C>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    info: fn(L::Addr) -> C,
) -> std::io::Result<()>
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Clone + Send + Sync + 'static,
{
    // `acquire_many` takes a u32: the cap is at most that (config allows 1,000,000)
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper reads a body ahead of its handler, one chunk of up to its read buffer: at its
        // default (~400 KB) each request waiting for an intake slot held ~140 KB
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    // the warning at the cap is logged at most once a minute; the counter counts every time
    let mut warned: Option<Instant> = None;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("firebreak_http_connection_cap_reached_total").increment(1);
                if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = max,
                        "connection cap reached; new connections wait in the listen backlog"
                    );
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let conn = Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits,
            stop: stop_rx.clone(),
        };
        let peer = info(addr);
        tokio::spawn(async move {
            let _permit = permit;
            metrics::gauge!("firebreak_http_connections").increment(1.0);
            conn.run(io, peer).await;
            metrics::gauge!("firebreak_http_connections").decrement(1.0);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // every connection holds a permit: all of them back means all connections closed
    let drained = tokio::time::timeout(
        limits.shutdown_grace,
        slots.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = max - slots.available_permits(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period are dropped"
        );
    }
    Ok(())
}

struct Connection {
    router: Router,
    builder: Arc<hyper::server::conn::http1::Builder>,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run<I, C>(mut self, io: I, peer: C)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        C: Clone + Send + Sync + 'static,
    {
        let (router, limits) = (self.router, self.limits);
        let stopping = Stopping(self.stop.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let timed_out = BodyTimedOut::default();
            let mut req = req
                .map(|b| axum::body::Body::new(DeadlineBody::new(b, &limits, timed_out.clone())));
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            req.extensions_mut().insert(timed_out);
            req.extensions_mut().insert(stopping.clone());
            router.clone().oneshot(req)
        });
        let io = TokioIo::new(SendTimeout::new(io, limits.send_timeout));
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// In every request's extensions: resolves when the server stops accepting, so a response
/// that lasts (the live stream) ends then instead of holding shutdown for `shutdown_grace`.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    pub async fn wait(mut self) {
        // the sender gone means the accept loop is gone too
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Set when a request's body missed its deadline: the response becomes a 408.
#[derive(Clone, Default)]
pub struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Middleware (inside the router, so the answer gets the usual headers): a request whose body
/// timed out is answered 408, whatever status the handler made of the read error, and the
/// connection is closed. An error envelope becomes `timeout` and keeps the handler's message
/// (e.g. which lines of a stream are committed); another body (a peer-shaped intake error, a
/// page) is kept with the 408. A success stands: the handler finished with what it had.
pub async fn body_timeout_response(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let flag = req.extensions().get::<BodyTimedOut>().cloned();
    let res = next.run(req).await;
    if !flag.is_some_and(|f| f.get()) || res.status().is_success() {
        return res;
    }
    metrics::counter!("firebreak_http_body_timeouts_total").increment(1);
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
    let mut res = match message {
        Some(m) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", m).into_response(),
        None if bytes.is_empty() => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request body did not arrive in time",
        )
        .into_response(),
        None => {
            parts.status = StatusCode::REQUEST_TIMEOUT;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
    };
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body with a deadline: `body_timeout` after it is first read, plus one second per
/// `body_min_rate` bytes received since.
struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    min_rate: u64,
    received: u64,
    started: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: BodyTimedOut,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, limits: &HttpLimits, timed_out: BodyTimedOut) -> Self {
        Self {
            inner,
            timeout: limits.body_timeout,
            min_rate: limits.body_min_rate.max(1),
            received: 0,
            started: None,
            sleep: None,
            timed_out,
        }
    }

    fn deadline(&self, started: Instant) -> Instant {
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / self.min_rate);
        started + self.timeout.saturating_add(earned)
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out.get() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                    let deadline = this.deadline(started);
                    if let Some(s) = this.sleep.as_mut() {
                        s.as_mut().reset(deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline(started);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                this.timed_out.0.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the peer has accepted no bytes for `timeout`.
struct SendTimeout<I> {
    inner: I,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> SendTimeout<I> {
    fn new(inner: I, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: starts or checks the stall timer.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read the response in time",
        )))
    }

    fn progress<T>(
        &mut self,
        r: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields `chunk` every `every`, `n` times.
    fn trickle(n: usize, chunk: &'static [u8], every: Duration) -> axum::body::Body {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(chunk)), i + 1))
        });
        axum::body::Body::from_stream(stream)
    }

    fn limits(timeout_ms: u64, rate: u64) -> HttpLimits {
        HttpLimits {
            body_timeout: Duration::from_millis(timeout_ms),
            body_min_rate: rate,
            ..HttpLimits::default()
        }
    }

    #[tokio::test]
    async fn a_trickled_body_misses_its_deadline() {
        let flag = BodyTimedOut::default();
        let body = DeadlineBody::new(
            trickle(100, b"x", Duration::from_millis(50)),
            &limits(300, 1024),
            flag.clone(),
        );
        let err = body.collect().await.err();
        assert!(err.is_some_and(|e| e.is::<BodyTimeout>()));
        assert!(flag.get());
    }

    #[tokio::test]
    async fn a_body_at_the_minimum_rate_earns_time() {
        // 2 KiB per 50 ms = 40 KiB/s, over 1 s: well past the 300 ms base, above 1 KiB/s
        let flag = BodyTimedOut::default();
        let body = DeadlineBody::new(
            trickle(20, &[b'x'; 2048], Duration::from_millis(50)),
            &limits(300, 1024),
            flag.clone(),
        );
        let bytes = body.collect().await.ok().map(|c| c.to_bytes().len());
        assert_eq!(bytes, Some(20 * 2048));
        assert!(!flag.get());
    }
}
