//! Intel lookups without IO: [`build_request`] says which HTTP request to send for an
//! observable, the caller sends it, and [`map_response`] turns the answer into a
//! [`LookupResult`].
//!
//! | connector | kinds | request |
//! |---|---|---|
//! | VirusTotal v3 | md5, sha1, sha256, url, domain, ip | `GET /files/{hash}`, `/urls/{base64url(url)}`, `/domains/{d}`, `/ip_addresses/{ip}`; `x-apikey` |
//! | AbuseIPDB v2 | ip | `GET /check?ipAddress=..&maxAgeInDays=90`; `Key` |
//! | urlscan.io | url, domain, ip | `GET /search/?q=page.url:"..."` (`page.domain:`, `page.ip:`); `API-Key` when given |
//! | MISP | all | `POST /attributes/restSearch` `{"returnFormat":"json","value":..,"limit":50}`; `Authorization` |
//! | HTTP | all | from an [`HttpMapping`] |
//!
//! Error messages never contain the API key: they are built from the connector's name, the
//! HTTP status and, for VirusTotal, its error code, never from the answer's text.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// VirusTotal: at least this many engines flagging it malicious make it [`Verdict::Malicious`].
pub const VT_MALICIOUS_ENGINES: u64 = 3;
/// With no detection at all, this many engines that scanned a file and found nothing make it
/// [`Verdict::Clean`] (files rarely get "harmless" votes; URLs and domains do).
pub const VT_CLEAN_MIN_ENGINES: u64 = 10;
/// VirusTotal: at least this many engines flagging it malicious or suspicious (and fewer than
/// [`VT_MALICIOUS_ENGINES`] malicious) make it [`Verdict::Suspicious`].
pub const VT_SUSPICIOUS_ENGINES: u64 = 1;
/// AbuseIPDB: an abuse confidence score at least this is [`Verdict::Malicious`].
pub const ABUSEIPDB_MALICIOUS_SCORE: f64 = 75.0;
/// AbuseIPDB: an abuse confidence score at least this is [`Verdict::Suspicious`].
pub const ABUSEIPDB_SUSPICIOUS_SCORE: f64 = 25.0;
/// AbuseIPDB: reports of this many days back are counted (`maxAgeInDays`).
pub const ABUSEIPDB_MAX_AGE_DAYS: u32 = 90;
/// urlscan.io: a scan verdict score (-100 to 100) at least this is [`Verdict::Suspicious`]
/// (a scan flagged `malicious` is [`Verdict::Malicious`]).
pub const URLSCAN_SUSPICIOUS_SCORE: f64 = 1.0;
/// MISP: attributes asked for at most.
pub const MISP_LIMIT: u32 = 50;

/// The intel services a connector can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    VirusTotal,
    AbuseIpDb,
    UrlScan,
    Misp,
    Http,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::VirusTotal => "virustotal",
            ConnectorKind::AbuseIpDb => "abuseipdb",
            ConnectorKind::UrlScan => "urlscan",
            ConnectorKind::Misp => "misp",
            ConnectorKind::Http => "http",
        }
    }

    /// The API root used when the spec gives none (MISP and HTTP have none).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ConnectorKind::VirusTotal => Some("https://www.virustotal.com/api/v3"),
            ConnectorKind::AbuseIpDb => Some("https://api.abuseipdb.com/api/v2"),
            ConnectorKind::UrlScan => Some("https://urlscan.io/api/v1"),
            ConnectorKind::Misp | ConnectorKind::Http => None,
        }
    }

    /// The service's name for people.
    pub fn display_name(self) -> &'static str {
        match self {
            ConnectorKind::VirusTotal => "VirusTotal",
            ConnectorKind::AbuseIpDb => "AbuseIPDB",
            ConnectorKind::UrlScan => "urlscan.io",
            ConnectorKind::Misp => "MISP",
            ConnectorKind::Http => "the intel service",
        }
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "virustotal" => ConnectorKind::VirusTotal,
            "abuseipdb" => ConnectorKind::AbuseIpDb,
            "urlscan" => ConnectorKind::UrlScan,
            "misp" => ConnectorKind::Misp,
            "http" => ConnectorKind::Http,
            _ => {
                return Err(format!(
                    "unknown connector {s:?} (expected virustotal, abuseipdb, urlscan, misp or http)"
                ));
            }
        })
    }
}

