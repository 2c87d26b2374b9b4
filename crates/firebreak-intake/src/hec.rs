//! Splunk HTTP Event Collector: `/services/collector` and `/services/collector/event` bodies
//! (JSON envelopes `{time, host, source, sourcetype, index, event, fields}`, concatenated,
//! with or without whitespace between them) and `/services/collector/raw` bodies (one event
//! per line). Errors carry Splunk's HEC status codes, so the server can answer as Splunk does
//! (`{"text": "Event field is required", "code": 12, "invalid-event-number": 3}`).
//!
//! Envelopes whose `sourcetype` says Suricata or Wazuh (and whose event looks like one) go to
//! the [`crate::eve`] or [`crate::wazuh`] adapter; everything else becomes a generic event.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::eve::{self, EveTypes};
use crate::jsonutil::{
    Scalar, Text, any_hash_observable, ip_observable, level_from_value, push_observable,
    time_from_value, truncate_chars, url_observable, value_non_empty,
};
use crate::{
    Level, NormalizedEvent, Observable, ObservableKind, ParseError, ParseResult, clean_title, wazuh,
};

/// Splunk HEC status codes (Splunk docs, "Troubleshoot HTTP Event Collector").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HecCode {
    Success = 0,
    TokenDisabled = 1,
    TokenRequired = 2,
    InvalidAuthorization = 3,
    InvalidToken = 4,
    NoData = 5,
    InvalidDataFormat = 6,
    IncorrectIndex = 7,
    InternalServerError = 8,
    ServerBusy = 9,
    DataChannelMissing = 10,
    InvalidDataChannel = 11,
    EventFieldRequired = 12,
    EventFieldBlank = 13,
    AckDisabled = 14,
    IndexedFieldsError = 15,
    QueryStringAuthorizationDisabled = 16,
    Healthy = 17,
    UnhealthyQueuesFull = 18,
    UnhealthyAckUnavailable = 19,
    UnhealthyQueuesFullAckUnavailable = 20,
}

impl HecCode {
    const ALL: [HecCode; 21] = [
        HecCode::Success,
        HecCode::TokenDisabled,
        HecCode::TokenRequired,
        HecCode::InvalidAuthorization,
        HecCode::InvalidToken,
        HecCode::NoData,
        HecCode::InvalidDataFormat,
        HecCode::IncorrectIndex,
        HecCode::InternalServerError,
        HecCode::ServerBusy,
        HecCode::DataChannelMissing,
        HecCode::InvalidDataChannel,
        HecCode::EventFieldRequired,
        HecCode::EventFieldBlank,
        HecCode::AckDisabled,
        HecCode::IndexedFieldsError,
        HecCode::QueryStringAuthorizationDisabled,
        HecCode::Healthy,
        HecCode::UnhealthyQueuesFull,
        HecCode::UnhealthyAckUnavailable,
        HecCode::UnhealthyQueuesFullAckUnavailable,
    ];

    /// The numeric code, as sent in `"code"`.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code for a number, when Splunk defines it.
    pub fn from_code(code: u16) -> Option<HecCode> {
        HecCode::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The HTTP status Splunk answers with.
    pub fn http_status(self) -> u16 {
        match self {
            HecCode::Success | HecCode::Healthy => 200,
            HecCode::TokenRequired | HecCode::InvalidAuthorization => 401,
            HecCode::TokenDisabled | HecCode::InvalidToken => 403,
            HecCode::InternalServerError => 500,
            HecCode::ServerBusy
            | HecCode::UnhealthyQueuesFull
            | HecCode::UnhealthyAckUnavailable
            | HecCode::UnhealthyQueuesFullAckUnavailable => 503,
            _ => 400,
        }
    }

    /// Splunk's message text, as sent in `"text"`.
    pub fn text(self) -> &'static str {
        match self {
            HecCode::Success => "Success",
            HecCode::TokenDisabled => "Token disabled",
            HecCode::TokenRequired => "Token is required",
            HecCode::InvalidAuthorization => "Invalid authorization",
            HecCode::InvalidToken => "Invalid token",
            HecCode::NoData => "No data",
            HecCode::InvalidDataFormat => "Invalid data format",
            HecCode::IncorrectIndex => "Incorrect index",
            HecCode::InternalServerError => "Internal server error",
            HecCode::ServerBusy => "Server is busy",
            HecCode::DataChannelMissing => "Data channel is missing",
            HecCode::InvalidDataChannel => "Invalid data channel",
            HecCode::EventFieldRequired => "Event field is required",
            HecCode::EventFieldBlank => "Event field cannot be blank",
            HecCode::AckDisabled => "ACK is disabled",
            HecCode::IndexedFieldsError => "Error in handling indexed fields",
            HecCode::QueryStringAuthorizationDisabled => {
                "Query string authorization is not enabled"
            }
            HecCode::Healthy => "HEC is healthy",
            HecCode::UnhealthyQueuesFull => "HEC is unhealthy, queues are full",
            HecCode::UnhealthyAckUnavailable => "HEC is unhealthy, ack service unavailable",
            HecCode::UnhealthyQueuesFullAckUnavailable => {
                "HEC is unhealthy, queues are full, ack service unavailable"
            }
        }
    }
}

