//! Threat intel: connectors (intel services and outbound channels) with their secrets sealed at
//! rest and never returned, lookups with a result cache (TTL) and per-connector rate limits,
//! the local indicator store (feeds imported from files or fetched from URLs on a schedule,
//! matched against every observable at intake through an in-memory set), and exports.
//! All outbound HTTP goes through [`HttpClient`], which the server implements behind the
//! SSRF guard.

use crate::{App, AppError, AppResult, Principal};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::error::FieldError;
use firebreak_domain::ids::TicketId;
use firebreak_domain::role::{Role, groups};
use firebreak_intel::connectors::{
    self, ConnectorKind, ConnectorSpec, HttpMapping, LookupResult, Verdict,
};
use firebreak_intel::feeds::{self, FeedFormat, FeedOptions, Indicator};
use firebreak_intel::matcher::IndicatorSet;
use firebreak_intel::outbound;
use firebreak_store::{
    ChangeSet, IndicatorFilter, IndicatorRecord, ObservableFilter, Op, RecordFilter, StoreError,
    WorkflowRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const K_CONNECTOR: &str = "connector";
pub const K_INTEL_RESULT: &str = "intel_result";
/// Indicators written per commit during an import.
const IMPORT_BATCH: usize = 5_000;
/// Observables looked up per step at most.
const MAX_LOOKUPS: usize = 50;
/// How often a node checks whether the indicator store changed.
const MATCHER_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// One outbound HTTP request (through the SSRF guard).
#[derive(Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Lifts the refusal of loopback/private/link-local targets for this request (a connector
    /// an admin allowlisted).
    pub allow_private: bool,
    pub timeout: std::time::Duration,
    pub max_bytes: usize,
}

impl std::fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // headers carry API keys and the URL may be a Slack/Teams secret: names only
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Outbound HTTP: resolves, refuses internal addresses (unless allowed), pins the address,
/// re-checks redirects, limits time and size.
#[async_trait::async_trait]
pub trait HttpClient: Send + Sync {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, String>;
}

/// Kinds of connectors: intel services, outbound channels, and indicator feeds.
pub const CONNECTOR_KINDS: &[&str] = &[
    "virustotal",
    "abuseipdb",
    "urlscan",
    "misp",
    "http",
    "slack",
    "teams",
    "webhook",
    "feed",
];

fn is_intel_kind(k: &str) -> bool {
    matches!(k, "virustotal" | "abuseipdb" | "urlscan" | "misp" | "http")
}

/// A connector as stored (the secret sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConnector {
    name: String,
    kind: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    http: Option<HttpMapping>,
    /// AES-256-GCM sealed, base64: nonce || ciphertext.
    #[serde(default)]
    secret: Option<String>,
    cache_ttl_secs: i64,
    rate_per_minute: u32,
    allow_private: bool,
    enabled: bool,
    /// Feeds: format, source name, refresh interval, last fetch.
    #[serde(default)]
    feed_format: Option<String>,
    #[serde(default)]
    feed_source: Option<String>,
    #[serde(default)]
    refresh_minutes: Option<u32>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_fetch: Option<OffsetDateTime>,
    #[serde(default)]
    last_result: Option<String>,
    updated_by: String,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

/// A connector as the API shows it: never the secret, only whether one is set.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub http: Option<HttpMapping>,
    pub has_secret: bool,
    pub cache_ttl_secs: i64,
    pub rate_per_minute: u32,
    pub allow_private: bool,
    pub enabled: bool,
    pub feed_format: Option<String>,
    pub feed_source: Option<String>,
    pub refresh_minutes: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_fetch: Option<OffsetDateTime>,
    pub last_result: Option<String>,
    pub updated_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `PUT /connectors/{name}`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorInput {
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub http: Option<HttpMapping>,
    /// API key (intel), webhook URL (Slack, Teams), `whsec_` signing secret (webhook), or an
    /// auth header value (feeds). Write-only; omitted keeps the stored one, `""` removes it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub cache_ttl_secs: Option<i64>,
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
    #[serde(default)]
    pub allow_private: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub feed_format: Option<String>,
    #[serde(default)]
    pub feed_source: Option<String>,
    #[serde(default)]
    pub refresh_minutes: Option<u32>,
}

impl std::fmt::Debug for ConnectorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorInput")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A cached lookup result (one per connector, kind and value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntelResult {
    pub connector: String,
    pub kind: String,
    pub value: String,
    pub verdict: Verdict,
    pub score: Option<f64>,
    pub summary: String,
    pub link: Option<String>,
    #[serde(default)]
    pub details: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub source: String,
    pub format: String,
    pub imported: usize,
    pub skipped: usize,
    pub errors: Vec<feeds::FeedError>,
}

/// A local indicator as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IndicatorView {
    pub id: Uuid,
    pub kind: String,
    pub value: String,
    pub confidence: i32,
    pub source: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<IndicatorRecord> for IndicatorView {
    fn from(r: IndicatorRecord) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            value: r.value,
            confidence: r.confidence,
            source: r.source,
            description: r.description,
            valid_until: r.valid_until,
            updated_at: r.updated_at,
        }
    }
}

/// The in-memory indicator matcher and the per-connector rate windows of this node.
#[derive(Default)]
pub struct IntelState {
    matcher: RwLock<Option<(Arc<IndicatorSet>, i64)>>,
    checked: Mutex<Option<Instant>>,
    reloading: tokio::sync::Mutex<()>,
    rates: Mutex<HashMap<String, (Instant, u32)>>,
    secrets: RwLock<Option<Aes256Gcm>>,
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Validation(vec![FieldError::new(field, message)])
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn verdict_rank(v: Verdict) -> u8 {
    match v {
        Verdict::Malicious => 3,
        Verdict::Suspicious => 2,
        Verdict::Clean => 1,
        Verdict::Unknown => 0,
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Malicious => "malicious",
        Verdict::Suspicious => "suspicious",
        Verdict::Clean => "clean",
        Verdict::Unknown => "unknown",
    }
}

impl App {
    /// Installs the outbound HTTP client (connectors, feeds, Slack/Teams).
    pub fn with_http(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.http = Some(client);
        self
    }

