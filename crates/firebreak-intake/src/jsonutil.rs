//! Helpers shared by the JSON adapters (EVE, Wazuh, Alertmanager, TheHive, HEC, webhook):
//! lenient scalar deserialization, timestamp parsing, observable canonicalization.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::{Level, Observable, ObservableKind};

/// A JSON value where a scalar is expected, read without failing on the "wrong" type: strings
/// borrow from the input when they can, arrays and objects are skipped (and become `Other`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    /// An array or object, skipped.
    Other,
}

impl<'a> Scalar<'a> {
    /// The value as text (numbers and booleans formatted), `None` for null, arrays, objects.
    pub(crate) fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Scalar::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Scalar::Int(n) => Some(Cow::Owned(n.to_string())),
            Scalar::UInt(n) => Some(Cow::Owned(n.to_string())),
            Scalar::Float(f) => Some(Cow::Owned(format_float(*f))),
            Scalar::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Scalar::Null | Scalar::Other => None,
        }
    }

    /// Non-empty text (after trimming), as an owned string.
    pub(crate) fn non_empty(&self) -> Option<String> {
        self.text().and_then(|t| {
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_string())
        })
    }

    /// The value as an integer: integral numbers, or strings holding one.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(n) => Some(*n),
            Scalar::UInt(n) => i64::try_from(*n).ok(),
            Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a float: any number, or a string holding one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(n) => Some(*n as f64),
            Scalar::UInt(n) => Some(*n as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// The value as JSON: numbers stay numbers, strings stay strings.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s.to_string()),
            Scalar::Int(n) => Value::from(*n),
            Scalar::UInt(n) => Value::from(*n),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Null | Scalar::Other => Value::Null,
        }
    }

    /// As JSON, but a string holding an integer becomes a number (ports sent as `"443"`).
    pub(crate) fn to_json_number_if_int(&self) -> Value {
        match self {
            Scalar::Str(s) => match s.trim().parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(s.to_string()),
            },
            other => other.to_json(),
        }
    }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A string where a string is expected, borrowed from the input when it has no escapes
/// (serde's own `Option<Cow<str>>` always copies). Numbers and booleans are read as their
/// text; null, arrays and objects as nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Text<'a>(pub(crate) Option<Cow<'a, str>>);

impl Text<'_> {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Str(s) => Some(s),
            Scalar::Null | Scalar::Other => None,
            other => other.text().map(|t| Cow::Owned(t.into_owned())),
        }))
    }
}

/// A list of scalars where a list is expected; a lone scalar counts as a one-element list and
/// anything else as an empty one (Wazuh and EVE metadata are not always arrays).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ScalarList<'a>(pub(crate) Vec<Scalar<'a>>);

struct ScalarListVisitor;

impl<'de> Visitor<'de> for ScalarListVisitor {
    type Value = ScalarList<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array or scalar")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Scalar<'de>>()? {
            if !matches!(v, Scalar::Null | Scalar::Other) {
                out.push(v);
            }
        }
        Ok(ScalarList(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ScalarList(Vec::new()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::Bool(v)]))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::Int(v)]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::UInt(v)]))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::Float(v)]))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::Str(Cow::Borrowed(v))]))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ScalarList(vec![Scalar::Str(Cow::Owned(v.to_string()))]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ScalarList(Vec::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ScalarList(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarListVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ScalarList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarListVisitor)
    }
}

impl ScalarList<'_> {
    /// The non-empty text values, trimmed.
    pub(crate) fn texts(&self) -> Vec<String> {
        self.0.iter().filter_map(Scalar::non_empty).collect()
    }
}

/// Text of a JSON value when it is a scalar (numbers and booleans formatted).
pub(crate) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Non-empty (trimmed) text of a scalar JSON value.
pub(crate) fn value_non_empty(v: &Value) -> Option<String> {
    value_text(v).and_then(|s| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_string())
    })
}

/// Parses the timestamps the JSON sources write: RFC 3339 (`2024-05-13T09:21:08.123Z`), and
/// the ISO 8601 variants Suricata and Wazuh use (`2025-03-01T12:34:56.123456+0000`: offset
/// without a colon), with a space instead of `T`, or without an offset (read as UTC).
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.len() < 10 || s.len() > 64 || !s.is_ascii() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let bytes = s.as_bytes();
    // Date part: YYYY-MM-DD, then 'T', 't' or ' ' and the time.
    if bytes.len() < 19 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push_str(&s[..10]);
    out.push('T');
    let rest = &s[11..];
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    // Split the time from the offset: the offset starts at 'Z', '+' or the '-' after the time.
    let split = rest
        .char_indices()
        .find(|&(i, c)| c == 'Z' || c == 'z' || c == '+' || (c == '-' && i >= 8))
        .map(|(i, _)| i);
    let (time_part, offset) = match split {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    out.push_str(time_part.trim_end());
    let offset = offset.trim();
    match offset {
        "" | "Z" | "z" => out.push('Z'),
        o => {
            let (sign, digits) = o.split_at(1);
            let digits: String = digits.chars().filter(|c| *c != ':').collect();
            if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(sign);
                out.push_str(&digits);
                out.push_str(":00");
            } else if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(sign);
                out.push_str(&digits[..2]);
                out.push(':');
                out.push_str(&digits[2..]);
            } else {
                return None;
            }
        }
    }
    OffsetDateTime::parse(&out, &Rfc3339).ok()
}