/// The HTTP status and text Splunk answers a HEC code with; an unknown code is answered as
/// an internal error (500).
pub fn hec_error(code: u16) -> (u16, &'static str) {
    match HecCode::from_code(code) {
        Some(c) => (c.http_status(), c.text()),
        None => (500, HecCode::InternalServerError.text()),
    }
}

/// Why a HEC body (or one event of it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (code {}){}", code.text(), code.code(), detail_suffix(.detail))]
pub struct HecError {
    pub code: HecCode,
    /// The 0-based number of the refused event in the body, when one is to blame
    /// (Splunk's `invalid-event-number`).
    pub event_index: Option<usize>,
    /// What exactly was wrong, for logs (Splunk sends only `text`).
    pub detail: String,
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl HecError {
    pub fn new(code: HecCode, event_index: Option<usize>, detail: impl Into<String>) -> Self {
        HecError {
            code,
            event_index,
            detail: detail.into(),
        }
    }

    /// The response body Splunk sends for this error.
    pub fn response_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("text".into(), Value::String(self.code.text().into()));
        body.insert("code".into(), Value::from(self.code.code()));
        if let Some(i) = self.event_index {
            body.insert("invalid-event-number".into(), Value::from(i));
        }
        Value::Object(body)
    }
}

impl From<HecError> for ParseError {
    fn from(e: HecError) -> Self {
        let field = match e.event_index {
            Some(i) => format!("events[{i}]"),
            None => "body".to_string(),
        };
        ParseError::new(field, e.to_string())
    }
}

type RawStream<'a> =
    serde_json::StreamDeserializer<'a, serde_json::de::SliceRead<'a>, &'a RawValue>;

/// The events of a HEC body, in order, each with its 0-based number. Iteration stops after
/// the first error that leaves the rest unreadable (invalid JSON).
pub struct HecEvents<'a> {
    stream: RawStream<'a>,
    pending: VecDeque<&'a RawValue>,
    index: usize,
    empty: bool,
    done: bool,
}

impl<'a> Iterator for HecEvents<'a> {
    type Item = Result<(usize, &'a RawValue), HecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.empty {
            self.done = true;
            return Some(Err(HecError::new(HecCode::NoData, None, "empty body")));
        }
        loop {
            if let Some(raw) = self.pending.pop_front() {
                let i = self.index;
                self.index += 1;
                return Some(Ok((i, raw)));
            }
            match self.stream.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(HecError::new(
                        HecCode::InvalidDataFormat,
                        Some(self.index),
                        e.to_string(),
                    )));
                }
                Some(Ok(raw)) => {
                    let text = raw.get();
                    if text.starts_with('[') {
                        // Not what Splunk documents, but what some senders do: a JSON array
                        // of envelopes counts as its elements.
                        match serde_json::from_str::<Vec<&'a RawValue>>(text) {
                            Ok(items) => self.pending.extend(items),
                            Err(e) => {
                                self.done = true;
                                return Some(Err(HecError::new(
                                    HecCode::InvalidDataFormat,
                                    Some(self.index),
                                    e.to_string(),
                                )));
                            }
                        }
                    } else {
                        self.pending.push_back(raw);
                    }
                }
            }
        }
    }
}

/// Splits a `/services/collector[/event]` body into its envelopes (`{"event":"a"}{"event":"b"}`,
/// separated by whitespace or not). An empty body gives one `NoData` error; invalid JSON an
/// `InvalidDataFormat` error numbered with the event it is in.
pub fn split_events(body: &[u8]) -> HecEvents<'_> {
    HecEvents {
        stream: serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>(),
        pending: VecDeque::new(),
        index: 0,
        empty: body.iter().all(u8::is_ascii_whitespace),
        done: false,
    }
}