    /// Installs the key that seals connector secrets (derived from the document key).
    pub fn with_secret_key(self, key: &[u8; 32]) -> Self {
        use hmac::Mac;
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
            return self;
        };
        mac.update(b"firebreak connector secrets v1");
        let derived = mac.finalize().into_bytes();
        if let Ok(c) = Aes256Gcm::new_from_slice(&derived)
            && let Ok(mut g) = self.intel.secrets.write()
        {
            *g = Some(c);
        }
        self
    }

    fn seal(&self, plain: &str) -> AppResult<String> {
        let g = self
            .intel
            .secrets
            .read()
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("lock")))?;
        let Some(c) = g.as_ref() else {
            return Err(AppError::Upstream(
                "no key is configured to store secrets".into(),
            ));
        };
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let ct = c
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("sealing failed")))?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    fn unseal(&self, sealed: &str) -> AppResult<String> {
        let g = self
            .intel
            .secrets
            .read()
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("lock")))?;
        let Some(c) = g.as_ref() else {
            return Err(AppError::Upstream(
                "no key is configured to read secrets".into(),
            ));
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("a connector secret is damaged")))?;
        if raw.len() < 13 {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "a connector secret is damaged"
            )));
        }
        let pt = c
            .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
            .map_err(|_| {
                AppError::Unexpected(anyhow::anyhow!(
                    "a connector secret cannot be opened with this key"
                ))
            })?;
        String::from_utf8(pt)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("a connector secret is damaged")))
    }

    // ----- connectors ------------------------------------------------------------------

    async fn connector_records(&self) -> AppResult<Vec<WorkflowRecord>> {
        Ok(self
            .store
            .list_records(&RecordFilter {
                kind: K_CONNECTOR.into(),
                limit: 1000,
                ..Default::default()
            })
            .await?)
    }

    async fn connector_record(&self, name: &str) -> AppResult<(WorkflowRecord, StoredConnector)> {
        let rec = self
            .store
            .list_records(&RecordFilter {
                kind: K_CONNECTOR.into(),
                principal: Some(name.into()),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next()
            .ok_or(AppError::NotFound)?;
        let c = serde_json::from_str(&rec.data).map_err(|e| {
            AppError::Unexpected(anyhow::anyhow!("connector {name} unreadable: {e}"))
        })?;
        Ok((rec, c))
    }

    fn connector_view(c: &StoredConnector) -> ConnectorView {
        ConnectorView {
            name: c.name.clone(),
            kind: c.kind.clone(),
            base_url: if matches!(c.kind.as_str(), "slack" | "teams") {
                None
            } else {
                c.base_url.clone()
            },
            http: c.http.clone(),
            has_secret: c.secret.is_some(),
            cache_ttl_secs: c.cache_ttl_secs,
            rate_per_minute: c.rate_per_minute,
            allow_private: c.allow_private,
            enabled: c.enabled,
            feed_format: c.feed_format.clone(),
            feed_source: c.feed_source.clone(),
            refresh_minutes: c.refresh_minutes,
            last_fetch: c.last_fetch,
            last_result: c.last_result.clone(),
            updated_by: c.updated_by.clone(),
            updated_at: c.updated_at,
        }
    }

    fn may_read_intel(p: &Principal) -> bool {
        p.can_read() && (p.is_admin() || p.has_any(groups::READERS))
    }

    pub async fn list_connectors(&self, p: &Principal) -> AppResult<Vec<ConnectorView>> {
        if !Self::may_read_intel(p) {
            return Err(AppError::Forbidden(
                "connectors are for the security team and admins".into(),
            ));
        }
        let mut out = Vec::new();
        for r in self.connector_records().await? {
            if let Ok(c) = serde_json::from_str::<StoredConnector>(&r.data) {
                out.push(Self::connector_view(&c));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_connector(&self, p: &Principal, name: &str) -> AppResult<ConnectorView> {
        if !Self::may_read_intel(p) {
            return Err(AppError::NotFound);
        }
        Ok(Self::connector_view(&self.connector_record(name).await?.1))
    }

    /// Creates or replaces a connector (admin). Every problem is reported by field.
    pub async fn put_connector(
        &self,
        p: &Principal,
        name: &str,
        input: &ConnectorInput,
    ) -> AppResult<(ConnectorView, bool)> {
        if !p.is_admin() || !p.can_write() {
            return Err(AppError::Forbidden("only admins manage connectors".into()));
        }
        let mut errs = Vec::new();
        if !valid_name(name) {
            errs.push(FieldError::new(
                "name",
                "1-64 characters: lowercase letters, digits, '-' and '_'",
            ));
        }
        if !CONNECTOR_KINDS.contains(&input.kind.as_str()) {
            errs.push(FieldError::new(
                "kind",
                format!("expected one of: {}", CONNECTOR_KINDS.join(", ")),
            ));
        }
        let existing = match self.connector_record(name).await {
            Ok(x) => Some(x),
            Err(AppError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let same_destination = |c: &StoredConnector| {
            c.kind == input.kind
                && c.base_url == input.base_url
                && serde_json::to_string(&c.http).ok() == serde_json::to_string(&input.http).ok()
        };
        let secret = match (&input.secret, &existing) {
            (Some(s), _) if s.is_empty() => None,
            (Some(s), _) => Some(s.clone()),
            (None, Some((_, c))) if c.secret.is_some() && !same_destination(c) => {
                // a stored key never follows a connector to a new destination
                errs.push(FieldError::new(
                    "secret",
                    "enter the secret again: the kind, base_url or http mapping changed",
                ));
                None
            }
            (None, Some((_, c))) => match &c.secret {
                Some(sealed) => Some(self.unseal(sealed)?),
                None => None,
            },
            (None, _) => None,
        };
        if let Some(u) = &input.base_url {
            match url::Url::parse(u) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        errs.push(FieldError::new(
                            "base_url",
                            "must not carry credentials: put them in `secret`",
                        ));
                    }
                }
                _ => errs.push(FieldError::new("base_url", "must be an http(s) URL")),
            }
        }
        match input.kind.as_str() {
            "misp" | "webhook" | "feed" if input.base_url.is_none() => {
                errs.push(FieldError::new(
                    "base_url",
                    format!("is required for a {} connector", input.kind),
                ));
            }
            "http" if input.http.is_none() => errs.push(FieldError::new(
                "http",
                "is required for an http connector (url_template, verdict_path...)",
            )),
            "slack" | "teams" => match &secret {
                None => errs.push(FieldError::new(
                    "secret",
                    "is required: the incoming webhook URL",
                )),
                Some(s)
                    if !(s.starts_with("https://")
                        || (input.allow_private == Some(true) && s.starts_with("http://"))) =>
                {
                    errs.push(FieldError::new(
                        "secret",
                        "must be the https:// webhook URL",
                    ))
                }
                _ => {}
            },
            "webhook" => match &secret {
                Some(s)
                    if s.strip_prefix("whsec_").is_some_and(|b| {
                        base64::engine::general_purpose::STANDARD.decode(b).is_ok()
                    }) => {}
                _ => errs.push(FieldError::new(
                    "secret",
                    "is required: a Standard Webhooks signing secret `whsec_<base64>`",
                )),
            },
            "virustotal" | "abuseipdb" | "urlscan" | "misp" if secret.is_none() => {
                errs.push(FieldError::new(
                    "secret",
                    "is required: the service's API key",
                ));
            }
            _ => {}
        }
        if input.kind == "feed" {
            match input.feed_format.as_deref().map(str::parse::<FeedFormat>) {
                Some(Ok(_)) => {}
                _ => errs.push(FieldError::new(
                    "feed_format",
                    "is required: stix, misp or csv",
                )),
            }
            if !matches!(input.refresh_minutes, Some(5..=10_080)) {
                errs.push(FieldError::new(
                    "refresh_minutes",
                    "is required: 5 to 10080",
                ));
            }
        } else if input.feed_format.is_some()
            || input.refresh_minutes.is_some()
            || input.feed_source.is_some()
        {
            errs.push(FieldError::new(
                "feed_format",
                "feed_format, feed_source and refresh_minutes are for feed connectors",
            ));
        }
        if input.http.is_some() && input.kind != "http" {
            errs.push(FieldError::new("http", "is only for http connectors"));
        }
        if let Some(t) = input.cache_ttl_secs
            && !(0..=30 * 86_400).contains(&t)
        {
            errs.push(FieldError::new("cache_ttl_secs", "0 to 2592000"));
        }
        if let Some(r) = input.rate_per_minute
            && !(1..=10_000).contains(&r)
        {
            errs.push(FieldError::new("rate_per_minute", "1 to 10000"));
        }
        if !errs.is_empty() {
            return Err(AppError::Validation(errs));
        }
        let now = self.now();
        let stored = StoredConnector {
            name: name.into(),
            kind: input.kind.clone(),
            base_url: input.base_url.clone(),
            http: input.http.clone(),
            secret: match &secret {
                Some(s) => Some(self.seal(s)?),
                None => None,
            },
            cache_ttl_secs: input.cache_ttl_secs.unwrap_or(86_400),
            rate_per_minute: input.rate_per_minute.unwrap_or(match input.kind.as_str() {
                "virustotal" => 4,
                _ => 60,
            }),
            allow_private: input.allow_private.unwrap_or(false),
            enabled: input.enabled.unwrap_or(true),
            feed_format: input.feed_format.clone(),
            feed_source: input.feed_source.clone(),
            refresh_minutes: input.refresh_minutes,
            last_fetch: existing.as_ref().and_then(|(_, c)| c.last_fetch),
            last_result: existing.as_ref().and_then(|(_, c)| c.last_result.clone()),
            updated_by: p.username().into(),
            updated_at: now,
        };
        let data = serde_json::to_string(&stored).map_err(|e| AppError::Unexpected(e.into()))?;
        let status = if stored.enabled {
            "enabled"
        } else {
            "disabled"
        };
        let created = existing.is_none();
        let (op, id) = match existing {
            Some((rec, _)) => (
                Op::UpdateRecord {
                    record: WorkflowRecord {
                        status: status.into(),
                        data,
                        updated_at: now,
                        ..rec.clone()
                    },
                    expected_version: rec.version,
                },
                rec.id,
            ),
            None => {
                let id = Uuid::now_v7();
                (
                    Op::InsertRecord(WorkflowRecord {
                        id,
                        kind: K_CONNECTOR.into(),
                        ticket_id: None,
                        parent_id: None,
                        status: status.into(),
                        principal: Some(name.into()),
                        data,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    }),
                    id,
                )
            }
        };
        // the audit entry names what changed, never the secret
        let cs = ChangeSet::new().op(op).audit(
            AuditDraft::new(p.username(), if created { "connector.created" } else { "connector.updated" }, "connector", id)
                .details(json!({"name": name, "kind": stored.kind, "has_secret": stored.secret.is_some(), "secret_changed": input.secret.is_some(), "allow_private": stored.allow_private, "enabled": stored.enabled})),
        );
        match self.commit(cs).await {
            Ok(_) => Ok((Self::connector_view(&stored), created)),
            Err(StoreError::Conflict(_)) => Err(AppError::Conflict {
                code: "conflict",
                message: "the connector changed at the same time; try again".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a connector (admin); its cached results stay until they expire.
    pub async fn delete_connector(&self, p: &Principal, name: &str) -> AppResult<()> {
        if !p.is_admin() || !p.can_write() {
            return Err(AppError::Forbidden("only admins manage connectors".into()));
        }
        let (rec, c) = self.connector_record(name).await?;
        let now = self.now();
        // kept as a disabled tombstone so the audit trail can still name it
        let mut tomb = c.clone();
        tomb.enabled = false;
        tomb.secret = None;
        tomb.updated_by = p.username().into();
        tomb.updated_at = now;
        let cs = ChangeSet::new()
            .op(Op::UpdateRecord {
                record: WorkflowRecord {
                    status: "deleted".into(),
                    principal: Some(format!("deleted:{}:{}", name, rec.id)),
                    data: serde_json::to_string(&tomb)
                        .map_err(|e| AppError::Unexpected(e.into()))?,
                    updated_at: now,
                    ..rec.clone()
                },
                expected_version: rec.version,
            })
            .audit(
                AuditDraft::new(p.username(), "connector.deleted", "connector", rec.id)
                    .details(json!({"name": name, "kind": c.kind})),
            );
        self.commit(cs).await?;
        Ok(())
    }

    fn spec(c: &StoredConnector) -> Option<ConnectorSpec> {
        let kind = match c.kind.as_str() {
            "virustotal" => ConnectorKind::VirusTotal,
            "abuseipdb" => ConnectorKind::AbuseIpDb,
            "urlscan" => ConnectorKind::UrlScan,
            "misp" => ConnectorKind::Misp,
            "http" => ConnectorKind::Http,
            _ => return None,
        };
        Some(ConnectorSpec {
            kind,
            base_url: c.base_url.clone(),
            http: c.http.clone(),
        })
    }

    /// Counts a call against a connector's per-minute budget on this node.
    fn take_rate(&self, name: &str, per_minute: u32) -> bool {
        let Ok(mut g) = self.intel.rates.lock() else {
            return true;
        };
        let now = Instant::now();
        let e = g.entry(name.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= std::time::Duration::from_secs(60) {
            *e = (now, 0);
        }
        if e.1 >= per_minute {
            return false;
        }
        e.1 += 1;
        true
    }

    async fn cached_result(
        &self,
        connector: &str,
        kind: &str,
        value: &str,
    ) -> AppResult<Option<(WorkflowRecord, IntelResult)>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_INTEL_RESULT.into(),
                principal: Some(format!("{kind}|{value}")),
                status: Some(connector.into()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        Ok(recs.into_iter().next().and_then(|r| {
            let v = serde_json::from_str::<IntelResult>(&r.data).ok()?;
            Some((r, v))
        }))
    }

    /// The cached results for an observable, one per connector (the UI's verdicts).
    pub async fn intel_results(&self, kind: &str, value: &str) -> AppResult<Vec<IntelResult>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_INTEL_RESULT.into(),
                principal: Some(format!("{kind}|{value}")),
                limit: 50,
                ..Default::default()
            })
            .await?;
        Ok(recs
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect())
    }

    /// Looks one observable up with one connector: cached (within its TTL) or fetched.
    async fn lookup_one(
        &self,
        c: &StoredConnector,
        kind: &str,
        value: &str,
    ) -> AppResult<IntelResult> {
        let now = self.now();
        let cached = self.cached_result(&c.name, kind, value).await?;
        if let Some((_, r)) = &cached
            && r.at + Duration::seconds(c.cache_ttl_secs) > now
        {
            return Ok(r.clone());
        }
        let Some(spec) = Self::spec(c) else {
            return Err(AppError::Conflict {
                code: "not_intel",
                message: format!("{} is not an intel connector", c.name),
            });
        };
        let Some(http) = self.http.clone() else {
            return Err(AppError::Upstream("outbound HTTP is not configured".into()));
        };
        if !self.take_rate(&c.name, c.rate_per_minute) {
            return Err(AppError::Upstream(format!(
                "{}: rate limit of {} per minute reached",
                c.name, c.rate_per_minute
            )));
        }
        let key = match &c.secret {
            Some(s) => Some(self.unseal(s)?),
            None => None,
        };
        let req = connectors::build_request(&spec, key.as_deref(), kind, value)
            .map_err(|e| invalid("connector", format!("{}: {e}", c.name)))?;
        let started = Instant::now();
        let resp = http
            .send(OutboundRequest {
                method: req.method,
                url: req.url,
                headers: req.headers,
                body: req.body.map(String::into_bytes),
                allow_private: c.allow_private,
                timeout: std::time::Duration::from_secs(20),
                max_bytes: 2 * 1024 * 1024,
            })
            .await
            .map_err(|e| {
                AppError::Upstream(format!("{}: {}", c.name, redact(&e, key.as_deref())))
            })?;
        metrics::histogram!("firebreak_intel_lookup_seconds", "connector" => c.kind.clone())
            .record(started.elapsed().as_secs_f64());
        let mapped: LookupResult =
            connectors::map_response(&spec, kind, value, resp.status, &resp.body).map_err(|e| {
                AppError::Upstream(format!("{}: {}", c.name, redact(&e, key.as_deref())))
            })?;
        let result = IntelResult {
            connector: c.name.clone(),
            kind: kind.into(),
            value: value.into(),
            verdict: mapped.verdict,
            score: mapped.score,
            summary: mapped.summary,
            link: mapped.link,
            details: mapped.details,
            at: now,
        };
        let data = serde_json::to_string(&result).map_err(|e| AppError::Unexpected(e.into()))?;
        let op = match cached {
            Some((rec, _)) => Op::UpdateRecord {
                record: WorkflowRecord {
                    data,
                    updated_at: now,
                    ..rec.clone()
                },
                expected_version: rec.version,
            },
            None => Op::InsertRecord(WorkflowRecord {
                id: Uuid::now_v7(),
                kind: K_INTEL_RESULT.into(),
                ticket_id: None,
                parent_id: None,
                status: c.name.clone(),
                principal: Some(format!("{kind}|{value}")),
                data,
                version: 1,
                created_at: now,
                updated_at: now,
            }),
        };
        // a concurrent lookup of the same thing may have written first: either result is fine
        match self.store_commit(ChangeSet::new().op(op)).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(result)
    }

    /// An intel lookup step: the run's observables (or one value) against the local indicator
    /// store and the connectors; the worst verdict wins.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn lookup_for_run(
        &self,
        _ctx: &Map<String, Value>,
        event_id: Option<Uuid>,
        ticket_id: Option<TicketId>,
        names: &[String],
        kinds: &[String],
        value: Option<&str>,
        kind: Option<&str>,
    ) -> AppResult<Value> {
        let mut observables: Vec<(String, String)> = Vec::new();
        if let Some(v) = value {
            let hint = kind.and_then(|k| {
                serde_json::from_value::<firebreak_intake::ObservableKind>(json!(k)).ok()
            });
            match firebreak_intake::observables::classify(hint, v) {
                Some(o) => observables.push((o.kind.as_str().to_string(), o.value)),
                None => {
                    return Err(invalid(
                        "value",
                        format!("{v:?} is not a recognizable observable"),
                    ));
                }
            }
        } else {
            if let Some(eid) = event_id
                && let Ok(e) = self.store.get_event(eid).await
            {
                for o in &e.observables {
                    observables.push((o.kind.clone(), o.value.clone()));
                }
            }
            if let Some(t) = ticket_id {
                for o in self
                    .store
                    .list_observables(&ObservableFilter {
                        ticket_id: Some(t),
                        limit: 200,
                        ..Default::default()
                    })
                    .await?
                {
                    observables.push((o.kind, o.value));
                }
            }
        }
        observables.sort();
        observables.dedup();
        if !kinds.is_empty() {
            observables.retain(|(k, _)| kinds.iter().any(|x| x == k));
        }
        let truncated = observables.len() > MAX_LOOKUPS;
        observables.truncate(MAX_LOOKUPS);
        let mut connectors_used = Vec::new();
        for r in self.connector_records().await? {
            let Ok(c) = serde_json::from_str::<StoredConnector>(&r.data) else {
                continue;
            };
            if !c.enabled || !is_intel_kind(&c.kind) {
                continue;
            }
            if !names.is_empty() && !names.contains(&c.name) {
                continue;
            }
            connectors_used.push(c);
        }
        for n in names {
            if n != "local" && !connectors_used.iter().any(|c| c.name == *n) {
                return Err(invalid(
                    "connectors",
                    format!("no enabled intel connector named {n:?}"),
                ));
            }
        }
        let use_local = names.is_empty() || names.iter().any(|n| n == "local");
        let mut results = Vec::new();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut worst = Verdict::Unknown;
        let mut errors = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        let mut timed_out = false;
        for (k, v) in &observables {
            if Instant::now() > deadline {
                timed_out = true;
                errors.push("lookups stopped after 120 s; the rest were not looked up".to_string());
                break;
            }
            if use_local {
                for ind in self.store.find_indicators(k, v).await? {
                    if ind.valid_until.is_some_and(|t| t <= self.now()) {
                        continue;
                    }
                    let verdict = if ind.confidence >= 75 {
                        Verdict::Malicious
                    } else {
                        Verdict::Suspicious
                    };
                    if verdict_rank(verdict) > verdict_rank(worst) {
                        worst = verdict;
                    }
                    *counts.entry(verdict_str(verdict)).or_default() += 1;
                    results.push(json!({"connector": "local", "source": ind.source, "kind": k, "value": v, "verdict": verdict_str(verdict), "score": ind.confidence, "summary": format!("listed by {} (confidence {})", ind.source, ind.confidence), "link": null}));
                }
            }
            for c in &connectors_used {
                let Some(spec) = Self::spec(c) else { continue };
                if !connectors::supports(&spec, k) {
                    continue;
                }
                match self.lookup_one(c, k, v).await {
                    Ok(r) => {
                        if verdict_rank(r.verdict) > verdict_rank(worst) {
                            worst = r.verdict;
                        }
                        *counts.entry(verdict_str(r.verdict)).or_default() += 1;
                        results.push(json!({"connector": c.name, "kind": k, "value": v, "verdict": verdict_str(r.verdict), "score": r.score, "summary": r.summary, "link": r.link}));
                    }
                    Err(e) => errors.push(format!("{} {k} {v}: {e}", c.name)),
                }
            }
        }
        // every lookup failed: worth a retry (rate limits, outages); some failed: recorded
        if results.is_empty() && !errors.is_empty() {
            return Err(AppError::Upstream(errors.join("; ")));
        }
        let summary = if observables.is_empty() {
            "no observables to look up".to_string()
        } else {
            format!(
                "{} observable(s): {} malicious, {} suspicious, {} clean, {} unknown",
                observables.len(),
                counts.get("malicious").copied().unwrap_or(0),
                counts.get("suspicious").copied().unwrap_or(0),
                counts.get("clean").copied().unwrap_or(0),
                counts.get("unknown").copied().unwrap_or(0),
            )
        };
        // "clean" only when every observable was answered and every answer is clean: an error,
        // a cut list or an observable no connector took leaves it unknown
        let answered: std::collections::HashSet<(String, String)> = results
            .iter()
            .filter_map(|r| {
                Some((
                    r["kind"].as_str()?.to_string(),
                    r["value"].as_str()?.to_string(),
                ))
            })
            .collect();
        let all_clean = !results.is_empty()
            && errors.is_empty()
            && !truncated
            && observables.iter().all(|o| answered.contains(o))
            && results.iter().all(|r| r["verdict"] == "clean");
        Ok(json!({
            "verdict": if all_clean { "clean" } else { verdict_str(worst) },
            "malicious": counts.get("malicious").copied().unwrap_or(0),
            "suspicious": counts.get("suspicious").copied().unwrap_or(0),
            "clean": counts.get("clean").copied().unwrap_or(0),
            "unknown": counts.get("unknown").copied().unwrap_or(0),
            "observables": observables.len(),
            "truncated": truncated || timed_out,
            "summary": summary,
            "results": results,
            "errors": errors,
        }))
    }

    /// A one-off lookup from the API or UI (responders and up): results are cached like a
    /// playbook's.
    pub async fn lookup_observable(
        &self,
        p: &Principal,
        kind: &str,
        value: &str,
        connectors: &[String],
    ) -> AppResult<Value> {
        if !p.can_write() || !(p.is_admin() || p.has_any(&[Role::Responder, Role::SeniorResponder]))
        {
            return Err(AppError::Forbidden("lookups are for responders".into()));
        }
        self.lookup_for_run(
            &Map::new(),
            None,
            None,
            connectors,
            &[],
            Some(value),
            Some(kind),
        )
        .await
    }

    /// Posts a message to a Slack, Teams or webhook connector.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn post_to_connector(
        &self,
        name: &str,
        channel: &str,
        message_id: &str,
        title: &str,
        text: &str,
        link: Option<&str>,
        ctx: &Map<String, Value>,
    ) -> Result<(), String> {
        let (_, c) = self
            .connector_record(name)
            .await
            .map_err(|e| format!("connector: {e}"))?;
        if !c.enabled {
            return Err("the connector is disabled".into());
        }
        if c.kind != channel {
            return Err(format!("is a {} connector, not {channel}", c.kind));
        }
        let Some(http) = self.http.clone() else {
            return Err("outbound HTTP is not configured".into());
        };
        let secret = match &c.secret {
            Some(s) => Some(self.unseal(s).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut facts = Vec::new();
        if let Some(t) = ctx.get("ticket") {
            for (label, key) in [
                ("Ticket", "number"),
                ("Severity", "severity"),
                ("Criticality", "criticality"),
                ("Status", "status"),
            ] {
                if let Some(v) = t.get(key).and_then(Value::as_str) {
                    facts.push((label.to_string(), v.to_string()));
                }
            }
        }
        let msg = outbound::Message {
            title: title.into(),
            text: text.into(),
            link: link.map(String::from),
            facts,
        };
        let (url, body, mut headers) = match channel {
            "slack" => (
                secret.clone().unwrap_or_default(),
                outbound::slack_payload(&msg).to_string(),
                vec![],
            ),
            "teams" => (
                secret.clone().unwrap_or_default(),
                outbound::teams_payload(&msg).to_string(),
                vec![],
            ),
            _ => {
                let body = json!({"type": "firebreak.notification", "title": title, "text": text, "link": link, "ticket": ctx.get("ticket").and_then(|t| t.get("number"))}).to_string();
                let ts = OffsetDateTime::now_utc().unix_timestamp();
                let key = secret
                    .as_deref()
                    .and_then(|s| s.strip_prefix("whsec_"))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .ok_or("the connector has no signing secret")?;
                let sig = standard_webhook_signature(&key, message_id, ts, &body);
                (
                    c.base_url.clone().unwrap_or_default(),
                    body,
                    vec![
                        ("webhook-id".to_string(), message_id.to_string()),
                        ("webhook-timestamp".to_string(), ts.to_string()),
                        ("webhook-signature".to_string(), sig),
                    ],
                )
            }
        };
        headers.push(("content-type".into(), "application/json".into()));
        let resp = http
            .send(OutboundRequest {
                method: "POST".into(),
                url,
                headers,
                body: Some(body.into_bytes()),
                allow_private: c.allow_private,
                timeout: std::time::Duration::from_secs(20),
                max_bytes: 64 * 1024,
            })
            .await
            .map_err(|e| redact(&e, secret.as_deref()))?;
        if (200..300).contains(&resp.status) {
            Ok(())
        } else {
            Err(format!("answered HTTP {}", resp.status))
        }
    }

    // ----- indicators ------------------------------------------------------------------

    fn may_manage_indicators(p: &Principal) -> bool {
        p.can_write() && (p.is_admin() || p.has_any(&[Role::SeniorResponder]))
    }

    /// Imports a feed document (senior responders and admins); bad items are reported by
    /// position and the rest go in.
    pub async fn import_indicators(
        &self,
        p: &Principal,
        format: &str,
        bytes: &[u8],
        source: Option<&str>,
        replace: bool,
    ) -> AppResult<ImportReport> {
        if !Self::may_manage_indicators(p) {
            return Err(AppError::Forbidden(
                "importing indicators is for senior responders and admins".into(),
            ));
        }
        let fmt: FeedFormat = format
            .parse()
            .map_err(|_| invalid("format", "expected one of: stix, misp, csv"))?;
        let source = source
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("manual");
        if source.chars().count() > 200 {
            return Err(invalid("source", "at most 200 characters"));
        }
        let r = self
            .import_parsed(p.username(), fmt, bytes, source, replace)
            .await?;
        self.reload_indicators(true).await?;
        Ok(r)
    }

    /// An import by an operator on the database (`firebreak indicators import`), audited as
    /// the CLI.
    pub async fn import_indicators_as_operator(
        &self,
        format: &str,
        bytes: &[u8],
        source: &str,
        replace: bool,
    ) -> AppResult<ImportReport> {
        let fmt: FeedFormat = format
            .parse()
            .map_err(|_| invalid("format", "expected one of: stix, misp, csv"))?;
        self.import_parsed(crate::CLI_ACTOR, fmt, bytes, source, replace)
            .await
    }

    async fn import_parsed(
        &self,
        actor: &str,
        fmt: FeedFormat,
        bytes: &[u8],
        source: &str,
        replace: bool,
    ) -> AppResult<ImportReport> {
        let now = self.now();
        let mut report = feeds::parse_feed_with(fmt, bytes, &FeedOptions::new(source, now))
            .map_err(|e| invalid("file", e))?;
        if replace {
            // a replacing import owns one source: what the document calls its items does not
            // let it delete anyone else's
            for i in &mut report.indicators {
                i.source = source.to_string();
            }
            self.commit(
                ChangeSet::new()
                    .op(Op::DeleteIndicators {
                        source: source.to_string(),
                    })
                    .audit(
                        AuditDraft::new(actor, "indicators.replaced", "indicators", source)
                            .details(json!({"source": source, "format": fmt.as_str()})),
                    ),
            )
            .await?;
        }
        let imported = report.indicators.len();
        for chunk in report.indicators.chunks(IMPORT_BATCH) {
            let records = chunk.iter().map(|i| indicator_record(i, now)).collect();
            self.store_commit(ChangeSet::new().op(Op::UpsertIndicators(records)))
                .await?;
        }
        let entry = AuditDraft::new(actor, "indicators.imported", "indicators", source).details(json!({
            "format": fmt.as_str(), "source": source, "imported": imported, "skipped": report.skipped,
            "errors": report.errors.len(), "replace": replace,
        }));
        self.commit(ChangeSet::new().audit(entry)).await?;
        Ok(ImportReport {
            source: source.into(),
            format: fmt.as_str().into(),
            imported,
            skipped: report.skipped,
            errors: report.errors,
        })
    }

    pub async fn list_indicators(
        &self,
        p: &Principal,
        filter: &IndicatorFilter,
    ) -> AppResult<Vec<IndicatorView>> {
        if !Self::may_read_intel(p) {
            return Err(AppError::Forbidden(
                "indicators are for the security team and admins".into(),
            ));
        }
        Ok(self
            .store
            .list_indicators(filter)
            .await?
            .into_iter()
            .map(IndicatorView::from)
            .collect())
    }

    pub async fn delete_indicator_source(&self, p: &Principal, source: &str) -> AppResult<()> {
        if !Self::may_manage_indicators(p) {
            return Err(AppError::Forbidden(
                "managing indicators is for senior responders and admins".into(),
            ));
        }
        self.commit(
            ChangeSet::new()
                .op(Op::DeleteIndicators {
                    source: source.into(),
                })
                .audit(
                    AuditDraft::new(p.username(), "indicators.deleted", "indicators", source)
                        .details(json!({"source": source})),
                ),
        )
        .await?;
        self.reload_indicators(true).await?;
        Ok(())
    }

    /// Every valid indicator, for export (text blocklist or STIX 2.1 bundle).
    pub async fn export_indicators(
        &self,
        p: &Principal,
        format: &str,
        kinds: &[String],
    ) -> AppResult<(String, &'static str)> {
        if !Self::may_read_intel(p) {
            return Err(AppError::Forbidden(
                "indicators are for the security team and admins".into(),
            ));
        }
        if !matches!(format, "text" | "stix") {
            return Err(invalid("format", "expected text or stix"));
        }
        let now = self.now();
        let mut all: Vec<Indicator> = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_indicators(&IndicatorFilter {
                    valid_at: Some(now),
                    after: after.clone(),
                    limit: 5000,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.kind.clone(), last.value.clone(), last.source.clone()));
            let done = page.len() < 5000;
            for r in page {
                if kinds.is_empty() || kinds.contains(&r.kind) {
                    all.push(Indicator {
                        kind: r.kind,
                        value: r.value,
                        confidence: r.confidence,
                        source: r.source,
                        description: r.description,
                        valid_until: r.valid_until,
                    });
                }
            }
            if done || all.len() > 2_000_000 {
                break;
            }
        }
        Ok(match format {
            "text" => {
                let k: Vec<&str> = kinds.iter().map(String::as_str).collect();
                (outbound::export_text(&all, &k), "text/plain; charset=utf-8")
            }
            _ => (
                outbound::export_stix(&all, "Firebreak", now).to_string(),
                "application/stix+json;version=2.1",
            ),
        })
    }

    /// Reloads the in-memory matcher when the store's indicators changed (`force`: now;
    /// otherwise at most every 15 s). One reload at a time.
    pub async fn reload_indicators(&self, force: bool) -> AppResult<()> {
        if !force {
            let due = self
                .intel
                .checked
                .lock()
                .map(|g| g.is_none_or(|t| t.elapsed() >= MATCHER_CHECK))
                .unwrap_or(true);
            if !due {
                return Ok(());
            }
        }
        let _guard = self.intel.reloading.lock().await;
        if let Ok(mut g) = self.intel.checked.lock() {
            *g = Some(Instant::now());
        }
        let generation = self.store.indicator_generation().await?;
        let current = self
            .intel
            .matcher
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, gen_)| *gen_));
        if current == Some(generation) {
            return Ok(());
        }
        let now = self.now();
        let mut b = IndicatorSet::builder();
        let mut after = 0i64;
        loop {
            let (page, last) = self.store.indicator_keys(now, after, 50_000).await?;
            if page.is_empty() {
                break;
            }
            for (k, v) in &page {
                b.push(k, v);
            }
            after = last;
        }
        let set = Arc::new(b.build());
        metrics::gauge!("firebreak_indicators_loaded").set(set.len() as f64);
        if let Ok(mut g) = self.intel.matcher.write() {
            *g = Some((set, generation));
        }
        Ok(())
    }

    /// The matcher as loaded (none until the first load).
    pub(crate) fn indicator_set(&self) -> Option<Arc<IndicatorSet>> {
        self.intel
            .matcher
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(s, _)| s.clone()))
    }

    /// Fetches the feeds that are due and imports them (replacing their source's indicators).
    pub async fn refresh_feeds(&self) -> AppResult<usize> {
        let now = self.now();
        let mut done = 0;
        for r in self.connector_records().await? {
            let Ok(c) = serde_json::from_str::<StoredConnector>(&r.data) else {
                continue;
            };
            if c.kind != "feed" || !c.enabled {
                continue;
            }
            let every = Duration::minutes(i64::from(c.refresh_minutes.unwrap_or(60)));
            if c.last_fetch.is_some_and(|t| t + every > now) {
                continue;
            }
            // claim the fetch: only the node whose update wins fetches
            let mut claimed = c.clone();
            claimed.last_fetch = Some(now);
            let data =
                serde_json::to_string(&claimed).map_err(|e| AppError::Unexpected(e.into()))?;
            match self
                .store_commit(ChangeSet::new().op(Op::UpdateRecord {
                    record: WorkflowRecord {
                        data,
                        updated_at: now,
                        ..r.clone()
                    },
                    expected_version: r.version,
                }))
                .await
            {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let result = self.fetch_feed(&claimed).await;
            let note = match &result {
                Ok(rep) => format!(
                    "imported {} ({} skipped, {} errors)",
                    rep.imported,
                    rep.skipped,
                    rep.errors.len()
                ),
                Err(e) => format!("failed: {e}"),
            };
            if let Err(e) = &result {
                tracing::warn!(feed = %c.name, error = %e, "indicator feed fetch failed");
            }
            if let Ok((rec, mut cur)) = self.connector_record(&c.name).await {
                cur.last_result = Some(note);
                if let Ok(data) = serde_json::to_string(&cur) {
                    let _ = self
                        .store_commit(ChangeSet::new().op(Op::UpdateRecord {
                            record: WorkflowRecord {
                                data,
                                ..rec.clone()
                            },
                            expected_version: rec.version,
                        }))
                        .await;
                }
            }
            done += 1;
        }
        Ok(done)
    }

    async fn fetch_feed(&self, c: &StoredConnector) -> AppResult<ImportReport> {
        let Some(http) = self.http.clone() else {
            return Err(AppError::Upstream("outbound HTTP is not configured".into()));
        };
        let secret = match &c.secret {
            Some(s) => Some(self.unseal(s)?),
            None => None,
        };
        let mut headers = vec![(
            "accept".to_string(),
            "application/json, text/csv, */*".to_string(),
        )];
        if let Some(s) = &secret {
            headers.push(("authorization".into(), s.clone()));
        }
        let resp = http
            .send(OutboundRequest {
                method: "GET".into(),
                url: c.base_url.clone().unwrap_or_default(),
                headers,
                body: None,
                allow_private: c.allow_private,
                timeout: std::time::Duration::from_secs(120),
                max_bytes: 512 * 1024 * 1024,
            })
            .await
            .map_err(|e| AppError::Upstream(redact(&e, secret.as_deref())))?;
        if !(200..300).contains(&resp.status) {
            return Err(AppError::Upstream(format!(
                "the feed answered HTTP {}",
                resp.status
            )));
        }
        let fmt: FeedFormat = c
            .feed_format
            .as_deref()
            .unwrap_or("csv")
            .parse()
            .map_err(|_| invalid("feed_format", "unknown"))?;
        let source = c.feed_source.clone().unwrap_or_else(|| c.name.clone());
        let r = self
            .import_parsed(&format!("feed:{}", c.name), fmt, &resp.body, &source, true)
            .await?;
        self.reload_indicators(true).await?;
        Ok(r)
    }
}

fn indicator_record(i: &Indicator, now: OffsetDateTime) -> IndicatorRecord {
    IndicatorRecord {
        id: Uuid::now_v7(),
        kind: i.kind.clone(),
        value: i.value.clone(),
        confidence: i.confidence,
        source: i.source.clone(),
        description: i.description.clone(),
        valid_until: i.valid_until,
        created_at: now,
        updated_at: now,
    }
}

/// Never lets a secret into an error message or a log line.
fn redact(msg: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => msg.replace(s, "[redacted]"),
        _ => msg.to_string(),
    }
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (Standard Webhooks).
pub fn standard_webhook_signature(key: &[u8], id: &str, ts: i64, body: &str) -> String {
    use hmac::Mac;
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}