/// Seconds since the epoch (with fractions) as a time, when representable.
pub(crate) fn from_epoch_secs(secs: f64) -> Option<OffsetDateTime> {
    if !secs.is_finite() || secs.abs() > 253_402_300_799.0 {
        return None;
    }
    let whole = secs.trunc();
    // Senders give milli- or microseconds; an f64 holds epoch seconds to about 0.2 µs, so
    // round to the microsecond rather than keep the float's noise.
    let nanos = ((secs - whole) * 1e6).round() as i64 * 1000;
    OffsetDateTime::from_unix_timestamp(whole as i64)
        .ok()
        .and_then(|t| t.checked_add(Duration::nanoseconds(nanos)))
}

/// Milliseconds since the epoch as a time, when representable.
pub(crate) fn from_epoch_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// An epoch number of unknown unit: seconds below 1e11 (year 5138), milliseconds below 1e14,
/// microseconds below 1e17, nanoseconds above.
pub(crate) fn from_epoch_auto(n: f64) -> Option<OffsetDateTime> {
    let a = n.abs();
    if a < 1e11 {
        from_epoch_secs(n)
    } else if a < 1e14 {
        from_epoch_secs(n / 1e3)
    } else if a < 1e17 {
        from_epoch_secs(n / 1e6)
    } else {
        from_epoch_secs(n / 1e9)
    }
}

/// A time from a JSON value: a timestamp string (or a numeric string), or an epoch number.
pub(crate) fn time_from_value(v: &Value) -> Option<OffsetDateTime> {
    match v {
        Value::String(s) => {
            parse_timestamp(s).or_else(|| s.trim().parse::<f64>().ok().and_then(from_epoch_auto))
        }
        Value::Number(n) => n.as_f64().and_then(from_epoch_auto),
        _ => None,
    }
}

/// Severity from a number on an unknown scale, by the key it came under: `priority` counts
/// down (P1 is the most urgent: 1 critical, 2 high, 3 medium, 4+ low); `severity`, `level`
/// and others count up on the CVSS 0-10 ranges (below 4 low, below 7 medium, below 9 high,
/// else critical).
pub(crate) fn level_from_number(key: &str, n: f64) -> Level {
    if key.eq_ignore_ascii_case("priority") {
        match n {
            x if x <= 1.0 => Level::Critical,
            x if x <= 2.0 => Level::High,
            x if x <= 3.0 => Level::Medium,
            _ => Level::Low,
        }
    } else {
        match n {
            x if x < 4.0 => Level::Low,
            x if x < 7.0 => Level::Medium,
            x if x < 9.0 => Level::High,
            _ => Level::Critical,
        }
    }
}

/// Severity from a JSON value (a level name, a number, or a numeric string); see
/// [`level_from_number`] for numbers.
pub(crate) fn level_from_value(key: &str, v: &Value) -> Option<Level> {
    match v {
        Value::String(s) => Level::parse(s).or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|n| level_from_number(key, n))
        }),
        Value::Number(n) => n.as_f64().map(|n| level_from_number(key, n)),
        _ => None,
    }
}

/// An IP observable when `s` is an IP address (canonical text form).
pub(crate) fn ip_observable(s: &str) -> Option<Observable> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    let value = match t.parse::<IpAddr>().ok()? {
        // the parser takes IPv4 in dotted-quad decimal only, without leading zeros: the text
        // is already canonical
        IpAddr::V4(_) => t.to_string(),
        IpAddr::V6(ip) => ip.to_string(),
    };
    Some(Observable::new(ObservableKind::Ip, value))
}

/// A hash observable when `s` is hex of the kind's length, lowercased.
pub(crate) fn hash_observable(kind: ObservableKind, s: &str) -> Option<Observable> {
    let t = s.trim();
    let len = match kind {
        ObservableKind::Md5 => 32,
        ObservableKind::Sha1 => 40,
        ObservableKind::Sha256 => 64,
        _ => return None,
    };
    (t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Observable::new(kind, t.to_ascii_lowercase()))
}