/// One HEC envelope.
#[derive(Debug, Clone)]
pub struct HecEvent<'a> {
    /// Seconds since the epoch, with fractions (`1426279439.123`); sent as a number or a
    /// numeric string.
    pub time: Option<OffsetDateTime>,
    pub host: Option<Cow<'a, str>>,
    pub source: Option<Cow<'a, str>>,
    pub sourcetype: Option<Cow<'a, str>>,
    pub index: Option<Cow<'a, str>>,
    /// The event: a string, or any JSON value (usually an object).
    pub event: &'a RawValue,
    /// Indexed fields: names to strings or lists of strings.
    pub fields: Map<String, Value>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    time: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    host: Text<'a>,
    #[serde(borrow, default)]
    source: Text<'a>,
    #[serde(borrow, default)]
    sourcetype: Text<'a>,
    #[serde(borrow, default)]
    index: Text<'a>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    event: Option<&'a RawValue>,
    #[serde(default)]
    fields: Option<Value>,
}

/// The event as sent, `null` included (to tell "blank" from "missing").
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

impl<'a> HecEvent<'a> {
    /// Reads envelope number `index` of a body: `event` is required (code 12) and cannot be
    /// null or blank (code 13); `fields` must be an object (code 15).
    pub fn parse(raw: &'a RawValue, index: usize) -> Result<HecEvent<'a>, HecError> {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(HecError::new(
                HecCode::InvalidDataFormat,
                Some(index),
                "an event envelope must be a JSON object",
            ));
        }
        let env: Envelope<'a> = serde_json::from_str(text)
            .map_err(|e| HecError::new(HecCode::InvalidDataFormat, Some(index), e.to_string()))?;
        let Some(event) = env.event else {
            return Err(HecError::new(HecCode::EventFieldRequired, Some(index), ""));
        };
        let e = event.get().trim();
        let blank = e == "null"
            || (e.starts_with('"')
                && serde_json::from_str::<Cow<'_, str>>(e).is_ok_and(|s| s.trim().is_empty()));
        if blank {
            return Err(HecError::new(HecCode::EventFieldBlank, Some(index), ""));
        }
        let fields = match env.fields {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                // Splunk's indexed fields are flat: a value is a string (a number), or a list
                // of them; an object, or a list holding one or a list, is refused (code 15)
                let nested = m.values().any(|v| match v {
                    Value::Object(_) => true,
                    Value::Array(items) => items
                        .iter()
                        .any(|i| matches!(i, Value::Object(_) | Value::Array(_))),
                    _ => false,
                });
                if nested {
                    return Err(HecError::new(
                        HecCode::IndexedFieldsError,
                        Some(index),
                        "`fields` values must be strings or lists of strings, not objects",
                    ));
                }
                m
            }
            Some(_) => {
                return Err(HecError::new(
                    HecCode::IndexedFieldsError,
                    Some(index),
                    "`fields` must be an object",
                ));
            }
        };
        // epoch seconds as Splunk documents them (a number or a numeric string); an epoch in
        // milliseconds or finer, or an RFC 3339 string, as what it plainly is; anything else,
        // or a time before 1970, is refused as Splunk refuses it (code 6), not replaced
        let time = match &env.time {
            None | Some(Scalar::Null) => None,
            Some(t) => {
                let parsed = match t.as_f64() {
                    Some(n) if n >= 0.0 => crate::jsonutil::from_epoch_auto(n),
                    Some(_) => None,
                    None => t.text().and_then(|s| crate::jsonutil::parse_timestamp(&s)),
                };
                match parsed {
                    Some(at) => Some(at),
                    None => {
                        return Err(HecError::new(
                            HecCode::InvalidDataFormat,
                            Some(index),
                            "`time` must be epoch seconds (e.g. 1700000000.123)",
                        ));
                    }
                }
            }
        };
        let nonblank = |t: Text<'a>| t.0.filter(|s| !s.trim().is_empty());
        Ok(HecEvent {
            time,
            host: nonblank(env.host),
            source: nonblank(env.source),
            sourcetype: nonblank(env.sourcetype),
            index: nonblank(env.index),
            event,
            fields,
        })
    }
}

fn is_suricata(sourcetype: &str) -> bool {
    matches!(
        sourcetype,
        "suricata" | "suricata:eve" | "suricata:json" | "suricata:alert" | "_json"
    )
}

fn is_wazuh(sourcetype: &str) -> bool {
    matches!(
        sourcetype,
        "wazuh" | "wazuh-alerts" | "wazuh:alerts" | "wazuh_alerts"
    )
}