/// One configured connector. The API key is not part of it: it is a secret the caller keeps
/// and passes to [`build_request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    pub kind: ConnectorKind,
    /// The API root; defaults per kind ([`ConnectorKind::default_base_url`]). MISP requires
    /// it (`https://misp.example.org`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Required for [`ConnectorKind::Http`].
    #[serde(default)]
    pub http: Option<HttpMapping>,
}

impl ConnectorSpec {
    /// A spec with the default base URL and no mapping.
    pub fn new(kind: ConnectorKind) -> Self {
        Self {
            kind,
            base_url: None,
            http: None,
        }
    }
}

/// A generic HTTP intel service.
///
/// Templates use `{value}`, `{value_raw}` and `{kind}`. In `url_template`, `{value}` is
/// percent-encoded (RFC 3986 unreserved characters kept); in `body_template` it is escaped for
/// the inside of a JSON string (write `"{value}"`). `{value_raw}` is inserted as is. Other
/// braces are left alone, so JSON bodies need no escaping.
///
/// The verdict is the value at `verdict_path` (a JSON pointer, RFC 6901) compared
/// case-insensitively with `malicious_values` and `suspicious_values` (booleans and numbers as
/// their JSON text: `true`, `1`), and the number at `score_path` compared with
/// `malicious_score` and `suspicious_score` (at least); the worse of the two counts. A value or
/// score that is present but matches nothing is [`Verdict::Clean`]; neither present (or a 404)
/// is [`Verdict::Unknown`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpMapping {
    /// `GET` or `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    pub url_template: String,
    /// The header that carries the API key, e.g. `X-Api-Key`.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// Sent as `application/json`.
    #[serde(default)]
    pub body_template: Option<String>,
    pub verdict_path: String,
    #[serde(default)]
    pub score_path: Option<String>,
    #[serde(default)]
    pub malicious_values: Vec<String>,
    #[serde(default)]
    pub suspicious_values: Vec<String>,
    #[serde(default)]
    pub malicious_score: Option<f64>,
    #[serde(default)]
    pub suspicious_score: Option<f64>,
}

fn default_method() -> String {
    "GET".to_string()
}

/// Whether the connector can look up observables of `kind` (an observable kind name).
pub fn supports(spec: &ConnectorSpec, kind: &str) -> bool {
    match spec.kind {
        ConnectorKind::VirusTotal => {
            matches!(kind, "md5" | "sha1" | "sha256" | "url" | "domain" | "ip")
        }
        ConnectorKind::AbuseIpDb => kind == "ip",
        ConnectorKind::UrlScan => matches!(kind, "url" | "domain" | "ip"),
        ConnectorKind::Misp | ConnectorKind::Http => true,
    }
}

