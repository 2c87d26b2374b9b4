//! Intake adapters: each turns one payload, in the format a tool already sends, into
//! [`NormalizedEvent`]s. Pure functions, no IO: golden-file tested and fuzzed. The application
//! adds what needs the database (assets, suppression, dedup, classification).

#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod cef;
pub mod eml;
pub mod eve;
pub mod hec;
mod jsonutil;
pub mod leef;
pub mod observables;
pub mod syslog;
pub mod thehive;
pub mod wazuh;
pub mod webhook;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Severity on Firebreak's four-level scale (the ticket scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" | "info" | "informational" | "notice" | "debug" | "none" => Some(Level::Low),
            "medium" | "moderate" | "warning" | "warn" => Some(Level::Medium),
            "high" | "error" | "major" | "severe" => Some(Level::High),
            "critical" | "crit" | "emergency" | "emerg" | "alert" | "fatal" | "page" => {
                Some(Level::Critical)
            }
            _ => None,
        }
    }
}

/// Kinds of observables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservableKind {
    Ip,
    Domain,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
    Cve,
    Filename,
    Hostname,
    User,
    Other,
}

impl ObservableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservableKind::Ip => "ip",
            ObservableKind::Domain => "domain",
            ObservableKind::Url => "url",
            ObservableKind::Email => "email",
            ObservableKind::Md5 => "md5",
            ObservableKind::Sha1 => "sha1",
            ObservableKind::Sha256 => "sha256",
            ObservableKind::Cve => "cve",
            ObservableKind::Filename => "filename",
            ObservableKind::Hostname => "hostname",
            ObservableKind::User => "user",
            ObservableKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<ObservableKind> {
        Some(match s {
            "ip" => ObservableKind::Ip,
            "domain" => ObservableKind::Domain,
            "url" => ObservableKind::Url,
            "email" => ObservableKind::Email,
            "md5" => ObservableKind::Md5,
            "sha1" => ObservableKind::Sha1,
            "sha256" => ObservableKind::Sha256,
            "cve" => ObservableKind::Cve,
            "filename" => ObservableKind::Filename,
            "hostname" => ObservableKind::Hostname,
            "user" => ObservableKind::User,
            "other" => ObservableKind::Other,
            _ => return None,
        })
    }
}

/// One observable in canonical form (refanged; IPs, domains, hashes and CVE ids normalized to
/// lowercase/uppercase as fits, so equal things compare equal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Observable {
    pub kind: ObservableKind,
    pub value: String,
}

impl Observable {
    pub fn new(kind: ObservableKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// Who reported an event, when a person or organization did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reporter {
    /// `employee`, `vendor`, `customer`, `partner`, `device`, `sensor`.
    pub kind: String,
    pub name: Option<String>,
    pub contact: Option<String>,
}

/// What an adapter asks the intake to do with the event it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new report (or a repeat of one: dedup decides).
    #[default]
    Report,
    /// The source says the condition is over (Alertmanager `resolved`): close the matching
    /// event (same dedup key) instead of reporting a new one.
    Resolve,
}

/// One event as an adapter understood it. Everything the source said that has no field here
/// stays in `raw` (kept byte for byte) and, for structured sources, in `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// `sensor`, `device`, `employee`, `vendor`, `customer`, `partner`, `internal`.
    pub source_kind: String,
    /// The sending tool or source (`suricata`, `wazuh`, `alertmanager`, the TheHive `source`,
    /// the webhook source name, the syslog app name...).
    pub source_name: String,
    /// The source's own id for this event, when it has one (TheHive `sourceRef`, EVE
    /// `flow_id`, Alertmanager fingerprint...).
    pub source_ref: Option<String>,
    /// The rule or signature that fired (EVE `alert.signature_id`, Wazuh `rule.id`,
    /// Alertmanager `alertname`, CEF signature id...).
    pub rule_id: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub severity: Level,
    /// The severity exactly as the source expressed it (`"3"`, `"10"`, `"warning"`...).
    pub original_severity: Option<String>,
    /// When it happened, per the source (the intake's clock when the source says nothing).
    #[serde(with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    /// The host the event is about (agent name, hostname, `host` field).
    pub host: Option<String>,
    /// Observables the source gave as structured fields (IPs, hashes, users...). The intake
    /// adds the ones found in the text.
    pub observables: Vec<Observable>,
    pub tags: Vec<String>,
    /// A dedup key the source itself defines (Alertmanager `fingerprint`, TheHive's
    /// `type`+`source`+`sourceRef`); when `None` the intake computes a fingerprint.
    pub dedup_key: Option<String>,
    pub action: Action,
    /// When the source says the condition ended (Alertmanager's `endsAt` on a resolution).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    pub reporter: Option<Reporter>,
    /// Normalized extra fields, flat `snake_case` keys (`src_ip`, `dest_ip`, `proto`,
    /// `category`, `mitre_technique`...): what suppression rules and fingerprints refer to.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The original record, as received.
    pub raw: String,
    /// Where in `description` the intake starts looking for observables (a byte offset; 0:
    /// all of it). A parser that wrote the beginning itself from fields whose observables are
    /// all in `observables` (Suricata's flow, category and action lines) skips it; text it
    /// copied as sent (a URL, which may carry a callback address) is still looked through.
    #[serde(skip)]
    pub description_scan_from: usize,
}

impl NormalizedEvent {
    /// An event with the given source and title and everything else empty.
    pub fn new(source_kind: &str, source_name: &str, title: impl Into<String>) -> Self {
        Self {
            source_kind: source_kind.into(),
            source_name: source_name.into(),
            source_ref: None,
            rule_id: None,
            title: title.into(),
            description: None,
            severity: Level::Medium,
            original_severity: None,
            occurred_at: None,
            host: None,
            observables: Vec::new(),
            tags: Vec::new(),
            dedup_key: None,
            action: Action::Report,
            resolved_at: None,
            reporter: None,
            fields: serde_json::Map::new(),
            raw: String::new(),
            description_scan_from: 0,
        }
    }
}

/// Why a payload (or one record of it) was refused. `field` names what was wrong, as a path
/// into the payload where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    pub field: String,
    pub message: String,
}

impl ParseError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What parsing one record gives: events (zero when the record is of a kind that is skipped,
/// e.g. an EVE `flow` record), or why it is bad.
pub type ParseResult = Result<Vec<NormalizedEvent>, ParseError>;

/// Titles are one line and bounded; the full text stays in `description`/`raw`.
pub fn clean_title(s: &str) -> String {
    // already clean (the common case): one copy, no splitting
    if !s.is_empty()
        && s.len() <= 300
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && !s.chars().any(|c| c.is_whitespace() && c != ' ')
    {
        return s.to_string();
    }
    let one: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    if one.is_empty() {
        "(untitled event)".into()
    } else {
        one
    }
}