/// What HEC intake did with the Suricata EVE records it was sent, by `event_type` (only the
/// types Suricata writes, [`eve::KNOWN_TYPES`], are counted: the keys are bounded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EveTally {
    /// Records that became events.
    pub stored: BTreeMap<&'static str, u64>,
    /// Records of a type the request's EVE types leave out (no event).
    pub skipped: BTreeMap<&'static str, u64>,
}

impl EveTally {
    fn count(&mut self, event_type: &str, stored: bool) {
        if let Some(t) = known_eve_type(event_type) {
            let map = if stored {
                &mut self.stored
            } else {
                &mut self.skipped
            };
            *map.entry(t).or_insert(0) += 1;
        }
    }
}

/// `event_type` as Suricata names it, when it is one of Suricata's.
fn known_eve_type(event_type: &str) -> Option<&'static str> {
    eve::KNOWN_TYPES
        .iter()
        .copied()
        .find(|t| t.eq_ignore_ascii_case(event_type))
}

/// The `event_type` of a compact or pretty EVE line, without parsing it (for the tally of a
/// record that is skipped).
fn peek_event_type(line: &str) -> Option<&str> {
    let at = line.find("\"event_type\"")? + "\"event_type\"".len();
    let rest = line.get(at..)?.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.get(..rest.find('"')?)
}

/// One envelope to events, every EVE record type included (what Splunk would index); see
/// [`to_events_with`]. `raw` is the envelope as received (it becomes each event's `raw`).
pub fn to_events(ev: &HecEvent<'_>, raw: &str) -> ParseResult {
    to_events_with(ev, raw, &EveTypes::all(), &mut EveTally::default())
}

/// One envelope to events. A Suricata sourcetype's record of a type Suricata writes goes to
/// the EVE adapter: a type outside `eve_types` gives no event (counted in `tally.skipped`);
/// a type other than `alert` and `anomaly` becomes a low-severity event naming the record
/// (`Suricata flow: TCP 10.0.0.1:1234 -> 10.0.0.2:80`).
pub fn to_events_with(
    ev: &HecEvent<'_>,
    raw: &str,
    eve_types: &EveTypes,
    tally: &mut EveTally,
) -> ParseResult {
    let sourcetype = ev.sourcetype.as_deref().map(str::to_ascii_lowercase);
    let event: Value = serde_json::from_str(ev.event.get())
        .map_err(|e| ParseError::new("event", format!("not JSON: {e}")))?;
    if let Some(st) = sourcetype.as_deref() {
        // The record to hand to a specialized adapter: the event object, or an event string
        // holding one (a forwarded eve.json / alerts.json line).
        let record: Option<Cow<'_, str>> = match &event {
            Value::Object(_) => Some(Cow::Borrowed(ev.event.get())),
            Value::String(s) if s.trim_start().starts_with('{') => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        };
        let object = match &event {
            Value::Object(o) => Some(Cow::Borrowed(o)),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(o)) => Some(Cow::Owned(o)),
                _ => None,
            },
            _ => None,
        };
        if let (Some(rec), Some(obj)) = (&record, &object) {
            // an `event_type` Suricata does not write is not an EVE record (`_json` is any JSON)
            let eve_type = obj
                .get("event_type")
                .and_then(Value::as_str)
                .and_then(known_eve_type)
                .filter(|_| is_suricata(st));
            let delegated = if let Some(t) = eve_type {
                let parsed = eve::parse_line(rec, eve_types);
                if let Ok(events) = &parsed {
                    tally.count(t, !events.is_empty());
                }
                Some(parsed)
            } else if is_wazuh(st) && obj.contains_key("rule") {
                Some(wazuh::parse_line(rec))
            } else {
                None
            };
            if let Some(Ok(mut events)) = delegated {
                for e in &mut events {
                    finish_delegated(e, ev, raw);
                }
                return Ok(events);
            }
        }
    }
    Ok(vec![generic_event(ev, &event, raw)])
}

/// What the envelope adds to an event another adapter made: its raw text, and the host,
/// time and metadata the adapter's record did not have.
fn finish_delegated(e: &mut NormalizedEvent, ev: &HecEvent<'_>, raw: &str) {
    e.raw = raw.to_string();
    if e.occurred_at.is_none() {
        e.occurred_at = ev.time;
    }
    add_metadata(
        e,
        ev.host.as_deref(),
        ev.source.as_deref(),
        ev.sourcetype.as_deref(),
        ev.index.as_deref(),
    );
}