/// An HTTP request for the caller to send.
#[derive(Clone, PartialEq, Eq)]
pub struct LookupRequest {
    /// `GET` or `POST`.
    pub method: String,
    pub url: String,
    /// Including the one that carries the API key.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl fmt::Debug for LookupRequest {
    /// Header values other than `Accept` and `Content-Type` are redacted: one of them is the
    /// API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let shown =
                    n.eq_ignore_ascii_case("accept") || n.eq_ignore_ascii_case("content-type");
                (n.as_str(), if shown { v.as_str() } else { "[redacted]" })
            })
            .collect();
        f.debug_struct("LookupRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// What a source thinks of an observable, from worst to least known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Malicious,
    Suspicious,
    Clean,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Malicious => "malicious",
            Verdict::Suspicious => "suspicious",
            Verdict::Clean => "clean",
            Verdict::Unknown => "unknown",
        }
    }

    /// Higher is worse: malicious 3, suspicious 2, clean 1, unknown 0.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Malicious => 3,
            Verdict::Suspicious => 2,
            Verdict::Clean => 1,
            Verdict::Unknown => 0,
        }
    }

    /// The worse of two verdicts (a known clean beats unknown).
    pub fn worst(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// One source's answer about one observable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResult {
    pub verdict: Verdict,
    /// The source's own number: VirusTotal, engines flagging it malicious; AbuseIPDB, the
    /// abuse confidence score (0-100); urlscan.io, the highest scan verdict score (-100 to 100);
    /// MISP, none; HTTP, the value at `score_path`.
    pub score: Option<f64>,
    /// One line for people, e.g. "42/70 engines flag it malicious".
    pub summary: String,
    /// The source's page about it.
    pub link: Option<String>,
    /// A small extract of the answer (never all of it).
    pub details: Value,
}

/// The request that looks up (`kind`, `value`) with this connector. `value` is canonical (as
/// an observable's). Refused: a kind the connector does not support, a missing API key where
/// one is needed, a missing or non-HTTP base URL, a bad HTTP mapping.
pub fn build_request(
    spec: &ConnectorSpec,
    api_key: Option<&str>,
    kind: &str,
    value: &str,
) -> Result<LookupRequest, String> {
    let name = spec.kind.as_str();
    if !supports(spec, kind) {
        return Err(format!("{name} cannot look up a {kind}"));
    }
    if value.trim().is_empty() {
        return Err("nothing to look up: the value is empty".to_string());
    }
    let key = match api_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) if k.chars().any(char::is_control) => {
            return Err(format!("the {name} API key contains a control character"));
        }
        k => k,
    };
    let needs_key = || key.ok_or_else(|| format!("{name} needs an API key"));
    let accept = ("Accept".to_string(), "application/json".to_string());
    match spec.kind {
        ConnectorKind::VirusTotal => {
            let base = base_url(spec)?;
            let path = match kind {
                "md5" | "sha1" | "sha256" => format!("files/{}", encode(value)),
                "url" => format!("urls/{}", URL_SAFE_NO_PAD.encode(value)),
                "domain" => format!("domains/{}", encode(value)),
                _ => format!("ip_addresses/{}", encode(value)),
            };
            Ok(LookupRequest {
                method: "GET".to_string(),
                url: format!("{base}/{path}"),
                headers: vec![("x-apikey".to_string(), needs_key()?.to_string()), accept],
                body: None,
            })
        }
        ConnectorKind::AbuseIpDb => {
            let base = base_url(spec)?;
            Ok(LookupRequest {
                method: "GET".to_string(),
                url: format!(
                    "{base}/check?ipAddress={}&maxAgeInDays={ABUSEIPDB_MAX_AGE_DAYS}",
                    encode(value)
                ),
                headers: vec![("Key".to_string(), needs_key()?.to_string()), accept],
                body: None,
            })
        }
        ConnectorKind::UrlScan => {
            let base = base_url(spec)?;
            let mut headers = Vec::new();
            if let Some(k) = key {
                headers.push(("API-Key".to_string(), k.to_string()));
            }
            headers.push(accept);
            Ok(LookupRequest {
                method: "GET".to_string(),
                url: format!("{base}/search/?q={}", encode(&urlscan_query(kind, value))),
                headers,
                body: None,
            })
        }
        ConnectorKind::Misp => {
            let base = base_url(spec)?;
            let body = json!({"returnFormat": "json", "value": value, "limit": MISP_LIMIT});
            Ok(LookupRequest {
                method: "POST".to_string(),
                url: format!("{base}/attributes/restSearch"),
                headers: vec![
                    ("Authorization".to_string(), needs_key()?.to_string()),
                    accept,
                    ("Content-Type".to_string(), "application/json".to_string()),
                ],
                body: Some(body.to_string()),
            })
        }
        ConnectorKind::Http => {
            let m = spec
                .http
                .as_ref()
                .ok_or("an http connector needs an http mapping")?;
            let method = m.method.trim().to_ascii_uppercase();
            if method != "GET" && method != "POST" {
                return Err(format!(
                    "http method must be GET or POST, not {:?}",
                    m.method
                ));
            }
            let url = expand(&m.url_template, kind, value, &encode(value));
            check_http_url(&url, "url_template")?;
            let mut headers = Vec::new();
            if let Some(h) = m
                .auth_header
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
            {
                if !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                {
                    return Err(format!("auth_header {h:?} is not a header name"));
                }
                headers.push((h.to_string(), needs_key()?.to_string()));
            }
            headers.push(accept);
            let body = m.body_template.as_deref().map(|t| {
                let quoted = serde_json::to_string(value).unwrap_or_default();
                let inner = quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or(&quoted);
                expand(t, kind, value, inner)
            });
            if body.is_some() {
                headers.push(("Content-Type".to_string(), "application/json".to_string()));
            }
            Ok(LookupRequest {
                method,
                url,
                headers,
                body,
            })
        }
    }
}

