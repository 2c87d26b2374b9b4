//! TheHive alert creation: TheHive 5 `POST /api/v1/alert` (what thehive4py 2.x
//! `alert.create` posts: `InputAlert` with `observables`) and TheHive 4 `POST /api/alert`
//! (thehive4py 1.x `Alert`, with `artifacts`). Tools that already feed TheHive can feed
//! Firebreak unchanged; [`alert_response`] answers in TheHive 5's `OutputAlert` shape.
//!
//! Multipart bodies (observables with attached files: a `_json` part plus file parts) are
//! the server's business: it hands the `_json` part here.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::jsonutil::{
    any_hash_observable, domain_observable, from_epoch_millis, ip_observable, push_observable,
    push_tag,
};
use crate::{Level, NormalizedEvent, Observable, ObservableKind, ParseError, clean_title};

/// An alert as TheHive's API takes it. Fields Firebreak does not model (`procedures`,
/// `flag`...) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertInput {
    #[serde(rename = "type")]
    pub alert_type: String,
    pub source: String,
    pub source_ref: String,
    pub title: String,
    pub description: String,
    /// 1 low, 2 medium (TheHive's default), 3 high, 4 critical.
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub severity: Option<i64>,
    /// Milliseconds since the epoch.
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<i64>,
    #[serde(default, deserialize_with = "de_string_list")]
    pub tags: Vec<String>,
    /// 0 clear/white, 1 green, 2 amber (default), 3 amber+strict (TheHive 5; red in TheHive
    /// 4), 4 red.
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub tlp: Option<i64>,
    /// 0 clear/white, 1 green, 2 amber (default), 3 red.
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub pap: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// TheHive 5.
    #[serde(
        default,
        deserialize_with = "de_observables",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub observables: Vec<ObservableInput>,
    /// TheHive 4 (and thehive4py 1.x).
    #[serde(
        default,
        deserialize_with = "de_observables",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub artifacts: Vec<ObservableInput>,
    /// TheHive 5 takes a list of `{name, value, order}` or an object `{name: value}`; TheHive
    /// 4 an object `{name: {<type>: value, order}}`. Kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An observable (TheHive 5) or artifact (TheHive 4) of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservableInput {
    pub data_type: String,
    /// A string, or a list of strings (one observable each). TheHive 4 file artifacts hold
    /// `name;mime type;base64 content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "de_string_list")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ioc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighted: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub tlp: Option<i64>,
    #[serde(
        default,
        deserialize_with = "de_opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub pap: Option<i64>,
    /// TheHive 5 file observables: `{name, contentType, id}`, or the multipart key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Integers as TheHive's clients send them: numbers (floats with no fraction too), numeric
/// strings, or null.
fn de_opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(de::Error::custom(format!("{n} is not an integer"))),
        },
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("`{s}` is not an integer"))),
        other => Err(de::Error::custom(format!(
            "expected an integer, found {other}"
        ))),
    }
}

/// A list of strings; null is an empty list, a lone string a list of one.
fn de_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .filter(|v| !v.is_null())
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(de::Error::custom(format!(
                    "expected a string, found {other}"
                ))),
            })
            .collect(),
        other => Err(de::Error::custom(format!(
            "expected a list of strings, found {other}"
        ))),
    }
}

fn de_observables<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ObservableInput>, D::Error> {
    Option::<Vec<ObservableInput>>::deserialize(d).map(Option::unwrap_or_default)
}

const REQUIRED: [&str; 5] = ["type", "source", "sourceRef", "title", "description"];

/// A body that must be a JSON object.
fn object_body(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("body", format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ParseError::new("body", "not a JSON object"));
    }
    Ok(value)
}

/// `value` as a `T`, refused naming the field at fault (its path), or `body`.
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "body".to_string()
        } else {
            path
        };
        ParseError::new(field, e.into_inner().to_string())
    })
}

