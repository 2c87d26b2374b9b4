//! Prometheus Alertmanager webhook notifications, payload version "4"
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>): one event per
//! alert of the group. A `resolved` alert asks the intake to close the matching event.

use serde_json::{Map, Value};

use crate::jsonutil::{
    ip_observable, parse_timestamp, push_observable, push_tag, strip_port, value_non_empty,
};
use crate::{Action, Level, NormalizedEvent, ParseError, ParseResult, clean_title};

/// The Alertmanager fingerprint of a label set, computed as Alertmanager does
/// (`model.LabelSet.Fingerprint`: FNV-1a 64 over the sorted `name 0xff value 0xff` pairs,
/// as 16 hex digits); used when an alert comes without its `fingerprint`.
pub fn labels_fingerprint(labels: &Map<String, Value>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for name in names {
        let value = labels
            .get(name)
            .and_then(value_non_empty_raw)
            .unwrap_or_default();
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// A label value as text, untrimmed (labels are strings; other scalars are formatted).
fn value_non_empty_raw(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A webhook body to one event per alert. `version` must be `"4"` and `alerts` an array;
/// unknown fields are tolerated.
pub fn parse(body: &[u8]) -> ParseResult {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("body", format!("not JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(ParseError::new("body", "not a JSON object"));
    };
    match root.get("version") {
        Some(Value::String(v)) if v == "4" => {}
        Some(v) => {
            return Err(ParseError::new(
                "version",
                format!("unsupported webhook payload version {v} (expected \"4\")"),
            ));
        }
        None => return Err(ParseError::new("version", "missing (expected \"4\")")),
    }
    let alerts = match root.get("alerts") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ParseError::new("alerts", "not an array")),
        None => return Err(ParseError::new("alerts", "missing")),
    };
    let group = Group::from_root(&root);
    alerts
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Value::Object(alert) => {
                check_alert(alert)
                    .map_err(|(field, m)| ParseError::new(format!("alerts[{i}].{field}"), m))?;
                Ok(to_event(alert, &group))
            }
            _ => Err(ParseError::new(format!("alerts[{i}]"), "not an object")),
        })
        .collect()
}

/// The fields of an alert whose values decide what happens to it: a value Alertmanager never
/// sends is refused, naming the field, rather than read as something else (a `status` of
/// `bogus` as firing, a `startsAt` of `yesterday` as the receipt time).
fn check_alert(alert: &Map<String, Value>) -> Result<(), (&'static str, String)> {
    match alert.get("status") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "firing" || s == "resolved" => {}
        Some(v) => return Err(("status", format!("{v} is not \"firing\" or \"resolved\""))),
    }
    for key in ["startsAt", "endsAt"] {
        match alert.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if parse_timestamp(s).is_some() => {}
            Some(v) => return Err((key, format!("{v} is not an RFC 3339 time"))),
        }
    }
    match alert.get("labels") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(("labels", "not an object".into())),
    }
    match alert.get("annotations") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(("annotations", "not an object".into())),
    }
    Ok(())
}

/// What the group tells about each of its alerts.
struct Group<'a> {
    receiver: Option<String>,
    group_key: Option<String>,
    external_url: Option<String>,
    root: &'a Map<String, Value>,
}

impl<'a> Group<'a> {
    fn from_root(root: &'a Map<String, Value>) -> Self {
        let s = |k: &str| root.get(k).and_then(value_non_empty);
        Group {
            receiver: s("receiver"),
            group_key: s("groupKey"),
            external_url: s("externalURL"),
            root,
        }
    }
}