/// A hash observable of whichever kind fits the length (32, 40 or 64 hex digits).
pub(crate) fn any_hash_observable(s: &str) -> Option<Observable> {
    let kind = match s.trim().len() {
        32 => ObservableKind::Md5,
        40 => ObservableKind::Sha1,
        64 => ObservableKind::Sha256,
        _ => return None,
    };
    hash_observable(kind, s)
}

/// A domain (or, for an IP literal, an IP) observable from a host name: lowercased, without a
/// trailing dot; `None` when it cannot be a DNS name.
pub(crate) fn domain_observable(s: &str) -> Option<Observable> {
    let t = s.trim().trim_end_matches('.');
    if let Some(ip) = ip_observable(t) {
        return Some(ip);
    }
    let valid = !t.is_empty()
        && t.len() <= 253
        && t.contains('.')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !t.starts_with('.')
        && !t.contains("..");
    valid.then(|| Observable::new(ObservableKind::Domain, t.to_ascii_lowercase()))
}

/// A URL observable when `s` is an absolute http(s)/ftp URL.
pub(crate) fn url_observable(s: &str) -> Option<Observable> {
    let t = s.trim();
    let lower = t.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let absolute = lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("ftp://");
    (absolute && !t.contains(char::is_whitespace)).then(|| Observable::new(ObservableKind::Url, t))
}

/// An observable of the given kind from a value, canonicalized and checked where the kind has
/// a form (IP, hashes, domains, URLs, CVE ids); `None` when the value does not fit.
pub(crate) fn observable_of_kind(kind: ObservableKind, s: &str) -> Option<Observable> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match kind {
        ObservableKind::Ip => ip_observable(t),
        ObservableKind::Md5 | ObservableKind::Sha1 | ObservableKind::Sha256 => {
            hash_observable(kind, t)
        }
        ObservableKind::Domain => match domain_observable(t) {
            Some(o) if o.kind == ObservableKind::Domain => Some(o),
            _ => None,
        },
        ObservableKind::Hostname => Some(Observable::new(kind, t.to_ascii_lowercase())),
        ObservableKind::Url => url_observable(t),
        ObservableKind::Email => {
            (t.contains('@') && !t.contains(char::is_whitespace)).then(|| Observable::new(kind, t))
        }
        ObservableKind::Cve => {
            let up = t.to_ascii_uppercase();
            up.starts_with("CVE-").then(|| Observable::new(kind, up))
        }
        ObservableKind::Filename | ObservableKind::User | ObservableKind::Other => {
            Some(Observable::new(kind, t))
        }
    }
}

/// Adds an observable unless an equal one is already there.
pub(crate) fn push_observable(list: &mut Vec<Observable>, o: Option<Observable>) {
    if let Some(o) = o
        && !list.contains(&o)
    {
        list.push(o);
    }
}

/// Adds a tag unless it is empty or already there.
pub(crate) fn push_tag(list: &mut Vec<String>, tag: &str) {
    let t = tag.trim();
    if !t.is_empty() && !list.iter().any(|x| x == t) {
        list.push(t.to_string());
    }
}

/// The host part of `host:port`, `[v6]:port`, a bare IPv6 address, or a URL's authority.
pub(crate) fn strip_port(s: &str) -> &str {
    let mut t = s.trim();
    if let Some(i) = t.find("://") {
        t = &t[i + 3..];
        if let Some(end) = t.find(['/', '?', '#']) {
            t = &t[..end];
        }
        if let Some(at) = t.rfind('@') {
            t = &t[at + 1..];
        }
    }
    if let Some(rest) = t.strip_prefix('[') {
        return rest.find(']').map_or(rest, |end| &rest[..end]);
    }
    // More than one colon: a bare IPv6 address, no port.
    if t.matches(':').count() == 1
        && let Some((host, port)) = t.split_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return host;
    }
    t
}