/// A TheHive alert body to the alert as sent and its event. Refused, naming the field, when
/// a field TheHive requires (`type`, `source`, `sourceRef`, `title`, `description`) is
/// missing, or a value is out of TheHive's range.
pub fn parse(body: &[u8]) -> Result<(AlertInput, NormalizedEvent), ParseError> {
    let value = object_body(body)?;
    let Value::Object(obj) = &value else {
        return Err(ParseError::new("body", "not a JSON object"));
    };
    for field in REQUIRED {
        match obj.get(field) {
            None | Some(Value::Null) => return Err(ParseError::new(field, "missing")),
            Some(Value::String(s)) => {
                if field != "description" && s.trim().is_empty() {
                    return Err(ParseError::new(field, "cannot be empty"));
                }
            }
            Some(_) => return Err(ParseError::new(field, "must be a string")),
        }
    }
    for list in ["observables", "artifacts"] {
        if let Some(Value::Array(items)) = obj.get(list) {
            for (i, item) in items.iter().enumerate() {
                let ok = item
                    .get("dataType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.trim().is_empty());
                if !ok {
                    return Err(ParseError::new(format!("{list}[{i}].dataType"), "missing"));
                }
            }
        }
    }
    let input: AlertInput = typed(&value)?;
    check_range("severity", input.severity, 1, 4)?;
    check_range("tlp", input.tlp, 0, 4)?;
    check_range("pap", input.pap, 0, 3)?;
    let event = to_event(&input, &String::from_utf8_lossy(body));
    Ok((input, event))
}

fn check_range(field: &str, v: Option<i64>, min: i64, max: i64) -> Result<(), ParseError> {
    match v {
        Some(n) if n < min || n > max => Err(ParseError::new(
            field,
            format!("{n} is out of range ({min} to {max})"),
        )),
        _ => Ok(()),
    }
}

/// TheHive severities (1-4) on Firebreak's scale.
pub fn level_from_severity(severity: i64) -> Level {
    match severity {
        i64::MIN..=1 => Level::Low,
        2 => Level::Medium,
        3 => Level::High,
        _ => Level::Critical,
    }
}

fn to_event(input: &AlertInput, raw: &str) -> NormalizedEvent {
    let mut ev = NormalizedEvent::new("sensor", input.source.trim(), clean_title(&input.title));
    ev.source_ref = Some(input.source_ref.clone());
    ev.rule_id = Some(input.alert_type.clone());
    let mut description = input.description.clone();
    if let Some(summary) = input.summary.as_deref().filter(|s| !s.trim().is_empty()) {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str("Summary: ");
        description.push_str(summary);
    }
    ev.description = (!description.trim().is_empty()).then_some(description);
    ev.severity = level_from_severity(input.severity.unwrap_or(2));
    ev.original_severity = input.severity.map(|s| s.to_string());
    ev.occurred_at = input.date.and_then(from_epoch_millis);
    for t in &input.tags {
        push_tag(&mut ev.tags, t);
    }
    ev.dedup_key = Some(format!(
        "thehive:{}|{}|{}",
        input.alert_type, input.source, input.source_ref
    ));
    for o in input.observables.iter().chain(&input.artifacts) {
        for obs in observables_of(o) {
            push_observable(&mut ev.observables, Some(obs));
        }
    }

    let mut f = Map::new();
    f.insert("type".into(), Value::String(input.alert_type.clone()));
    f.insert("tlp".into(), Value::from(input.tlp.unwrap_or(2)));
    f.insert("pap".into(), Value::from(input.pap.unwrap_or(2)));
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            f.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    put("external_link", &input.external_link);
    put("case_template", &input.case_template);
    put("status", &input.status);
    put("assignee", &input.assignee);
    if let Some(cf) = &input.custom_fields {
        for (name, value, _) in custom_fields(cf) {
            f.insert(format!("custom_{}", snake_case(&name)), value);
        }
    }
    ev.fields = f;
    ev.raw = raw.to_string();
    ev
}

/// The observables one TheHive observable stands for (one per `data` value).
pub fn observables_of(o: &ObservableInput) -> Vec<Observable> {
    let data_type = o.data_type.trim().to_ascii_lowercase();
    let values: Vec<String> = match &o.data {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    };
    if data_type == "file" {
        // TheHive 5: the attachment's name; TheHive 4: `name;mime;base64` in `data`.
        let from_attachment = match &o.attachment {
            Some(Value::Object(a)) => a.get("name").and_then(Value::as_str).map(str::to_string),
            Some(Value::Array(items)) => items
                .iter()
                .find_map(|a| a.get("name").and_then(Value::as_str))
                .map(str::to_string),
            _ => None,
        };
        let names: Vec<String> = match from_attachment {
            Some(n) => vec![n],
            None => values
                .iter()
                .filter_map(|v| v.split(';').next().map(str::to_string))
                .collect(),
        };
        let mut out: Vec<Observable> = names
            .into_iter()
            .filter(|n| !n.trim().is_empty())
            .map(|n| Observable::new(ObservableKind::Filename, n.trim()))
            .collect();
        // TheHive 4 (thehive4py 1.x): the content inline, as base64 after the second `;`
        for v in &values {
            let mut parts = v.splitn(3, ';');
            if let (Some(_), Some(_), Some(b64)) = (parts.next(), parts.next(), parts.next()) {
                use base64::Engine;
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                    out.push(file_sha256(&bytes));
                }
            }
        }
        return out;
    }
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| observable_for(&data_type, v))
        .collect()
}

