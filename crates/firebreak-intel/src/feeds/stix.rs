//! STIX 2.1: bundles, bare objects and arrays of objects.
//!
//! Taken: `indicator` objects with a STIX pattern (every `=` or `IN` comparison on a supported
//! object path), the cyber-observable objects `ipv4-addr`, `ipv6-addr`, `domain-name`, `url`,
//! `email-addr` and `file` (its MD5, SHA-1 and SHA-256 hashes), and `vulnerability` objects
//! with a `cve` external reference. Other objects (identities, malware, relationships,
//! reports...) are not indicators and are passed over without being counted.

use std::collections::HashMap;

use firebreak_intake::ObservableKind;
use serde_json::Value;

use super::pattern::{self, Comparison, Literal};
use super::{Collector, Meta, parse_timestamp, text};

pub(super) fn parse(bytes: &[u8], out: &mut Collector<'_>) -> Result<(), String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a STIX document: {e}"))?;
    let objects: Vec<&Value> = match &doc {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("bundle") => {
            match o.get("objects") {
                Some(Value::Array(items)) => items.iter().collect(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err("the bundle's \"objects\" is not an array".to_string()),
            }
        }
        Value::Object(o) if o.get("type").is_some_and(Value::is_string) => vec![&doc],
        _ => {
            return Err(
                "not a STIX document: expected a bundle, an object with a \"type\", or an array"
                    .to_string(),
            );
        }
    };
    let identities: HashMap<&str, &str> = objects
        .iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("identity"))
        .filter_map(|o| {
            Some((
                o.get("id")?.as_str()?,
                o.get("name")?
                    .as_str()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())?,
            ))
        })
        .collect();
    for (i, object) in objects.iter().enumerate() {
        let position = format!("objects[{i}]");
        let Some(kind) = object.get("type").and_then(Value::as_str) else {
            out.error(position, "not a STIX object: no \"type\"");
            continue;
        };
        let meta = match meta(object, &identities, out) {
            Ok(meta) => meta,
            Err(message) => {
                if is_candidate(kind) {
                    out.error(position, message);
                }
                continue;
            }
        };
        match kind {
            "indicator" => indicator(object, &position, &meta, out),
            "ipv4-addr" | "ipv6-addr" => {
                observable(object, &position, ObservableKind::Ip, &meta, out)
            }
            "domain-name" => observable(object, &position, ObservableKind::Domain, &meta, out),
            "url" => observable(object, &position, ObservableKind::Url, &meta, out),
            "email-addr" => observable(object, &position, ObservableKind::Email, &meta, out),
            "file" => file(object, &position, &meta, out),
            "vulnerability" => vulnerability(object, &position, &meta, out),
            _ => {}
        }
    }
    Ok(())
}

fn is_candidate(kind: &str) -> bool {
    matches!(
        kind,
        "indicator"
            | "ipv4-addr"
            | "ipv6-addr"
            | "domain-name"
            | "url"
            | "email-addr"
            | "file"
            | "vulnerability"
    )
}

/// Confidence, source, description and validity shared by the indicators of one object.
fn meta(
    object: &Value,
    identities: &HashMap<&str, &str>,
    out: &Collector<'_>,
) -> Result<Meta, String> {
    let confidence = match object.get("confidence") {
        None | Some(Value::Null) => out.options.default_confidence,
        Some(v) => v
            .as_i64()
            .filter(|c| (0..=100).contains(c))
            .and_then(|c| i32::try_from(c).ok())
            .ok_or_else(|| format!("confidence must be an integer 0-100, got {v}"))?,
    };
    let valid_until = match object.get("valid_until") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(parse_timestamp)
                .ok_or_else(|| format!("valid_until is not an RFC 3339 timestamp: {v}"))?,
        ),
    };
    let source = object
        .get("created_by_ref")
        .and_then(Value::as_str)
        .and_then(|r| identities.get(r))
        .map_or_else(|| out.options.default_source.clone(), |n| (*n).to_string());
    let description = text(object.get("name").and_then(Value::as_str))
        .or_else(|| text(object.get("description").and_then(Value::as_str)));
    Ok(Meta {
        confidence,
        source,
        description,
        valid_until,
    })
}