/// The HEC host (when the event has none) and `sourcetype`, `index`, `source` fields (where
/// the adapter did not use those names).
fn add_metadata(
    e: &mut NormalizedEvent,
    host: Option<&str>,
    source: Option<&str>,
    sourcetype: Option<&str>,
    index: Option<&str>,
) {
    if e.host.is_none() {
        e.host = host.map(str::to_string);
    }
    for (k, v) in [
        ("sourcetype", sourcetype),
        ("index", index),
        ("source", source),
    ] {
        if let Some(v) = v {
            e.fields
                .entry(k.to_string())
                .or_insert_with(|| Value::String(v.to_string()));
        }
    }
}

const TITLE_KEYS: [&str; 12] = [
    "message",
    "msg",
    "title",
    "summary",
    "signature",
    "search_name",
    "alert_name",
    "rule_name",
    "description",
    // Docker's splunk logging driver and Fluent Bit / Fluentd
    "line",
    "log",
    "name",
];
const SEVERITY_KEYS: [&str; 3] = ["severity", "level", "priority"];
const IP_KEYS: [&str; 10] = [
    "src_ip",
    "dest_ip",
    "dst_ip",
    "src",
    "dest",
    "dst",
    "ip",
    "client_ip",
    "source_ip",
    "destination_ip",
];
const USER_KEYS: [&str; 4] = ["user", "username", "src_user", "dest_user"];
const HASH_KEYS: [&str; 4] = ["md5", "sha1", "sha256", "file_hash"];