/// The base URL without a trailing slash.
fn base_url(spec: &ConnectorSpec) -> Result<String, String> {
    let base = spec
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .or_else(|| spec.kind.default_base_url())
        .ok_or_else(|| format!("{} needs a base_url", spec.kind))?;
    check_http_url(base, "base_url")?;
    Ok(base.trim_end_matches('/').to_string())
}

fn check_http_url(url: &str, what: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("{what} must be an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("{what} is not a valid URL"));
    }
    Ok(())
}

/// The urlscan.io search query (Elasticsearch query string) for an observable.
fn urlscan_query(kind: &str, value: &str) -> String {
    let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    match kind {
        "url" => format!("page.url:{}", quoted(value)),
        "ip" if value.contains(':') => format!("page.ip:{}", quoted(value)),
        "ip" => format!("page.ip:{value}"),
        _ => format!("page.domain:{value}"),
    }
}

/// Percent-encodes all but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Replaces `{value}` (with `encoded`), `{value_raw}` and `{kind}` in one pass (a value that
/// contains a placeholder is not expanded again); other braces stay.
fn expand(template: &str, kind: &str, raw: &str, encoded: &str) -> String {
    let mut out = String::with_capacity(template.len() + raw.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (with, len) = if tail.starts_with("{value}") {
            (encoded, "{value}".len())
        } else if tail.starts_with("{value_raw}") {
            (raw, "{value_raw}".len())
        } else if tail.starts_with("{kind}") {
            (kind, "{kind}".len())
        } else {
            ("{", 1)
        };
        out.push_str(with);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Maps a connector's answer to a [`LookupResult`]. `Err` for a non-2xx status (except a 404,
/// which VirusTotal and HTTP mappings answer for "never seen": [`Verdict::Unknown`]) or an
/// answer that is not the JSON expected; the message never contains the API key or the body.
pub fn map_response(
    spec: &ConnectorSpec,
    kind: &str,
    value: &str,
    status: u16,
    body: &[u8],
) -> Result<LookupResult, String> {
    let name = spec.kind.display_name();
    let not_found_ok = matches!(spec.kind, ConnectorKind::VirusTotal | ConnectorKind::Http);
    if status == 404 && not_found_ok {
        return Ok(LookupResult {
            verdict: Verdict::Unknown,
            score: None,
            summary: format!("not found on {name}"),
            link: None,
            details: json!({}),
        });
    }
    if !(200..300).contains(&status) {
        let mut message = format!("{name} answered HTTP {status}: {}", status_reason(status));
        if spec.kind == ConnectorKind::VirusTotal
            && let Some(code) = serde_json::from_slice::<Value>(body)
                .ok()
                .as_ref()
                .and_then(|v| v.pointer("/error/code"))
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            message.push_str(&format!(" ({code})"));
        }
        return Err(message);
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{name} answered with a body that is not JSON ({e})"))?;
    match spec.kind {
        ConnectorKind::VirusTotal => Ok(virustotal(kind, value, &doc)),
        ConnectorKind::AbuseIpDb => abuseipdb(value, &doc),
        ConnectorKind::UrlScan => urlscan(&doc),
        ConnectorKind::Misp => misp(spec, &doc),
        ConnectorKind::Http => http(spec, &doc),
    }
}

fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 | 403 => "authentication failed (check the API key and its permissions)",
        404 => "not found",
        405 => "method not allowed (check the base URL)",
        408 | 504 => "timed out",
        413 => "request too large",
        422 => "the value was refused",
        429 => "rate limited (quota exceeded)",
        500..=599 => "server error",
        300..=399 => "redirected (check the base URL)",
        _ => "unexpected status",
    }
}