/// The SHA-256 observable of a file's content.
pub fn file_sha256(content: &[u8]) -> Observable {
    use sha2::{Digest, Sha256};
    Observable::new(ObservableKind::Sha256, hex::encode(Sha256::digest(content)))
}

/// The multipart keys of an alert's file observables (TheHive 5: `attachment` names the part
/// that holds the file, as thehive4py's `attachment_map` sends it).
pub fn attachment_keys(input: &AlertInput) -> Vec<String> {
    input
        .observables
        .iter()
        .chain(&input.artifacts)
        .filter(|o| o.data_type.trim().eq_ignore_ascii_case("file"))
        .filter_map(|o| match &o.attachment {
            Some(Value::String(k)) => Some(k.clone()),
            Some(Value::Object(a)) => a
                .get("id")
                .or_else(|| a.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        })
        .collect()
}

fn observable_for(data_type: &str, v: &str) -> Observable {
    let other = || Observable::new(ObservableKind::Other, v);
    // analysts defang what they paste (`hxxps://evil[.]com`): a typed network value is
    // refanged before it is checked, so that it keeps its type and equals the live form
    let live = || crate::observables::refang(v);
    match data_type {
        "ip" => ip_observable(&live()).unwrap_or_else(other),
        "domain" | "fqdn" => domain_observable(&live()).unwrap_or_else(other),
        "url" => {
            let live = live();
            crate::jsonutil::url_observable(&live)
                .unwrap_or_else(|| Observable::new(ObservableKind::Url, live))
        }
        "mail" | "email" | "mail-address" | "mail_address" => {
            Observable::new(ObservableKind::Email, live().to_ascii_lowercase())
        }
        "hash" | "md5" | "sha1" | "sha256" => any_hash_observable(v).unwrap_or_else(other),
        "filename" => Observable::new(ObservableKind::Filename, v),
        "hostname" => Observable::new(ObservableKind::Hostname, live().to_ascii_lowercase()),
        "cve" => Observable::new(ObservableKind::Cve, v.to_ascii_uppercase()),
        "user" | "username" | "user-account" | "user_account" | "account" => {
            Observable::new(ObservableKind::User, v)
        }
        _ => other(),
    }
}

/// Custom fields as `(name, value, order)`, from each of the shapes TheHive takes.
fn custom_fields(cf: &Value) -> Vec<(String, Value, Option<i64>)> {
    const TYPED: [&str; 6] = ["string", "integer", "float", "number", "boolean", "date"];
    match cf {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| {
                let name = item.get("name")?.as_str()?.to_string();
                let value = item.get("value").cloned().unwrap_or(Value::Null);
                let order = item.get("order").and_then(Value::as_i64);
                Some((name, value, order))
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(name, v)| match v {
                Value::Object(inner) if TYPED.iter().any(|t| inner.contains_key(*t)) => {
                    let value = TYPED
                        .iter()
                        .find_map(|t| inner.get(*t).filter(|x| !x.is_null()))
                        .cloned()
                        .unwrap_or(Value::Null);
                    (
                        name.clone(),
                        value,
                        inner.get("order").and_then(Value::as_i64),
                    )
                }
                other => (name.clone(), other.clone(), None),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `businessImpact` → `business_impact`; anything but letters and digits becomes `_`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = true;
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    out.trim_matches('_').to_string()
}

fn severity_label(s: i64) -> &'static str {
    match s {
        i64::MIN..=1 => "LOW",
        2 => "MEDIUM",
        3 => "HIGH",
        _ => "CRITICAL",
    }
}

/// TheHive 5's TLP labels (TLP 2.0).
fn tlp_label(t: i64) -> &'static str {
    match t {
        i64::MIN..=0 => "CLEAR",
        1 => "GREEN",
        2 => "AMBER",
        3 => "AMBER+STRICT",
        _ => "RED",
    }
}

fn pap_label(p: i64) -> &'static str {
    match p {
        i64::MIN..=0 => "CLEAR",
        1 => "GREEN",
        2 => "AMBER",
        _ => "RED",
    }
}

/// TheHive's alert stage for a status: `New`, `InProgress`, `Imported`, or `Closed` (the
/// closing statuses).
fn stage_of(status: &str) -> &'static str {
    match status {
        "New" => "New",
        "InProgress" => "InProgress",
        "Imported" => "Imported",
        _ => "Closed",
    }
}

