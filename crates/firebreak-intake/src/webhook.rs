//! Generic JSON webhooks: a configured [`Mapping`] (JSONPath expressions, RFC 9535) says where
//! in the payload the title, severity, host... are. Sources without a mapping get
//! [`CompiledMapping::generic`], which looks in the usual places.
//!
//! Also [`verify_hmac_sha256`], for the signature headers webhook senders add
//! (`X-Hub-Signature-256: sha256=<hex>` and the like).

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_json_path::JsonPath;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::jsonutil::{
    level_from_number, observable_of_kind, push_observable, push_tag, time_from_value,
    value_non_empty,
};
use crate::{Level, NormalizedEvent, ObservableKind, ParseError, ParseResult, clean_title};

/// One JSONPath, or several tried in order (the first that finds a value wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathSpec {
    One(String),
    Many(Vec<String>),
}

impl PathSpec {
    fn paths(&self) -> Vec<&str> {
        match self {
            PathSpec::One(p) => vec![p.as_str()],
            PathSpec::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

impl From<&str> for PathSpec {
    fn from(p: &str) -> Self {
        PathSpec::One(p.to_string())
    }
}

/// Where an observable of a given kind is in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservableMapping {
    /// JSONPath; every value it selects (strings, or arrays of them) is one observable.
    pub path: String,
    /// `ip`, `domain`, `url`, `email`, `md5`, `sha1`, `sha256`, `cve`, `filename`,
    /// `hostname`, `user` or `other`.
    pub kind: String,
}

/// How to read a source's webhook payloads, as configured (TOML or JSON). Every path is a
/// JSONPath (`$.alert.rule.name`, `$['@timestamp']`), or a list of them tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Required: a record without a title is refused.
    pub title: PathSpec,
    #[serde(default)]
    pub description: Option<PathSpec>,
    #[serde(default)]
    pub severity: Option<PathSpec>,
    /// The source's severity values (compared without case) to `low`, `medium`, `high` or
    /// `critical`; values not listed are read as level names (`warning`, `error`...) or, for
    /// numbers, on the CVSS 0-10 ranges (a path naming `priority` counts down: 1 is critical).
    #[serde(default)]
    pub severity_map: BTreeMap<String, String>,
    #[serde(default)]
    pub host: Option<PathSpec>,
    #[serde(default)]
    pub rule_id: Option<PathSpec>,
    #[serde(default)]
    pub source_ref: Option<PathSpec>,
    /// RFC 3339 text, or epoch seconds/milliseconds.
    #[serde(default)]
    pub occurred_at: Option<PathSpec>,
    /// An array of strings, or a comma-separated string.
    #[serde(default)]
    pub tags: Option<PathSpec>,
    #[serde(default)]
    pub observables: Vec<ObservableMapping>,
    /// Selects the records of one body (`$.alerts[*]`; a path selecting one array counts as
    /// its elements). Without it the body is one record, or a JSON array of records.
    #[serde(default)]
    pub records: Option<String>,
    /// The values that together identify an event (its dedup key); without them the intake
    /// computes a fingerprint.
    #[serde(default)]
    pub dedup_fields: Vec<String>,
    /// Extra normalized fields: name → path.
    #[serde(default)]
    pub fields: BTreeMap<String, PathSpec>,
}

impl Mapping {
    /// The mapping for sources configured without one: the usual places of common payloads.
    pub fn generic() -> Mapping {
        let many = |ps: &[&str]| PathSpec::Many(ps.iter().map(|p| p.to_string()).collect());
        let obs = |path: &str, kind: &str| ObservableMapping {
            path: path.into(),
            kind: kind.into(),
        };
        Mapping {
            title: many(&[
                "$.title",
                "$.summary",
                "$.message",
                "$.name",
                "$.rule.name",
                "$.alert.title",
                "$.subject",
            ]),
            description: Some(many(&["$.description", "$.details", "$.body"])),
            severity: Some(many(&[
                "$.severity",
                "$.level",
                "$.priority",
                "$.rule.severity",
                "$.alert.severity",
            ])),
            severity_map: BTreeMap::new(),
            host: Some(many(&["$.host", "$.hostname", "$.host.name", "$.device"])),
            rule_id: Some(many(&["$.rule_id", "$.rule.id", "$.signature_id"])),
            source_ref: Some(many(&["$.id", "$.event_id", "$.alert_id", "$.uuid"])),
            occurred_at: Some(many(&[
                "$.timestamp",
                "$['@timestamp']",
                "$.time",
                "$.date",
                "$.created_at",
                "$.occurred_at",
            ])),
            tags: Some(many(&["$.tags"])),
            observables: vec![
                obs("$.src_ip", "ip"),
                obs("$.dest_ip", "ip"),
                obs("$.source_ip", "ip"),
                obs("$.ip", "ip"),
                obs("$.url", "url"),
                obs("$.domain", "domain"),
                obs("$.user", "user"),
                obs("$.username", "user"),
                obs("$.cve", "cve"),
            ],
            records: None,
            dedup_fields: Vec::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Compiles every path once; the error names the bad one (`mapping.observables[1].path`).
    pub fn compile(&self) -> Result<CompiledMapping, ParseError> {
        self.compile_with(false)
    }

    fn compile_with(&self, lenient: bool) -> Result<CompiledMapping, ParseError> {
        let mut severity_map = Vec::new();
        for (from, to) in &self.severity_map {
            let level = Level::parse(to).ok_or_else(|| {
                ParseError::new(
                    format!("mapping.severity_map.{from}"),
                    format!("`{to}` is not low, medium, high or critical"),
                )
            })?;
            severity_map.push((from.trim().to_ascii_lowercase(), level));
        }
        let mut observables = Vec::new();
        for (i, o) in self.observables.iter().enumerate() {
            let kind = ObservableKind::parse(o.kind.trim()).ok_or_else(|| {
                ParseError::new(
                    format!("mapping.observables[{i}].kind"),
                    format!("`{}` is not an observable kind", o.kind),
                )
            })?;
            observables.push((
                compile_path(&format!("mapping.observables[{i}].path"), &o.path)?,
                kind,
            ));
        }
        let mut fields = Vec::new();
        for (name, spec) in &self.fields {
            fields.push((
                name.clone(),
                compile_spec(&format!("mapping.fields.{name}"), spec)?,
            ));
        }
        let mut dedup = Vec::new();
        for (i, p) in self.dedup_fields.iter().enumerate() {
            dedup.push(compile_path(&format!("mapping.dedup_fields[{i}]"), p)?);
        }
        let opt = |name: &str, spec: &Option<PathSpec>| -> Result<Vec<JsonPath>, ParseError> {
            match spec {
                Some(s) => compile_spec(&format!("mapping.{name}"), s),
                None => Ok(Vec::new()),
            }
        };
        let title = compile_spec("mapping.title", &self.title)?;
        if title.is_empty() {
            return Err(ParseError::new("mapping.title", "no path given"));
        }
        Ok(CompiledMapping {
            title,
            title_paths: self.title.paths().iter().map(|p| p.to_string()).collect(),
            description: opt("description", &self.description)?,
            severity: opt("severity", &self.severity)?,
            severity_paths: self
                .severity
                .as_ref()
                .map(|s| s.paths().iter().map(|p| p.to_string()).collect())
                .unwrap_or_default(),
            severity_map,
            host: opt("host", &self.host)?,
            rule_id: opt("rule_id", &self.rule_id)?,
            source_ref: opt("source_ref", &self.source_ref)?,
            occurred_at: opt("occurred_at", &self.occurred_at)?,
            tags: opt("tags", &self.tags)?,
            observables,
            records: match &self.records {
                Some(p) => Some(compile_path("mapping.records", p)?),
                None => None,
            },
            dedup,
            fields,
            lenient,
        })
    }
}

fn compile_path(field: &str, path: &str) -> Result<JsonPath, ParseError> {
    JsonPath::parse(path.trim())
        .map_err(|e| ParseError::new(field, format!("invalid JSONPath `{path}`: {e}")))
}

fn compile_spec(field: &str, spec: &PathSpec) -> Result<Vec<JsonPath>, ParseError> {
    match spec {
        PathSpec::One(p) => Ok(vec![compile_path(field, p)?]),
        PathSpec::Many(ps) => ps
            .iter()
            .enumerate()
            .map(|(i, p)| compile_path(&format!("{field}[{i}]"), p))
            .collect(),
    }
}

/// A [`Mapping`] with its paths compiled.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    title: Vec<JsonPath>,
    title_paths: Vec<String>,
    description: Vec<JsonPath>,
    severity: Vec<JsonPath>,
    severity_paths: Vec<String>,
    severity_map: Vec<(String, Level)>,
    host: Vec<JsonPath>,
    rule_id: Vec<JsonPath>,
    source_ref: Vec<JsonPath>,
    occurred_at: Vec<JsonPath>,
    tags: Vec<JsonPath>,
    observables: Vec<(JsonPath, ObservableKind)>,
    records: Option<JsonPath>,
    dedup: Vec<JsonPath>,
    fields: Vec<(String, Vec<JsonPath>)>,
    /// The generic mapping: a record without a title still becomes an event.
    lenient: bool,
}

impl CompiledMapping {
    /// [`Mapping::generic`], compiled.
    pub fn generic() -> CompiledMapping {
        match Mapping::generic().compile_with(true) {
            Ok(m) => m,
            // The generic paths are constants that compile; should one not, a mapping that
            // finds nothing still gives (untitled) events.
            Err(_) => CompiledMapping {
                title: Vec::new(),
                title_paths: Vec::new(),
                description: Vec::new(),
                severity: Vec::new(),
                severity_paths: Vec::new(),
                severity_map: Vec::new(),
                host: Vec::new(),
                rule_id: Vec::new(),
                source_ref: Vec::new(),
                occurred_at: Vec::new(),
                tags: Vec::new(),
                observables: Vec::new(),
                records: None,
                dedup: Vec::new(),
                fields: Vec::new(),
                lenient: true,
            },
        }
    }
}

/// The first scalar (non-null, non-blank) value the paths select, with the index of the path
/// that found it.
fn first_scalar<'v>(paths: &[JsonPath], record: &'v Value) -> Option<(usize, &'v Value)> {
    paths.iter().enumerate().find_map(|(i, p)| {
        p.query(record)
            .all()
            .into_iter()
            .find(|v| value_non_empty(v).is_some())
            .map(|v| (i, v))
    })
}

fn first_text(paths: &[JsonPath], record: &Value) -> Option<String> {
    first_scalar(paths, record).and_then(|(_, v)| value_non_empty(v))
}

/// A webhook body to events: one per record; the first record refused refuses the body.
pub fn parse(body: &[u8], source: &str, mapping: &CompiledMapping) -> ParseResult {
    parse_records(body, source, mapping)?.into_iter().collect()
}

/// A webhook body to one result per record (in order), so that one bad record of an array
/// is reported by its number while the others go in; `Err` when the body itself is not JSON.
pub fn parse_records(
    body: &[u8],
    source: &str,
    mapping: &CompiledMapping,
) -> Result<Vec<Result<NormalizedEvent, ParseError>>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("body", format!("not JSON: {e}")))?;
    let (records, whole): (Vec<&Value>, bool) = match &mapping.records {
        Some(path) => {
            let nodes = path.query(&root).all();
            let mut out = Vec::new();
            for n in nodes {
                match n {
                    Value::Array(items) => out.extend(items.iter()),
                    other => out.push(other),
                }
            }
            (out, false)
        }
        None => match &root {
            Value::Array(items) => (items.iter().collect(), false),
            other => (vec![other], true),
        },
    };
    let many = records.len() > 1 || !whole;
    let out = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let raw = if whole {
                String::from_utf8_lossy(body).into_owned()
            } else {
                record.to_string()
            };
            to_event(record, source, mapping, raw).map_err(|e| {
                if many {
                    ParseError::new(format!("records[{i}].{}", e.field), e.message)
                } else {
                    e
                }
            })
        })
        .collect();
    Ok(out)
}