fn to_event(alert: &Map<String, Value>, group: &Group<'_>) -> NormalizedEvent {
    let empty = Map::new();
    let labels = match alert.get("labels") {
        Some(Value::Object(l)) => l,
        _ => &empty,
    };
    let annotations = match alert.get("annotations") {
        Some(Value::Object(a)) => a,
        _ => &empty,
    };
    let label = |k: &str| labels.get(k).and_then(value_non_empty);
    let annotation = |k: &str| annotations.get(k).and_then(value_non_empty);
    let alertname = label("alertname");

    let title = annotation("summary")
        .or_else(|| alertname.clone())
        .unwrap_or_else(|| "Alertmanager alert".to_string());
    let mut ev = NormalizedEvent::new("sensor", "alertmanager", clean_title(&title));
    let mut description = annotation("description").or_else(|| annotation("message"));
    if let Some(runbook) = annotation("runbook_url") {
        let line = format!("Runbook: {runbook}");
        description = Some(match description {
            Some(d) => format!("{d}\n\n{line}"),
            None => line,
        });
    }
    ev.description = description;
    ev.rule_id = alertname;
    let severity = label("severity");
    ev.severity = severity
        .as_deref()
        .and_then(Level::parse)
        .unwrap_or(Level::Medium);
    ev.original_severity = severity;

    let instance = label("instance");
    let instance_host = instance
        .as_deref()
        .map(strip_port)
        .filter(|h| !h.is_empty());
    ev.host = instance_host
        .map(str::to_string)
        .or_else(|| label("host"))
        .or_else(|| label("hostname"))
        .or_else(|| label("node"));
    if let Some(h) = instance_host {
        push_observable(&mut ev.observables, ip_observable(h));
    }
    ev.occurred_at = alert
        .get("startsAt")
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    let fingerprint = alert
        .get("fingerprint")
        .and_then(value_non_empty)
        .unwrap_or_else(|| labels_fingerprint(labels));
    // one firing episode is one event: its notifications (repeats, then `resolved`) share the
    // fingerprint and `startsAt`; a refire starts a new episode, which a late or retried
    // `resolved` of the earlier one must not close
    ev.dedup_key = Some(
        match alert
            .get("startsAt")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(starts) => format!("alertmanager:{fingerprint}@{starts}"),
            None => format!("alertmanager:{fingerprint}"),
        },
    );
    ev.source_ref = Some(fingerprint);
    let status = alert
        .get("status")
        .and_then(value_non_empty)
        .or_else(|| group.root.get("status").and_then(value_non_empty));
    ev.action = if status.as_deref() == Some("resolved") {
        // the resolution's own time; Alertmanager's zero time (`0001-01-01`) says nothing
        ev.resolved_at = alert
            .get("endsAt")
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
            .filter(|t| t.year() > 1970);
        Action::Resolve
    } else {
        Action::Report
    };

    push_tag(&mut ev.tags, "alertmanager");
    if let Some(r) = &group.receiver {
        push_tag(&mut ev.tags, r);
    }

    // Labels under their own names (what suppression rules refer to), then the context
    // keys where no label has taken the name.
    let mut fields = Map::new();
    for (k, v) in labels {
        if let Some(text) = value_non_empty_raw(v) {
            fields.insert(k.clone(), Value::String(text));
        }
    }
    let mut context = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            fields.entry(k.to_string()).or_insert(Value::String(v));
        }
    };
    context("receiver", group.receiver.clone());
    context("group_key", group.group_key.clone());
    context("status", status);
    context(
        "generator_url",
        alert.get("generatorURL").and_then(value_non_empty),
    );
    context("starts_at", alert.get("startsAt").and_then(value_non_empty));
    context("ends_at", alert.get("endsAt").and_then(value_non_empty));
    context("external_url", group.external_url.clone());
    ev.fields = fields;

    // The alert with the group context it was sent in.
    let mut raw = alert.clone();
    for key in [
        "receiver",
        "groupKey",
        "externalURL",
        "groupLabels",
        "truncatedAlerts",
    ] {
        if let Some(v) = group.root.get(key)
            && !raw.contains_key(key)
        {
            raw.insert(key.to_string(), v.clone());
        }
    }
    if !raw.contains_key("version") {
        raw.insert("version".into(), Value::String("4".into()));
    }
    ev.raw = Value::Object(raw).to_string();
    ev
}