/// The created alert as TheHive 5 answers `POST /api/v1/alert` (its `OutputAlert`): what
/// thehive4py and other clients read back (`_id` first of all).
pub fn alert_response(
    id: &str,
    input: &AlertInput,
    created_at_ms: i64,
    created_by: &str,
    status: &str,
) -> Value {
    let severity = input.severity.unwrap_or(2);
    let tlp = input.tlp.unwrap_or(2);
    let pap = input.pap.unwrap_or(2);
    let date = input.date.unwrap_or(created_at_ms);
    let observable_count: usize = input
        .observables
        .iter()
        .chain(&input.artifacts)
        .map(|o| match &o.data {
            Some(Value::Array(items)) => items.len().max(1),
            _ => 1,
        })
        .sum();
    let custom: Vec<Value> = input
        .custom_fields
        .as_ref()
        .map(custom_fields)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (name, value, order))| {
            json!({ "name": name, "value": value, "order": order.unwrap_or(i as i64) })
        })
        .collect();
    let mut out = json!({
        "_id": id,
        "_type": "Alert",
        "_createdBy": created_by,
        "_createdAt": created_at_ms,
        // TheHive 4's v0 API (`/api/alert`, thehive4py 1.x) names them without the underscore
        "id": id,
        "createdBy": created_by,
        "createdAt": created_at_ms,
        "type": input.alert_type,
        "source": input.source,
        "sourceRef": input.source_ref,
        "title": input.title,
        "description": input.description,
        "severity": severity,
        "severityLabel": severity_label(severity),
        "date": date,
        "tags": input.tags,
        "tlp": tlp,
        "tlpLabel": tlp_label(tlp),
        "pap": pap,
        "papLabel": pap_label(pap),
        "follow": true,
        "customFields": custom,
        "observableCount": observable_count,
        "caseId": Value::Null,
        "status": status,
        "stage": stage_of(status),
        "extraData": {},
        "newDate": created_at_ms,
        "timeToDetect": created_at_ms.saturating_sub(date).max(0),
    });
    if let Value::Object(map) = &mut out {
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(k.to_string(), Value::String(v.clone()));
            }
        };
        opt("externalLink", &input.external_link);
        opt("caseTemplate", &input.case_template);
        opt("summary", &input.summary);
        opt("assignee", &input.assignee);
    }
    out
}

// ---- cases ----