/// Copies the listed fields of `from` that are present into a new object.
fn pick(from: Option<&Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(obj) = from.and_then(Value::as_object) {
        for f in fields {
            if let Some(v) = obj.get(*f).filter(|v| !v.is_null()) {
                out.insert((*f).to_string(), v.clone());
            }
        }
    }
    out
}

fn virustotal(kind: &str, value: &str, doc: &Value) -> LookupResult {
    let attrs = doc.pointer("/data/attributes");
    let stats = attrs.and_then(|a| a.get("last_analysis_stats"));
    let count = |f: &str| {
        stats
            .and_then(|s| s.get(f))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (malicious, suspicious, harmless) =
        (count("malicious"), count("suspicious"), count("harmless"));
    // Engines that gave an answer, as VirusTotal's own pages count them (not timeouts,
    // failures or unsupported types).
    let engines = malicious + suspicious + harmless + count("undetected");
    let verdict = if malicious >= VT_MALICIOUS_ENGINES {
        Verdict::Malicious
    } else if malicious + suspicious >= VT_SUSPICIOUS_ENGINES {
        Verdict::Suspicious
    } else if harmless > 0 || count("undetected") >= VT_CLEAN_MIN_ENGINES {
        Verdict::Clean
    } else {
        Verdict::Unknown
    };
    let summary = if stats.is_none() {
        "no VirusTotal analysis yet".to_string()
    } else if suspicious > 0 {
        format!("{malicious}/{engines} engines flag it malicious, {suspicious} suspicious")
    } else {
        format!("{malicious}/{engines} engines flag it malicious")
    };
    let id = doc
        .pointer("/data/id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let gui = "https://www.virustotal.com/gui";
    let link = match kind {
        "md5" | "sha1" | "sha256" => Some(format!("{gui}/file/{}", id.as_deref().unwrap_or(value))),
        "url" => Some(format!(
            "{gui}/url/{}",
            id.unwrap_or_else(|| hex(&Sha256::digest(value.as_bytes())))
        )),
        "domain" => Some(format!("{gui}/domain/{}", encode(value))),
        "ip" => Some(format!("{gui}/ip-address/{}", encode(value))),
        _ => None,
    };
    let mut details = pick(
        attrs,
        &[
            "last_analysis_stats",
            "reputation",
            "last_analysis_date",
            "type_description",
            "meaningful_name",
            "size",
            "title",
            "last_final_url",
            "country",
            "as_owner",
            "asn",
            "registrar",
        ],
    );
    if let Some(label) = attrs
        .and_then(|a| a.pointer("/popular_threat_classification/suggested_threat_label"))
        .filter(|v| v.is_string())
    {
        details.insert("suggested_threat_label".to_string(), label.clone());
    }
    if let Some(tags) = attrs.and_then(|a| a.get("tags")).and_then(Value::as_array) {
        details.insert(
            "tags".to_string(),
            Value::Array(tags.iter().take(10).cloned().collect()),
        );
    }
    LookupResult {
        verdict,
        score: stats.map(|_| malicious as f64),
        summary,
        link,
        details: Value::Object(details),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn abuseipdb(value: &str, doc: &Value) -> Result<LookupResult, String> {
    let data = doc.get("data");
    let score = data
        .and_then(|d| d.get("abuseConfidenceScore"))
        .and_then(Value::as_f64)
        .ok_or("AbuseIPDB answered without data.abuseConfidenceScore")?;
    let verdict = if score >= ABUSEIPDB_MALICIOUS_SCORE {
        Verdict::Malicious
    } else if score >= ABUSEIPDB_SUSPICIOUS_SCORE {
        Verdict::Suspicious
    } else {
        Verdict::Clean
    };
    let reports = data
        .and_then(|d| d.get("totalReports"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let field = |f: &str| {
        data.and_then(|d| d.get(f))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let place: Vec<&str> = [field("countryCode"), field("isp")]
        .into_iter()
        .flatten()
        .collect();
    let mut summary = format!(
        "abuse confidence {score}% from {reports} report{}",
        if reports == 1 { "" } else { "s" }
    );
    if !place.is_empty() {
        summary.push_str(&format!(" ({})", place.join(", ")));
    }
    let details = pick(
        data,
        &[
            "abuseConfidenceScore",
            "totalReports",
            "numDistinctUsers",
            "countryCode",
            "isp",
            "usageType",
            "domain",
            "isTor",
            "isWhitelisted",
            "lastReportedAt",
        ],
    );
    Ok(LookupResult {
        verdict,
        score: Some(score),
        summary,
        link: Some(format!("https://www.abuseipdb.com/check/{}", encode(value))),
        details: Value::Object(details),
    })
}

fn urlscan(doc: &Value) -> Result<LookupResult, String> {
    let results = doc
        .get("results")
        .and_then(Value::as_array)
        .ok_or("urlscan.io answered without results")?;
    let total = doc
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(results.len() as u64);
    if results.is_empty() {
        return Ok(LookupResult {
            verdict: Verdict::Unknown,
            score: None,
            summary: "no urlscan.io scans".to_string(),
            link: None,
            details: json!({"total": total}),
        });
    }
    // `verdicts.overall.{malicious,score}`, or `verdicts.{malicious,score}`.
    let verdict_field = |r: &Value, f: &str| -> Option<Value> {
        r.pointer(&format!("/verdicts/overall/{f}"))
            .or_else(|| r.pointer(&format!("/verdicts/{f}")))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let mut malicious = 0usize;
    let mut best: Option<f64> = None;
    let mut with_verdicts = 0usize;
    let mut first_malicious = None;
    let mut scans = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let is_malicious = verdict_field(r, "malicious").and_then(|v| v.as_bool());
        let score = verdict_field(r, "score").and_then(|v| v.as_f64());
        if is_malicious.is_some() || score.is_some() {
            with_verdicts += 1;
        }
        if is_malicious == Some(true) {
            malicious += 1;
            first_malicious.get_or_insert(i);
        }
        if let Some(s) = score {
            best = Some(best.map_or(s, |b: f64| b.max(s)));
        }
        if scans.len() < 5 {
            scans.push(json!({
                "time": r.pointer("/task/time"),
                "url": r.pointer("/page/url").or_else(|| r.pointer("/task/url")),
                "malicious": is_malicious,
                "score": score,
                "uuid": r.get("_id").or_else(|| r.pointer("/task/uuid")),
            }));
        }
    }
    let verdict = if malicious > 0 {
        Verdict::Malicious
    } else if best.is_some_and(|s| s >= URLSCAN_SUSPICIOUS_SCORE) {
        Verdict::Suspicious
    } else if with_verdicts > 0 {
        Verdict::Clean
    } else {
        Verdict::Unknown
    };
    let mut summary = format!(
        "{total} urlscan.io scan{}",
        if total == 1 { "" } else { "s" }
    );
    if with_verdicts > 0 {
        summary.push_str(&format!(", {malicious} flagged malicious"));
    }
    if (results.len() as u64) < total {
        summary.push_str(&format!(" (latest {} checked)", results.len()));
    }
    let shown = &results[first_malicious.unwrap_or(0)];
    let link = shown
        .get("_id")
        .or_else(|| shown.pointer("/task/uuid"))
        .and_then(Value::as_str)
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .map(|id| format!("https://urlscan.io/result/{id}/"));
    Ok(LookupResult {
        verdict,
        score: best,
        summary,
        link,
        details: json!({"total": total, "scans": scans}),
    })
}

fn misp(spec: &ConnectorSpec, doc: &Value) -> Result<LookupResult, String> {
    let attributes = match doc.get("response") {
        Some(Value::Array(a)) if a.is_empty() => Vec::new(),
        Some(r) => match r.get("Attribute") {
            Some(Value::Array(a)) => a.iter().collect(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err("MISP answered with a response.Attribute that is not a list".into());
            }
        },
        None => return Err("MISP answered without a response".to_string()),
    };
    if attributes.is_empty() {
        return Ok(LookupResult {
            verdict: Verdict::Unknown,
            score: None,
            summary: "not found in MISP".to_string(),
            link: None,
            details: json!({"attributes": 0}),
        });
    }
    let to_ids = attributes
        .iter()
        .filter(|a| match a.get("to_ids") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "1" || s == "true",
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        })
        .count();
    // Events in the order first seen.
    let mut events: Vec<(String, String)> = Vec::new();
    for a in &attributes {
        let id = a
            .get("event_id")
            .or_else(|| a.pointer("/Event/id"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let info = a
            .pointer("/Event/info")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !events.iter().any(|(e, _)| *e == id) {
            events.push((id, info));
        }
    }
    let verdict = if to_ids > 0 {
        Verdict::Malicious
    } else {
        Verdict::Suspicious
    };
    let infos: Vec<String> = events
        .iter()
        .filter(|(_, info)| !info.is_empty())
        .take(3)
        .map(|(_, info)| format!("\"{info}\""))
        .collect();
    let mut summary = format!(
        "in {} MISP event{}",
        events.len(),
        if events.len() == 1 { "" } else { "s" }
    );
    if !infos.is_empty() {
        summary.push_str(&format!(": {}", infos.join(", ")));
        if events.len() > infos.len() {
            summary.push_str(&format!(" and {} more", events.len() - infos.len()));
        }
    }
    if to_ids == 0 {
        summary.push_str(" (none marked for detection)");
    }
    let link = base_url(spec).ok().and_then(|base| {
        events
            .first()
            .filter(|(id, _)| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .map(|(id, _)| format!("{base}/events/view/{id}"))
    });
    let categories: Vec<&str> = {
        let mut c: Vec<&str> = attributes
            .iter()
            .filter_map(|a| a.get("category").and_then(Value::as_str))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    Ok(LookupResult {
        verdict,
        score: None,
        summary,
        link,
        details: json!({
            "attributes": attributes.len(),
            "to_ids": to_ids,
            "categories": categories,
            "events": events.iter().take(10).map(|(id, info)| json!({"id": id, "info": info})).collect::<Vec<_>>(),
        }),
    })
}

fn http(spec: &ConnectorSpec, doc: &Value) -> Result<LookupResult, String> {
    let m = spec
        .http
        .as_ref()
        .ok_or("an http connector needs an http mapping")?;
    let pointer = |p: &str| -> Result<Option<&Value>, String> {
        if !(p.is_empty() || p.starts_with('/')) {
            return Err(format!(
                "{p:?} is not a JSON pointer (it must start with '/')"
            ));
        }
        Ok(doc.pointer(p).filter(|v| !v.is_null()))
    };
    let raw_verdict = pointer(&m.verdict_path)?;
    let text = raw_verdict.map(|v| match v {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    });
    let matches = |list: &[String]| {
        text.as_deref()
            .is_some_and(|t| list.iter().any(|v| v.trim().eq_ignore_ascii_case(t)))
    };
    let mut verdict = Verdict::Unknown;
    if text.is_some() {
        verdict = if matches(&m.malicious_values) {
            Verdict::Malicious
        } else if matches(&m.suspicious_values) {
            Verdict::Suspicious
        } else {
            Verdict::Clean
        };
    }
    let score = match m.score_path.as_deref() {
        Some(p) => pointer(p)?.and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }),
        None => None,
    };
    if let Some(s) = score
        && (m.malicious_score.is_some() || m.suspicious_score.is_some())
    {
        let by_score = if m.malicious_score.is_some_and(|t| s >= t) {
            Verdict::Malicious
        } else if m.suspicious_score.is_some_and(|t| s >= t) {
            Verdict::Suspicious
        } else {
            Verdict::Clean
        };
        verdict = verdict.worst(by_score);
    }
    let mut parts = Vec::new();
    if let Some(t) = &text {
        parts.push(format!("verdict {}", truncate(t, 80)));
    }
    if let Some(s) = score {
        parts.push(format!("score {s}"));
    }
    let summary = if parts.is_empty() {
        "no verdict in the answer".to_string()
    } else {
        parts.join(", ")
    };
    Ok(LookupResult {
        verdict,
        score,
        summary,
        link: None,
        details: json!({"verdict": raw_verdict.map(truncate_value), "score": score}),
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Strings cut to 200 characters; objects and arrays replaced by their type (details stay
/// small).
fn truncate_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(truncate(s, 200)),
        Value::Array(_) => Value::String("[array]".to_string()),
        Value::Object(_) => Value::String("[object]".to_string()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_serde_and_from_str() {
        for k in [
            ConnectorKind::VirusTotal,
            ConnectorKind::AbuseIpDb,
            ConnectorKind::UrlScan,
            ConnectorKind::Misp,
            ConnectorKind::Http,
        ] {
            let s = serde_json::to_value(k).unwrap();
            assert_eq!(s, Value::String(k.as_str().to_string()));
            assert_eq!(k.as_str().parse::<ConnectorKind>(), Ok(k));
        }
        assert_eq!(
            serde_json::to_value(Verdict::Malicious).unwrap(),
            json!("malicious")
        );
        assert!("shodan".parse::<ConnectorKind>().is_err());
    }

    #[test]
    fn encode_keeps_only_unreserved() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(
            encode("http://x/?a=1&b=2 é"),
            "http%3A%2F%2Fx%2F%3Fa%3D1%26b%3D2%20%C3%A9"
        );
        assert_eq!(encode("2001:db8::1"), "2001%3Adb8%3A%3A1");
    }

    #[test]
    fn templates_expand_once() {
        assert_eq!(
            expand(
                "https://x/{kind}/{value}?r={value_raw}&{other}",
                "url",
                "{kind}",
                "%7Bkind%7D"
            ),
            "https://x/url/%7Bkind%7D?r={kind}&{other}"
        );
        assert_eq!(
            expand("{\"q\":\"{value}\"}", "ip", "1", "1"),
            "{\"q\":\"1\"}"
        );
        assert_eq!(expand("{", "ip", "1", "1"), "{");
    }

    #[test]
    fn verdicts_order_by_severity() {
        assert_eq!(
            Verdict::Clean.worst(Verdict::Suspicious),
            Verdict::Suspicious
        );
        assert_eq!(Verdict::Malicious.worst(Verdict::Clean), Verdict::Malicious);
        assert_eq!(Verdict::Unknown.worst(Verdict::Clean), Verdict::Clean);
    }

    #[test]
    fn debug_of_a_request_hides_the_key() {
        let spec = ConnectorSpec::new(ConnectorKind::VirusTotal);
        let req = build_request(&spec, Some("s3cr3t-key"), "ip", "192.0.2.1").unwrap();
        let shown = format!("{req:?}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(shown.contains("application/json"));
    }
}