fn indicator(object: &Value, position: &str, meta: &Meta, out: &mut Collector<'_>) {
    if object.get("revoked").and_then(Value::as_bool) == Some(true) || out.expired(meta.valid_until)
    {
        out.skip();
        return;
    }
    match object.get("pattern_type").and_then(Value::as_str) {
        None | Some("stix") => {}
        Some(_) => {
            out.skip();
            return;
        }
    }
    let Some(pattern) = object.get("pattern").and_then(Value::as_str) else {
        out.error(position, "indicator without a \"pattern\"");
        return;
    };
    let comparisons = match pattern::comparisons(pattern) {
        Ok(c) => c,
        Err(e) => {
            out.error(position, format!("invalid pattern: {e}"));
            return;
        }
    };
    for c in comparisons {
        let Some(kind) = kind_of_path(&c) else {
            out.skip();
            continue;
        };
        if c.negated || !matches!(c.operator.as_str(), "=" | "IN") {
            out.skip();
            continue;
        }
        for value in &c.values {
            match value {
                Literal::Str(v) => out.add_value(position, kind, v, meta, " (in the pattern)"),
                Literal::Other(_) => out.skip(),
            }
        }
    }
}

/// The observable kind a comparison's object path holds, when it is one indicators use.
fn kind_of_path(c: &Comparison) -> Option<ObservableKind> {
    let path: Vec<String> = c.path.iter().map(|p| p.to_ascii_lowercase()).collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match (c.object_type.as_str(), path.as_slice()) {
        ("ipv4-addr" | "ipv6-addr", ["value"]) => ObservableKind::Ip,
        ("domain-name", ["value"]) => ObservableKind::Domain,
        ("url", ["value"]) => ObservableKind::Url,
        ("email-addr", ["value"]) => ObservableKind::Email,
        ("email-message", ["from_ref" | "sender_ref", "value"]) => ObservableKind::Email,
        ("file", ["hashes", hash]) => hash_kind(hash)?,
        ("file", ["name"]) => ObservableKind::Filename,
        _ => return None,
    })
}

/// `MD5`, `SHA-1`, `SHA-256` (any case, with or without the dash).
fn hash_kind(name: &str) -> Option<ObservableKind> {
    match name.to_ascii_lowercase().as_str() {
        "md5" => Some(ObservableKind::Md5),
        "sha-1" | "sha1" => Some(ObservableKind::Sha1),
        "sha-256" | "sha256" => Some(ObservableKind::Sha256),
        _ => None,
    }
}

/// A cyber-observable object with a `value`.
fn observable(
    object: &Value,
    position: &str,
    kind: ObservableKind,
    meta: &Meta,
    out: &mut Collector<'_>,
) {
    if object.get("revoked").and_then(Value::as_bool) == Some(true) {
        out.skip();
        return;
    }
    match object.get("value").and_then(Value::as_str) {
        Some(v) => out.add_value(position, kind, v, meta, ""),
        None => out.error(position, "observable without a \"value\""),
    }
}

/// A `file` object's MD5, SHA-1 and SHA-256 hashes.
fn file(object: &Value, position: &str, meta: &Meta, out: &mut Collector<'_>) {
    if object.get("revoked").and_then(Value::as_bool) == Some(true) {
        out.skip();
        return;
    }
    let Some(hashes) = object.get("hashes").and_then(Value::as_object) else {
        // A file known only by name is too weak to be an indicator.
        out.skip();
        return;
    };
    for (name, value) in hashes {
        match (hash_kind(name), value.as_str()) {
            (Some(kind), Some(v)) => out.add_value(position, kind, v, meta, &format!(" ({name})")),
            (Some(_), None) => out.error(position, format!("hash {name} is not a string")),
            (None, _) => out.skip(),
        }
    }
}

/// A `vulnerability` with an external reference `{"source_name": "cve", "external_id": ...}`.
fn vulnerability(object: &Value, position: &str, meta: &Meta, out: &mut Collector<'_>) {
    if object.get("revoked").and_then(Value::as_bool) == Some(true) || out.expired(meta.valid_until)
    {
        out.skip();
        return;
    }
    let refs = object
        .get("external_references")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A vulnerability's `name` is often just its CVE id: then the description is the
    // `description`, and a nickname ("Log4Shell") only when there is none.
    let name = text(object.get("name").and_then(Value::as_str));
    let description = text(object.get("description").and_then(Value::as_str))
        .or(name.filter(|n| !n.to_ascii_uppercase().starts_with("CVE-")));
    let meta = Meta {
        description,
        source: meta.source.clone(),
        ..*meta
    };
    let mut found = false;
    for r in refs {
        if r.get("source_name")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some("cve")
        {
            continue;
        }
        found = true;
        match r.get("external_id").and_then(Value::as_str) {
            Some(id) => out.add_value(position, ObservableKind::Cve, id, &meta, ""),
            None => out.error(position, "cve reference without an \"external_id\""),
        }
    }
    if !found {
        out.skip();
    }
}