/// A TheHive case as clients create or update it (`POST /api/v1/case`, `PATCH
/// /api/v1/case/{id}`, and TheHive 4's `/api/case`): Kibana's TheHive connector in case mode,
/// Velociraptor's `Server.Alerts.TheHive.Case`, thehive4py. Every field is optional here
/// (an update names what changes; `null` reads as absent, and the server takes an
/// `"assignee": null` as unassigning); [`parse_case`] checks what
/// a creation needs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseInput {
    #[serde(default, deserialize_with = "de_opt_string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub severity: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub tlp: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub pap: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string_list")]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub summary: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub assignee: Option<String>,
    #[serde(default, deserialize_with = "de_observables")]
    pub observables: Vec<ObservableInput>,
    /// Everything else TheHive takes (`flag`, `startDate`, `customFields`, `caseTemplate`,
    /// `tasks`...): accepted, not stored on the ticket.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::custom(format!(
            "expected a string, found {other}"
        ))),
    }
}

fn de_opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    de_string_list(v).map(Some).map_err(de::Error::custom)
}

/// A case body (`create`: a creation, which needs a `title`), refused naming the field.
pub fn parse_case(body: &[u8], create: bool) -> Result<CaseInput, ParseError> {
    let input: CaseInput = typed(&object_body(body)?)?;
    match &input.title {
        None if create => return Err(ParseError::new("title", "missing")),
        Some(t) if t.trim().is_empty() => return Err(ParseError::new("title", "cannot be empty")),
        _ => {}
    }
    check_range("severity", input.severity, 1, 4)?;
    check_range("tlp", input.tlp, 0, 4)?;
    check_range("pap", input.pap, 0, 3)?;
    for (i, o) in input.observables.iter().enumerate() {
        if o.data_type.trim().is_empty() {
            return Err(ParseError::new(
                format!("observables[{i}].dataType"),
                "missing",
            ));
        }
    }
    Ok(input)
}

/// The observables a TheHive observable body stands for (`POST /api/v1/case/{id}/observable`,
/// TheHive 4's `/api/case/{id}/artifact`; `data` a value or a list): one per value, typed by
/// its `dataType` (a value that is not what its type says is kept as `other`).
pub fn parse_observable(body: &[u8]) -> Result<(ObservableInput, Vec<Observable>), ParseError> {
    let value = object_body(body)?;
    if value
        .get("dataType")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        return Err(ParseError::new("dataType", "missing"));
    }
    let input: ObservableInput = typed(&value)?;
    check_range("tlp", input.tlp, 0, 4)?;
    check_range("pap", input.pap, 0, 3)?;
    let found = observables_of(&input);
    if found.is_empty() {
        return Err(ParseError::new("data", "missing or empty"));
    }
    Ok((input, found))
}

/// The tags a case's TLP and PAP are kept as on the ticket (`tlp:amber`, `pap:green`), as
/// MISP and TheHive's own exports write them.
pub fn tlp_pap_tags(tlp: Option<i64>, pap: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = tlp {
        out.push(format!("tlp:{}", tlp_label(t).to_ascii_lowercase()));
    }
    if let Some(p) = pap {
        out.push(format!("pap:{}", pap_label(p).to_ascii_lowercase()));
    }
    out
}

/// TLP and PAP read back from tags that [`tlp_pap_tags`] wrote (2, AMBER, when there are none).
pub fn tlp_pap_of(tags: &[String]) -> (i64, i64) {
    let find = |prefix: &str, labels: &dyn Fn(i64) -> &'static str, max: i64| {
        tags.iter()
            .filter_map(|t| t.strip_prefix(prefix))
            .find_map(|l| (0..=max).find(|&n| labels(n).eq_ignore_ascii_case(l)))
            .unwrap_or(2)
    };
    (find("tlp:", &tlp_label, 4), find("pap:", &pap_label, 3))
}

/// What a case answer is made of: a Firebreak ticket, in TheHive's terms.
#[derive(Debug, Clone)]
pub struct CaseView<'a> {
    pub id: &'a str,
    pub number: i64,
    pub title: &'a str,
    pub description: &'a str,
    /// 1 (low) to 4 (critical).
    pub severity: i64,
    pub tags: &'a [String],
    /// TheHive's status (`New`, `InProgress`, `TruePositive`, `FalsePositive`, `Other`...).
    pub status: &'a str,
    pub assignee: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub created_by: &'a str,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When it was closed.
    pub end_date_ms: Option<i64>,
}