fn generic_event(ev: &HecEvent<'_>, event: &Value, raw: &str) -> NormalizedEvent {
    let source_name = ev
        .source
        .as_deref()
        .or(ev.sourcetype.as_deref())
        .unwrap_or("splunk-hec");
    let mut e = NormalizedEvent::new("device", source_name, "");
    e.raw = raw.to_string();
    e.host = ev.host.as_deref().map(str::to_string);
    e.occurred_at = ev.time;
    let mut event_level = false;
    match event {
        Value::Object(obj) => {
            let title = TITLE_KEYS
                .iter()
                .find_map(|k| obj.get(*k).and_then(value_non_empty).map(|v| (*k, v)));
            match title {
                Some((key, text)) => {
                    e.title = clean_title(&text);
                    let long = text.chars().count() > 300 || text.contains('\n');
                    e.description = if key != "description" {
                        obj.get("description")
                            .and_then(value_non_empty)
                            .or(long.then_some(text))
                    } else {
                        long.then_some(text)
                    };
                }
                None => {
                    e.title = clean_title(&crate::jsonutil::content_title(
                        &format!("{} event", ev.sourcetype.as_deref().unwrap_or("HEC")),
                        event,
                    ));
                }
            }
            if let Some((key, v)) = SEVERITY_KEYS
                .iter()
                .find_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
            {
                if let Some(level) = level_from_value(key, v) {
                    e.severity = level;
                    event_level = true;
                }
                e.original_severity = value_non_empty(v);
            }
            if e.occurred_at.is_none() {
                e.occurred_at = ["timestamp", "@timestamp", "time"]
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(time_from_value));
            }
            if e.host.is_none() {
                e.host = ["host", "hostname"]
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(value_non_empty));
            }
            e.rule_id = ["rule_id", "signature_id", "rule"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(value_non_empty));
            for k in IP_KEYS {
                push_observable(
                    &mut e.observables,
                    obj.get(k).and_then(Value::as_str).and_then(ip_observable),
                );
            }
            for k in USER_KEYS {
                push_observable(
                    &mut e.observables,
                    obj.get(k)
                        .and_then(value_non_empty)
                        .map(|u| Observable::new(ObservableKind::User, u)),
                );
            }
            push_observable(
                &mut e.observables,
                obj.get("url")
                    .and_then(Value::as_str)
                    .and_then(url_observable),
            );
            for k in HASH_KEYS {
                push_observable(
                    &mut e.observables,
                    obj.get(k)
                        .and_then(Value::as_str)
                        .and_then(any_hash_observable),
                );
            }
        }
        Value::String(s) => {
            e.title = clean_title(s);
            if s.chars().count() > 300 || s.trim().contains('\n') {
                e.description = Some(s.clone());
            }
        }
        other => {
            e.title = clean_title(truncate_chars(&other.to_string(), 300));
        }
    }
    fields_observables_and_severity(&mut e, &ev.fields, event_level);
    let mut fields = Map::new();
    for (k, v) in [
        ("sourcetype", &ev.sourcetype),
        ("index", &ev.index),
        ("source", &ev.source),
    ] {
        if let Some(v) = v {
            fields.insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    for (k, v) in &ev.fields {
        fields.entry(k.clone()).or_insert_with(|| v.clone());
    }
    e.fields = fields;
    e
}

/// What the envelope's indexed `fields` add to a generic event: observables under the keys
/// the event's own JSON is read for (a value or each value of a list), and a severity when
/// the event gave none that reads as a level (a known word or a number, as in the event).
fn fields_observables_and_severity(
    e: &mut NormalizedEvent,
    fields: &Map<String, Value>,
    event_level: bool,
) {
    let texts = |k: &str| -> Vec<String> {
        match fields.get(k) {
            Some(Value::Array(items)) => items.iter().filter_map(value_non_empty).collect(),
            Some(v) => value_non_empty(v).into_iter().collect(),
            None => Vec::new(),
        }
    };
    for k in IP_KEYS {
        for v in texts(k) {
            push_observable(&mut e.observables, ip_observable(&v));
        }
    }
    for k in USER_KEYS {
        for v in texts(k) {
            push_observable(
                &mut e.observables,
                Some(Observable::new(ObservableKind::User, v)),
            );
        }
    }
    for v in texts("url") {
        push_observable(&mut e.observables, url_observable(&v));
    }
    for k in HASH_KEYS {
        for v in texts(k) {
            push_observable(&mut e.observables, any_hash_observable(&v));
        }
    }
    if !event_level
        && let Some((v, level)) = SEVERITY_KEYS.iter().find_map(|k| {
            let v = fields.get(*k).filter(|v| !v.is_null())?;
            level_from_value(k, v).map(|l| (v, l))
        })
    {
        e.severity = level;
        e.original_severity = value_non_empty(v);
    }
}

/// A `/services/collector/raw` body, every EVE record type included; see
/// [`raw_to_events_with`].
pub fn raw_to_events(
    body: &[u8],
    host: Option<&str>,
    source: Option<&str>,
    sourcetype: Option<&str>,
) -> Result<Vec<NormalizedEvent>, HecError> {
    raw_to_events_with(
        body,
        host,
        source,
        sourcetype,
        &EveTypes::all(),
        &mut EveTally::default(),
    )
}

/// A `/services/collector/raw` body: each non-blank line is one event, with the metadata the
/// query string gave. Lines of a Suricata or Wazuh sourcetype go to that adapter when they
/// parse as its records (an EVE type outside `eve_types` gives no event, counted in
/// `tally.skipped`); other lines become text events.
pub fn raw_to_events_with(
    body: &[u8],
    host: Option<&str>,
    source: Option<&str>,
    sourcetype: Option<&str>,
    eve_types: &EveTypes,
    tally: &mut EveTally,
) -> Result<Vec<NormalizedEvent>, HecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HecError::new(HecCode::NoData, None, "empty body"));
    }
    let text = String::from_utf8_lossy(body);
    let st = sourcetype.map(str::to_ascii_lowercase);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(st) = st.as_deref()
            && line.trim_start().starts_with('{')
        {
            let eve_type = peek_event_type(line)
                .and_then(known_eve_type)
                .filter(|_| is_suricata(st));
            let delegated = if let Some(t) = eve_type {
                let parsed = eve::parse_line(line, eve_types);
                if let Ok(events) = &parsed {
                    tally.count(t, !events.is_empty());
                }
                Some(parsed)
            } else if is_wazuh(st) {
                Some(wazuh::parse_line(line))
            } else {
                None
            };
            if let Some(Ok(events)) = delegated {
                for mut e in events {
                    add_metadata(&mut e, host, source, sourcetype, None);
                    out.push(e);
                }
                continue;
            }
        }
        let mut e = NormalizedEvent::new(
            "device",
            source.or(sourcetype).unwrap_or("splunk-hec"),
            clean_title(line),
        );
        if line.chars().count() > 300 {
            e.description = Some(line.to_string());
        }
        e.host = host.map(str::to_string);
        if let Some(st) = sourcetype {
            e.fields
                .insert("sourcetype".into(), Value::String(st.to_string()));
        }
        if let Some(s) = source {
            e.fields
                .insert("source".into(), Value::String(s.to_string()));
        }
        e.severity = Level::Medium;
        e.raw = line.to_string();
        out.push(e);
    }
    Ok(out)
}
