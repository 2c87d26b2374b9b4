//! Delivering notifications: in-app ones are delivered by being recorded; email goes out through
//! a `Mailer` (SMTP in the server) from a background loop, claimed record by record (several
//! nodes never send one twice), retried with backoff, and its delivery status kept on the
//! notification and in the ticket's audit trail. A failure never blocks the response.

use crate::{App, AppError, AppResult};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::response::Notification;
use firebreak_store::{ChangeSet, Op, RecordFilter, StoreError, WorkflowRecord};
use serde_json::json;
use std::sync::Arc;
use time::Duration;

/// Sends one email.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String>;
}

/// Posts one signed webhook (Standard Webhooks headers); refuses targets the outbound guard
/// does not allow.
#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, id: &str, url: &str, body: &str) -> Result<(), String>;
}

/// Attempts before a notification is given up as failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// A claim older than this is taken to belong to a node that died while sending.
const STALE_CLAIM: Duration = Duration::minutes(5);

fn backoff(attempt: u32) -> Duration {
    Duration::seconds(i64::from(15u32.saturating_mul(1 << attempt.min(10))))
}

impl App {
    /// Installs the email transport (without one, email notifications are recorded as failed).
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    pub fn has_mailer(&self) -> bool {
        self.mailer.is_some()
    }

    /// Installs the outbound webhook sender.
    pub fn with_webhooks(mut self, sender: Arc<dyn WebhookSender>) -> Self {
        self.webhooks = Some(sender);
        self
    }

    pub fn has_webhooks(&self) -> bool {
        self.webhooks.is_some()
    }

    async fn save_notification(
        &self,
        rec: &WorkflowRecord,
        n: &Notification,
        expected_version: i64,
        audit: Option<AuditDraft>,
    ) -> AppResult<bool> {
        let mut r = rec.clone();
        r.status = n.status.clone();
        r.data = serde_json::to_string(n).map_err(|e| anyhow::anyhow!("{e}"))?;
        r.updated_at = self.now();
        let mut cs = ChangeSet::new().op(Op::UpdateRecord {
            record: r,
            expected_version,
        });
        if let Some(a) = audit {
            cs = cs.audit(a);
        }
        match self.store_commit(cs).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends the email and webhook notifications that are due; returns how many were attempted.
    pub async fn deliver_pending(&self) -> AppResult<usize> {
        if self.mailer.is_none() && self.webhooks.is_none() {
            return Ok(0);
        }
        let now = self.now();
        let mut due = self
            .store
            .list_records(&RecordFilter {
                kind: "notification".into(),
                status: Some("pending".into()),
                limit: 100,
                ..Default::default()
            })
            .await?;
        due.extend(
            self.store
                .list_records(&RecordFilter {
                    kind: "notification".into(),
                    status: Some("sending".into()),
                    limit: 100,
                    ..Default::default()
                })
                .await?
                .into_iter()
                .filter(|r| r.updated_at + STALE_CLAIM <= now),
        );
        let mut attempted = 0;
        for rec in due {
            let mut n: Notification = match serde_json::from_str(&rec.data) {
                Ok(n) => n,
                Err(e) => {
                    return Err(AppError::Unexpected(anyhow::anyhow!(
                        "notification {} unreadable: {e}",
                        rec.id
                    )));
                }
            };
            if n.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            // claim it: only the node whose update wins sends
            n.status = "sending".into();
            if !self.save_notification(&rec, &n, rec.version, None).await? {
                continue;
            }
            attempted += 1;
            n.attempts += 1;
            let outcome = if n.channel == "webhook" {
                self.post_webhook(&n).await
            } else {
                self.send_email(&n).await?
            };
            let (action, details) = match outcome {
                Ok(to) => {
                    n.status = "delivered".into();
                    n.detail = Some(to);
                    n.retry_at = None;
                    (
                        "notification.delivered",
                        json!({"recipient": n.recipient, "channel": n.channel, "attempts": n.attempts}),
                    )
                }
                Err((why, retry)) if retry && n.attempts < MAX_ATTEMPTS => {
                    n.status = "pending".into();
                    n.retry_at = Some(self.now() + backoff(n.attempts));
                    n.detail = Some(format!("attempt {} failed: {why}; will retry", n.attempts));
                    (
                        "notification.retrying",
                        json!({"recipient": n.recipient, "error": why, "attempts": n.attempts}),
                    )
                }
                Err((why, _)) => {
                    n.status = "failed".into();
                    n.retry_at = None;
                    n.detail = Some(format!("gave up after {} attempt(s): {why}", n.attempts));
                    (
                        "notification.failed",
                        json!({"recipient": n.recipient, "error": why, "attempts": n.attempts}),
                    )
                }
            };
            let mut entry =
                AuditDraft::new("system", action, "notification", n.id).details(details);
            if let Some(t) = rec.ticket_id {
                entry = entry.ticket(t);
            }
            let claimed = WorkflowRecord {
                status: "sending".into(),
                ..rec.clone()
            };
            if !self
                .save_notification(&claimed, &n, rec.version + 1, Some(entry))
                .await?
            {
                tracing::warn!(notification = %n.id, "a notification changed while it was being sent");
            }
        }
        Ok(attempted)
    }

    /// Posts a webhook notification: `Ok(detail)` or `Err((why, retry))`.
    async fn post_webhook(&self, n: &Notification) -> Result<String, (String, bool)> {
        let Some(sender) = self.webhooks.clone() else {
            return Err(("no webhook sender is configured".into(), false));
        };
        let body = json!({
            "type": "firebreak.notification",
            "id": n.id,
            "ticket_number": n.ticket_number,
            "title": n.title,
            "created_at": n.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        })
        .to_string();
        match tokio::time::timeout(
            std::time::Duration::from_secs(30),
            sender.post(&n.id.to_string(), &n.recipient, &body),
        )
        .await
        {
            Ok(Ok(())) => Ok(format!("posted to {}", n.recipient)),
            // a refused target is refused every time: no retry
            Ok(Err(e)) if e.starts_with("refused") => Err((e, false)),
            Ok(Err(e)) => Err((e, true)),
            Err(_) => Err(("the endpoint did not answer within 30 s".into(), true)),
        }
    }

    /// Sends an email notification: `Ok(Ok(detail))`, `Ok(Err((why, retry)))`.
    async fn send_email(&self, n: &Notification) -> AppResult<Result<String, (String, bool)>> {
        let Some(mailer) = self.mailer.clone() else {
            return Ok(Err(("no SMTP relay is configured".into(), false)));
        };
        let address = match self.store.get_user_by_name(&n.recipient).await {
            Ok(u) => u.user.email.filter(|e| !e.trim().is_empty()),
            // people who are not users are addressed directly
            Err(StoreError::NotFound) => Some(n.recipient.clone()).filter(|r| r.contains('@')),
            Err(e) => return Err(e.into()),
        };
        Ok(match address {
            None => Err(("the recipient has no email address".to_string(), false)),
            Some(to) => {
                let body = format!(
                    "{}\n\nTicket: {}\n\nThis message was sent by Firebreak under the response plan's communication protocols.",
                    n.title, n.ticket_number
                );
                let subject = format!("[{}] {}", n.ticket_number, n.title);
                match tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    mailer.send(&to, &subject, &body),
                )
                .await
                {
                    Ok(Ok(())) => Ok(format!("sent to {to} by SMTP")),
                    Ok(Err(e)) => Err((e, true)),
                    Err(_) => Err(("the mail server did not answer within 30 s".into(), true)),
                }
            }
        })
    }
}