/// A case as TheHive 5 answers for it (`OutputCase`; what Kibana's connector checks: `_id`,
/// `_type`, `number`, `title`, `severity`, `startDate`, `tlp`, `pap`, `status`, `stage`...),
/// with TheHive 4's unprefixed `id`, `createdBy`, `createdAt` too.
pub fn case_response(c: &CaseView<'_>) -> Value {
    let (tlp, pap) = tlp_pap_of(c.tags);
    let stage = match c.status {
        "New" => "New",
        "InProgress" => "InProgress",
        _ => "Closed",
    };
    json!({
        "_id": c.id,
        "_type": "Case",
        "_createdBy": c.created_by,
        "_createdAt": c.created_at_ms,
        "_updatedAt": c.updated_at_ms,
        "id": c.id,
        "createdBy": c.created_by,
        "createdAt": c.created_at_ms,
        "updatedAt": c.updated_at_ms,
        "caseId": c.number,
        "number": c.number,
        "title": c.title,
        "description": c.description,
        "severity": c.severity,
        "severityLabel": severity_label(c.severity),
        "startDate": c.created_at_ms,
        "endDate": c.end_date_ms,
        "tags": c.tags,
        "flag": false,
        "tlp": tlp,
        "tlpLabel": tlp_label(tlp),
        "pap": pap,
        "papLabel": pap_label(pap),
        "status": c.status,
        "stage": stage,
        "summary": c.summary,
        "assignee": c.assignee,
        "customFields": [],
        "extraData": {},
        "newDate": c.created_at_ms,
        "inProgressDate": Value::Null,
        "closedDate": c.end_date_ms,
        "timeToDetect": 0,
    })
}

/// An observable as TheHive answers for one (`OutputObservable`).
pub fn observable_response(
    id: &str,
    o: &Observable,
    input: &ObservableInput,
    created_by: &str,
    created_at_ms: i64,
) -> Value {
    let tlp = input.tlp.unwrap_or(2);
    let pap = input.pap.unwrap_or(2);
    json!({
        "_id": id,
        "_type": "Observable",
        "_createdBy": created_by,
        "_createdAt": created_at_ms,
        "id": id,
        "createdBy": created_by,
        "createdAt": created_at_ms,
        "dataType": input.data_type,
        "data": o.value,
        "message": input.message,
        "startDate": created_at_ms,
        "tlp": tlp,
        "tlpLabel": tlp_label(tlp),
        "pap": pap,
        "papLabel": pap_label(pap),
        "tags": input.tags,
        "ioc": input.ioc.unwrap_or(false),
        "sighted": input.sighted.unwrap_or(false),
        "reports": {},
        "extraData": {},
        "ignoreSimilarity": false,
    })
}

// ---- TheHive 4's TLP scale ----
//
// TheHive 4 (the v0 API: `/api/alert`, `/api/case`; thehive4py 1.x) numbers TLP 0 WHITE,
// 1 GREEN, 2 AMBER, 3 RED; TheHive 5 (`/api/v1`) follows TLP 2.0: 0 CLEAR, 1 GREEN, 2 AMBER,
// 3 AMBER+STRICT, 4 RED. Firebreak keeps TheHive 5's scale; a v0 client's 3 is RED, and it
// reads RED (and AMBER+STRICT, which it has no name for: the stricter side) back as 3.

/// A TLP as a TheHive 4 client means it, on TheHive 5's scale.
pub fn tlp_from_v0(tlp: i64) -> i64 {
    if tlp >= 3 { 4 } else { tlp }
}

/// A TheHive answer (alert or case) on TheHive 4's TLP scale, for a v0 client.
pub fn answer_for_v0(answer: &mut Value) {
    if let Some(t) = answer.get("tlp").and_then(Value::as_i64) {
        let (n, label) = match t {
            i64::MIN..=0 => (0, "WHITE"),
            1 => (1, "GREEN"),
            2 => (2, "AMBER"),
            _ => (3, "RED"),
        };
        answer["tlp"] = json!(n);
        answer["tlpLabel"] = json!(label);
    }
}
