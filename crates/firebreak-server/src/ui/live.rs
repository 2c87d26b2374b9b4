//! `GET /live`: what changed, as server-sent events, for the open pages of a signed-in user.
//! Each message names a kind of change (`event: tickets`, `events`, `jobs`, `indicators`,
//! `record:<kind>`, or `*` for "anything": this stream fell behind), never what changed: the
//! page re-reads its fragment with its own user's visibility. A topic is sent at most once per
//! [`COALESCE`] (a burst of intake commits is one message, then at most one more), a comment
//! every [`KEEPALIVE`] keeps proxies from closing the connection and re-checks the session
//! (signed out, expired or disabled: the stream ends and the browser's reconnection gets a
//! 401). The stream ends when the server stops accepting ([`Stopping`]), so it never holds
//! shutdown. Each open stream is a connection like any other under the connection cap, and a
//! user holds at most [`MAX_STREAMS_PER_USER`] (429 with `Retry-After` beyond).
//! `?since=<mark>`: the mark the page was rendered with; when anything was announced since
//! (or the page came from another node), the stream starts with `*`.

use crate::AppState;
use crate::accept::Stopping;
use crate::web::session_cookie;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firebreak_app::AppError;
use firebreak_app::live::Subscription;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// One message per topic at most this often.
pub const COALESCE: Duration = Duration::from_millis(250);
/// A comment this often when nothing else was sent; the session is checked again then.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, serde::Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    since: Option<String>,
}

/// `GET /live` (`text/event-stream`): 401 without a live session, as the pages' own refreshes.
pub async fn stream(
    State(s): State<AppState>,
    stopping: Option<axum::Extension<Stopping>>,
    axum::extract::Query(q): axum::extract::Query<LiveQuery>,
    headers: HeaderMap,
) -> Response {
    let user = match super::signed_in_passive(&s, &headers).await {
        Ok(ui) => ui.p.username().to_string(),
        Err(r) => return r,
    };
    let Some(secret) = session_cookie(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // each stream holds a connection for as long as it is open: one user cannot take them all
    let Some(gauge) = StreamGauge::new(&user) else {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_STREAMS_PER_USER} live pages per user are open at once"),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return r;
    };
    // subscribed before the answer's head goes out: a change committed after the client sees
    // the head is on this stream, one committed since the page's mark starts it with `*`
    let since = q.since;
    let (sub, missed) = s.app.subscribe_changes(since.as_deref());
    let mut pending = BTreeSet::new();
    if missed && since.is_some() {
        pending.insert("*".to_string());
    }
    let live = LiveStream {
        sub,
        state: s,
        secret,
        stopping: Box::pin(async move {
            match stopping {
                Some(axum::Extension(st)) => st.wait().await,
                None => std::future::pending().await,
            }
        }),
        pending,
        last_sent: HashMap::new(),
        keepalive_at: Instant::now() + KEEPALIVE,
        checked_at: Instant::now(),
        opened: false,
        _gauge: gauge,
    };
    let body = futures::stream::unfold(live, |mut l| async move {
        let chunk = l.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), l))
    });
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx and the like: pass each message on at once
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Streams one user may hold open at once (in this process); the next gets 429.
pub const MAX_STREAMS_PER_USER: usize = 16;

/// Open streams per user.
static OPEN: std::sync::LazyLock<std::sync::Mutex<HashMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// Counts open streams (`firebreak_live_streams`), per user too.
struct StreamGauge(String);

impl StreamGauge {
    /// `None` when `user` already holds [`MAX_STREAMS_PER_USER`] streams.
    fn new(user: &str) -> Option<Self> {
        let mut open = OPEN.lock().ok()?;
        let n = open.entry(user.to_string()).or_insert(0);
        if *n >= MAX_STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        metrics::gauge!("firebreak_live_streams").increment(1.0);
        Some(Self(user.to_string()))
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        metrics::gauge!("firebreak_live_streams").decrement(1.0);
        if let Ok(mut open) = OPEN.lock()
            && let Some(n) = open.get_mut(&self.0)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

struct LiveStream {
    state: AppState,
    secret: String,
    sub: Subscription,
    stopping: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Topics heard and not yet sent (held back by [`COALESCE`]).
    pending: BTreeSet<String>,
    last_sent: HashMap<String, Instant>,
    keepalive_at: Instant,
    /// When the session was last checked (every [`KEEPALIVE`]).
    checked_at: Instant,
    opened: bool,
    _gauge: StreamGauge,
}

impl LiveStream {
    /// The next bytes to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.opened {
            self.opened = true;
            // the browser reconnects after this long when the connection drops
            return Some(Bytes::from_static(b"retry: 3000\n: live\n\n"));
        }
        loop {
            let now = Instant::now();
            let due = |t: &String| self.last_sent.get(t).map_or(now, |at| *at + COALESCE);
            let ready = self.pending.iter().find(|t| due(t) <= now).cloned();
            // the session is checked every KEEPALIVE whatever the traffic: a stream that
            // always has news must still end when its session does
            if now >= self.checked_at + KEEPALIVE {
                self.checked_at = now;
                match self
                    .state
                    .app
                    .authenticate_session_passive(&self.secret)
                    .await
                {
                    // a database that is away for a moment does not end the stream
                    Ok(_) | Err(AppError::Unavailable(_)) => {}
                    Err(_) => return None,
                }
            }
            if let Some(t) = ready {
                self.pending.remove(&t);
                self.last_sent.insert(t.clone(), now);
                self.keepalive_at = now + KEEPALIVE;
                return Some(Bytes::from(format!("event: {t}\ndata: {t}\n\n")));
            }
            let wake = self
                .pending
                .iter()
                .map(due)
                .min()
                .map_or(self.keepalive_at, |d| d.min(self.keepalive_at));
            tokio::select! {
                biased;
                () = &mut self.stopping => return None,
                msg = self.sub.recv() => {
                    // `None`: the process is ending
                    let topics = msg?;
                    for t in topics.split(',').filter(|t| !t.is_empty()) {
                        self.pending.insert(t.to_string());
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= self.keepalive_at {
                        self.keepalive_at = Instant::now() + KEEPALIVE;
                        return Some(Bytes::from_static(b": keep-alive\n\n"));
                    }
                }
            }
        }
    }
}