/// At most `max` characters of `s` (cut on a character boundary).
/// A title for a record that names none: `prefix: ` and the record's own content (its scalar
/// top-level values as `key=value`, in key order; a non-object record as JSON), at most about
/// 200 characters. Records without a title field must not share one title: the dedup
/// fingerprint of an event without a rule id is made of its title, host and addresses, so a
/// fixed title would count unrelated records as repeats of the first.
pub(crate) fn content_title(prefix: &str, record: &Value) -> String {
    const MAX: usize = 200;
    let mut out = format!("{prefix}: ");
    let start = out.len();
    match record {
        Value::Object(obj) => {
            for (k, v) in obj {
                let text = match v {
                    Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                if out.len() > start {
                    out.push(' ');
                }
                out.push_str(k);
                out.push('=');
                out.push_str(&text);
                if out.len() - start >= MAX {
                    break;
                }
            }
            if out.len() == start {
                // only nested values: the JSON itself
                out.push_str(truncate_chars(&record.to_string(), MAX));
            }
        }
        other => out.push_str(truncate_chars(&other.to_string(), MAX)),
    }
    let cut = truncate_chars(&out[start..], MAX).len();
    out.truncate(start + cut);
    out
}

pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_titles_tell_records_apart() {
        let a = content_title(
            "HEC event",
            &serde_json::json!({"action": "blocked", "n": 1}),
        );
        assert_eq!(a, "HEC event: action=blocked n=1");
        let b = content_title(
            "HEC event",
            &serde_json::json!({"action": "allowed", "n": 1}),
        );
        assert_ne!(a, b);
        let nested = content_title("x", &serde_json::json!({"result": {"k": "v"}}));
        assert_eq!(nested, r#"x: {"result":{"k":"v"}}"#);
        let long = content_title("x", &serde_json::json!({"a": "é".repeat(500)}));
        assert_eq!(long.chars().count(), "x: ".len() + 200);
        assert_eq!(content_title("x", &serde_json::json!([1, 2])), "x: [1,2]");
    }

    #[test]
    fn ip_observables_are_canonical() {
        let v = |s: &str| ip_observable(s).map(|o| o.value);
        assert_eq!(v("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(v(" 10.1.2.3 ").as_deref(), Some("10.1.2.3"));
        // leading zeros (octal in some parsers) and short forms are no IPv4 text at all
        assert_eq!(v("010.1.2.3"), None);
        assert_eq!(v("10.1.2"), None);
        assert_eq!(v("2001:DB8:0:0:0:0:0:1").as_deref(), Some("2001:db8::1"));
        assert_eq!(v("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(v("::ffff:10.1.2.3").as_deref(), Some("::ffff:10.1.2.3"));
        for s in ["1.2.3.4", "255.255.255.255", "0.0.0.0", "192.168.010.1"] {
            if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
                assert_eq!(ip.to_string(), s, "a parsed IPv4 is its canonical text");
            }
        }
    }

    #[test]
    fn titles_are_cleaned_whatever_their_shape() {
        use crate::clean_title;
        assert_eq!(clean_title("ET SCAN Nmap"), "ET SCAN Nmap");
        assert_eq!(clean_title("  ET  SCAN\tNmap \n"), "ET SCAN Nmap");
        assert_eq!(clean_title("a\u{a0}b"), "a b");
        assert_eq!(clean_title(" "), "(untitled event)");
        assert_eq!(clean_title(""), "(untitled event)");
        let long = "é".repeat(400);
        assert_eq!(clean_title(&long).chars().count(), 300);
        let exactly = "x".repeat(300);
        assert_eq!(clean_title(&exactly), exactly);
    }

    #[test]
    fn timestamps_in_the_formats_sources_use() {
        let t = parse_timestamp("2025-03-01T12:34:56.123456+0000").unwrap();
        assert_eq!(t.unix_timestamp(), 1_740_832_496);
        assert_eq!(t.microsecond(), 123_456);
        let t = parse_timestamp("2016-01-11T05:10:54.612110-0800").unwrap();
        assert_eq!(t.offset().whole_hours(), -8);
        assert_eq!(t.unix_timestamp(), 1_452_517_854);
        assert!(parse_timestamp("2024-05-13T09:21:08.123+0000").is_some());
        assert!(parse_timestamp("2024-05-13T09:21:08.123456789Z").is_some());
        assert!(parse_timestamp("2024-05-13 09:21:08+02:00").is_some());
        assert_eq!(
            parse_timestamp("2009-11-24T21:27:09.534255")
                .unwrap()
                .unix_timestamp(),
            1_259_098_029
        );
        assert!(parse_timestamp("2024-05-13T09:21:08+2").is_none());
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2024-05-13T").is_none());
        assert!(parse_timestamp("2024-05-13Té9:21:08Z").is_none());
    }

    #[test]
    fn epochs() {
        assert_eq!(
            from_epoch_auto(1_426_279_439.0).unwrap().unix_timestamp(),
            1_426_279_439
        );
        assert_eq!(
            from_epoch_auto(1_426_279_439_123.0).unwrap().millisecond(),
            123
        );
        assert!(from_epoch_secs(f64::NAN).is_none());
        assert!(from_epoch_secs(1e300).is_none());
        assert!(from_epoch_millis(i64::MAX).is_none());
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.1:9100"), "10.0.0.1");
        assert_eq!(strip_port("[2001:db8::1]:9100"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("node-1.example.com"), "node-1.example.com");
        assert_eq!(
            strip_port("https://user@www.example.com:8443/health?x"),
            "www.example.com"
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 10), "hi");
    }
}
