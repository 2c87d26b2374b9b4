//! Intake plumbing shared by the intake endpoints and listeners: configured webhook sources,
//! body limits, and the backpressure gate:
//!
//! - a bounded number of intake requests in flight (`[intake] concurrency`);
//! - beyond it, up to [`WAITING_PER_SLOT`] requests per slot wait briefly for one; any more,
//!   and those still waiting after `wait`, get 503 with `Retry-After` instead of queueing
//!   without bound (each waiting request holds its connection and a chunk of its body);
//! - a refused request's body is read and dropped first (up to [`DRAIN_BYTES`]), so that the
//!   client reads the 503 and keeps its connection, instead of a reset while it is still
//!   sending. A client that sent `Expect: 100-continue` has sent no body: it waits for a slot
//!   half a second at most (curl sends its body after a second without an answer) and is
//!   refused without a read; so is a body announced larger than the bound.

use crate::error::ApiError;
use axum::http::{StatusCode, header};
use firebreak_intake::webhook::CompiledMapping;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests that may wait for an intake slot, per slot; more are refused at once.
pub const WAITING_PER_SLOT: usize = 4;
/// A refused request's body is read and dropped up to this size (then the connection closes).
pub const DRAIN_BYTES: usize = 4 * 1024 * 1024;
/// ... and for this long at most.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long a request that waits for `100 Continue` waits for a slot at most.
const EXPECT_WAIT: Duration = Duration::from_millis(500);

/// A webhook source of `POST /ingest/webhook/{source}`.
#[derive(Clone)]
pub struct WebhookSource {
    pub mapping: CompiledMapping,
    /// HMAC-SHA256 key: when set, every request must carry a valid signature.
    pub secret: Option<Vec<u8>>,
    /// The header holding the signature (`sha256=<hex>`, hex or base64).
    pub signature_header: String,
    /// The user events are attributed to when a request is authenticated by its signature
    /// alone (tools that cannot send a token).
    pub user: Option<String>,
}

#[derive(Clone)]
pub struct IntakeSettings {
    pub sources: Arc<BTreeMap<String, WebhookSource>>,
    gate: Arc<Semaphore>,
    /// Requests waiting for a slot now.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// How long a request waits for a slot before 503.
    pub wait: Duration,
    /// Largest streamed body (NDJSON, HEC), after decompression.
    pub max_body_bytes: u64,
    /// Largest body read whole (webhooks, Alertmanager, TheHive, email).
    pub max_message_bytes: usize,
    /// Prefix of ticket numbers in email subjects.
    pub ticket_prefix: String,
    /// Splunk HEC takes the token from `?token=` too (`[intake] hec_query_token = true`).
    pub hec_query_token: bool,
}

impl std::fmt::Debug for IntakeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeSettings")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("slots", &self.gate.available_permits())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self::new(BTreeMap::new(), 16)
    }
}

impl IntakeSettings {
    pub fn new(sources: BTreeMap<String, WebhookSource>, concurrency: usize) -> Self {
        Self {
            sources: Arc::new(sources),
            gate: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: concurrency.max(1) * WAITING_PER_SLOT,
            wait: Duration::from_secs(2),
            max_body_bytes: 1024 * 1024 * 1024,
            max_message_bytes: 32 * 1024 * 1024,
            ticket_prefix: "SEC".into(),
            hec_query_token: false,
        }
    }

    /// A slot for one intake request and its body, or 503 with `Retry-After` when the intake
    /// is saturated (the body read and dropped first, see the module's notes).
    pub async fn admit(
        &self,
        headers: &axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<(OwnedSemaphorePermit, axum::body::Body), ApiError> {
        // A client waiting for `100 Continue` has sent no body and, refused, sends none; it
        // waits for the answer about a second only (curl), then sends it anyway, so it waits
        // for a slot less than that. hyper takes the last `Expect` header.
        let expects_continue = headers
            .get_all(header::EXPECT)
            .iter()
            .next_back()
            .is_some_and(|v| {
                v.as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"100-continue")
            });
        let wait = if expects_continue {
            self.wait.min(EXPECT_WAIT)
        } else {
            self.wait
        };
        if let Some(p) = self.slot(wait).await {
            metrics::gauge!("firebreak_intake_free_slots")
                .set(self.gate.available_permits() as f64);
            return Ok((p, body));
        }
        metrics::counter!("firebreak_intake_shed_total").increment(1);
        // a body announced larger than the drain's bound would be cut anyway: not read at all
        let too_large = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > DRAIN_BYTES as u64);
        if !expects_continue && !too_large {
            drain(body).await;
        }
        Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the intake is saturated; retry after Retry-After seconds",
            )
        })
    }

    /// A free slot, or one that frees within `wait` when the waiting room has a place.
    async fn slot(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.gate.clone().try_acquire_owned() {
            return Some(p);
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_waiting {
            return None;
        }
        tokio::time::timeout(wait, self.gate.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// Reads and drops a refused request's body, [`DRAIN_BYTES`] and [`DRAIN_TIME`] at most.
async fn drain(body: axum::body::Body) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