fn to_event(
    record: &Value,
    source: &str,
    m: &CompiledMapping,
    raw: String,
) -> Result<NormalizedEvent, ParseError> {
    if !record.is_object() && !m.lenient {
        return Err(ParseError::new("record", "not a JSON object"));
    }
    let title = match first_text(&m.title, record) {
        Some(t) => clean_title(&t),
        None if m.lenient => clean_title(&crate::jsonutil::content_title(
            &format!("Webhook event from {source}"),
            record,
        )),
        None => {
            return Err(ParseError::new(
                "title",
                format!("no value at {}", m.title_paths.join(" or ")),
            ));
        }
    };
    let mut ev = NormalizedEvent::new("device", source, title);
    ev.raw = raw;
    // mapped values that were there but could not be used: said on the event, not dropped
    // silently (`fields.mapping_warnings`)
    let mut warnings: Vec<String> = Vec::new();
    ev.description = first_text(&m.description, record);
    if let Some((i, v)) = first_scalar(&m.severity, record) {
        let text = value_non_empty(v).unwrap_or_default();
        let key = text.trim().to_ascii_lowercase();
        let mapped = m
            .severity_map
            .iter()
            .find(|(from, _)| *from == key)
            .map(|(_, level)| *level);
        let path = m.severity_paths.get(i).map(String::as_str).unwrap_or("");
        let scale = if path.to_ascii_lowercase().contains("priority") {
            "priority"
        } else {
            "severity"
        };
        ev.severity = mapped
            .or_else(|| Level::parse(&text))
            .or_else(|| {
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|n| level_from_number(scale, n))
            })
            .unwrap_or_else(|| {
                warnings.push(format!(
                    "severity: {} at {path} is not a known severity (add it to severity_map); medium is used",
                    Value::String(text.clone())
                ));
                Level::Medium
            });
        ev.original_severity = Some(text);
    }
    // a host given as `name:port` or a URL (Prometheus' `instance`) is the host, as on
    // Alertmanager's path: asset matching and the fingerprint compare names
    ev.host = first_text(&m.host, record)
        .map(|h| crate::jsonutil::strip_port(&h).to_string())
        .filter(|h| !h.is_empty());
    ev.rule_id = first_text(&m.rule_id, record);
    ev.source_ref = first_text(&m.source_ref, record);
    ev.occurred_at = m
        .occurred_at
        .iter()
        .find_map(|p| p.query(record).all().into_iter().find_map(time_from_value));
    if ev.occurred_at.is_none()
        && let Some(v) = m
            .occurred_at
            .iter()
            .find_map(|p| p.query(record).all().into_iter().find(|v| has_value(v)))
    {
        warnings.push(format!(
            "occurred_at: {} is not a time (RFC 3339 or epoch seconds/milliseconds); the receipt time is used",
            short_json(v)
        ));
    }
    for p in &m.tags {
        for node in p.query(record).all() {
            match node {
                Value::Array(items) => {
                    for t in items.iter().filter_map(value_non_empty) {
                        push_tag(&mut ev.tags, &t);
                    }
                }
                Value::String(s) => {
                    for t in s.split(',') {
                        push_tag(&mut ev.tags, t);
                    }
                }
                other => {
                    if let Some(t) = value_non_empty(other) {
                        push_tag(&mut ev.tags, &t);
                    }
                }
            }
        }
    }
    for (p, kind) in &m.observables {
        for node in p.query(record).all() {
            let values: Vec<String> = match node {
                Value::Array(items) => items.iter().filter_map(value_non_empty).collect(),
                other => value_non_empty(other).into_iter().collect(),
            };
            for v in values {
                match observable_of_kind(*kind, &v) {
                    Some(o) => push_observable(&mut ev.observables, Some(o)),
                    None => warnings.push(format!(
                        "observables: {} is not a valid {}",
                        short_json(&Value::String(v)),
                        kind.as_str()
                    )),
                }
            }
        }
    }
    if !m.dedup.is_empty() {
        let mut h = Sha256::new();
        for (i, p) in m.dedup.iter().enumerate() {
            if i > 0 {
                h.update([0x1f]);
            }
            if let Some(v) = p.query(record).first() {
                h.update(v.to_string().as_bytes());
            }
        }
        ev.dedup_key = Some(format!("webhook:{source}:{}", hex::encode(h.finalize())));
    }
    let mut fields = Map::new();
    for (name, paths) in &m.fields {
        let found = paths.iter().find_map(|p| {
            p.query(record)
                .all()
                .into_iter()
                .find(|v| has_value(v))
                .cloned()
        });
        if let Some(v) = found {
            fields.insert(name.clone(), v);
        }
    }
    if !warnings.is_empty() {
        fields.insert(
            "mapping_warnings".into(),
            Value::Array(warnings.into_iter().map(Value::String).collect()),
        );
    }
    ev.fields = fields;
    Ok(ev)
}

/// A value other than null or blank text.
fn has_value(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

/// A value as JSON, cut to 80 characters (for a message).
fn short_json(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// Checks a webhook signature header: HMAC-SHA256 of the body under `secret`, sent as
/// `sha256=<hex>` (GitHub's `X-Hub-Signature-256`), bare hex, or base64 (standard or
/// URL-safe, padded or not). The comparison takes the same time whatever the value.
pub fn verify_hmac_sha256(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let mut v = header_value.trim();
    if v.len() >= 7
        && v.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("sha256="))
    {
        v = v.get(7..).unwrap_or("").trim();
    }
    if v.is_empty() || v.len() > 256 {
        return false;
    }
    let given: Vec<u8> = if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        match hex::decode(v) {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        match engines.iter().find_map(|e| e.decode(v).ok()) {
            Some(b) => b,
            None => return false,
        }
    };
    if given.len() != 32 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(&given).into()
}
