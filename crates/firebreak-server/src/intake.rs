//! Intake plumbing shared by the intake endpoints and listeners: configured webhook sources,
//! body limits, and the backpressure gate (a bounded number of intake requests in flight;
//! beyond it, callers wait briefly, then get 503 with `Retry-After` instead of queueing
//! without bound).

use crate::error::ApiError;
use axum::http::StatusCode;
use firebreak_intake::webhook::CompiledMapping;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// How long a request waits for a slot before 503.
    pub wait: Duration,
    /// Largest streamed body (NDJSON, HEC), after decompression.
    pub max_body_bytes: u64,
    /// Largest body read whole (webhooks, Alertmanager, TheHive, email).
    pub max_message_bytes: usize,
    /// Prefix of ticket numbers in email subjects.
    pub ticket_prefix: String,
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
            wait: Duration::from_secs(2),
            max_body_bytes: 1024 * 1024 * 1024,
            max_message_bytes: 32 * 1024 * 1024,
            ticket_prefix: "SEC".into(),
        }
    }

    /// A slot for one intake request, or 503 with `Retry-After` when the intake is saturated.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.wait, self.gate.clone().acquire_owned()).await {
            Ok(Ok(p)) => {
                metrics::gauge!("firebreak_intake_free_slots")
                    .set(self.gate.available_permits() as f64);
                Ok(p)
            }
            _ => {
                metrics::counter!("firebreak_intake_shed_total").increment(1);
                Err(ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        "the intake is saturated; retry after Retry-After seconds",
                    )
                })
            }
        }
    }
}
