//! MISP: an event file (`{"Event": {...}}`, as on MISP feeds such as CIRCL OSINT), a
//! `restSearch` answer (`{"response": {"Attribute": [...]}}` for attributes,
//! `{"response": [{"Event": ...}]}` for events), or an array of events or attributes.
//!
//! Attribute types taken (others, such as `text`, `yara` or `regkey`, are skipped):
//!
//! | MISP type | kind |
//! |---|---|
//! | `ip-src`, `ip-dst` (a `/32` or `/128` network is its address) | ip |
//! | `ip-src\|port`, `ip-dst\|port` (port dropped) | ip |
//! | `domain`, `hostname` (a MISP hostname is a fully qualified name), `hostname\|port` | domain |
//! | `domain\|ip` | domain and ip |
//! | `url`, `uri` when absolute (a bare path is skipped) | url |
//! | `email`, `email-src`, `email-dst`, `email-reply-to` | email |
//! | `md5`, `sha1`, `sha256` | the hash |
//! | `filename`, `filename\|md5`, `filename\|sha1`, `filename\|sha256` | filename (and the hash) |
//! | `vulnerability` | cve |
//!
//! `link` attributes are references to reports about the event, not indicators: skipped.
//! Deleted attributes and objects are skipped, and with `ids_only` so are attributes whose
//! `to_ids` is off. The source is the event's creator organization (`Orgc.name`).

use firebreak_intake::ObservableKind;
use serde_json::Value;

use super::{Collector, Meta, text};

pub(super) fn parse(bytes: &[u8], out: &mut Collector<'_>) -> Result<(), String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a MISP document: {e}"))?;
    let unrecognized = || {
        "not a MISP document: expected {\"Event\": ...}, {\"response\": ...}, \
         {\"Attribute\": [...]} or an array of events or attributes"
            .to_string()
    };
    match &doc {
        Value::Object(o) if o.contains_key("Event") => event(&doc["Event"], "Event", out),
        Value::Object(o) if o.contains_key("response") => match &doc["response"] {
            Value::Array(items) => items_list(items, "response", out),
            Value::Object(r) if r.contains_key("Attribute") => {
                attributes(
                    &r["Attribute"],
                    "response.Attribute",
                    &Context::default(),
                    out,
                );
            }
            Value::Object(r) if r.contains_key("Event") => {
                event(&r["Event"], "response.Event", out);
            }
            _ => return Err(unrecognized()),
        },
        Value::Object(o) if o.contains_key("Attribute") => {
            attributes(&doc["Attribute"], "Attribute", &Context::default(), out);
        }
        Value::Array(items) => items_list(items, "", out),
        _ => return Err(unrecognized()),
    }
    Ok(())
}

/// Organization and event title inherited by attributes.
#[derive(Default)]
struct Context {
    source: Option<String>,
    info: Option<String>,
}

fn items_list(items: &[Value], prefix: &str, out: &mut Collector<'_>) {
    for (i, item) in items.iter().enumerate() {
        let position = format!("{prefix}[{i}]");
        if let Some(e) = item.get("Event") {
            event(e, &format!("{position}.Event"), out);
        } else if item.get("type").is_some() && item.get("value").is_some() {
            attribute(item, &position, &Context::default(), out);
        } else if item.get("Attribute").is_some() && item.get("info").is_some() {
            // An event without its {"Event": ...} wrapper.
            event(item, &position, out);
        } else {
            out.error(position, "neither a MISP event nor an attribute");
        }
    }
}

fn event(e: &Value, position: &str, out: &mut Collector<'_>) {
    if !e.is_object() {
        out.error(position, "the event is not an object");
        return;
    }
    let context = Context {
        source: org_name(e),
        info: text(e.get("info").and_then(Value::as_str)),
    };
    if let Some(list) = e.get("Attribute") {
        attributes(list, &format!("{position}.Attribute"), &context, out);
    }
    match e.get("Object") {
        None | Some(Value::Null) => {}
        Some(Value::Array(objects)) => {
            for (i, object) in objects.iter().enumerate() {
                let position = format!("{position}.Object[{i}]");
                if flag(object.get("deleted")) {
                    out.skip();
                    continue;
                }
                if let Some(list) = object.get("Attribute") {
                    attributes(list, &format!("{position}.Attribute"), &context, out);
                }
            }
        }
        Some(_) => out.error(format!("{position}.Object"), "not an array"),
    }
}

fn org_name(e: &Value) -> Option<String> {
    text(
        e.get("Orgc")
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str),
    )
}

fn attributes(list: &Value, position: &str, context: &Context, out: &mut Collector<'_>) {
    match list {
        Value::Array(items) => {
            for (i, a) in items.iter().enumerate() {
                attribute(a, &format!("{position}[{i}]"), context, out);
            }
        }
        Value::Null => {}
        _ => out.error(position, "not an array"),
    }
}

/// MISP writes booleans as `true`, `1` or `"1"` depending on version and export path.
fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "True"),
        _ => false,
    }
}

fn attribute(a: &Value, position: &str, context: &Context, out: &mut Collector<'_>) {
    if !a.is_object() {
        out.error(position, "the attribute is not an object");
        return;
    }
    if flag(a.get("deleted")) || (out.options.ids_only && !flag(a.get("to_ids"))) {
        out.skip();
        return;
    }
    let (Some(kind), Some(value)) = (
        a.get("type").and_then(Value::as_str),
        a.get("value").and_then(Value::as_str),
    ) else {
        out.error(
            position,
            "an attribute needs a string \"type\" and \"value\"",
        );
        return;
    };
    // restSearch attributes carry a summary of their event.
    let event = a.get("Event");
    let source = event
        .and_then(org_name)
        .or_else(|| context.source.clone())
        .unwrap_or_else(|| out.options.default_source.clone());
    let description = text(a.get("comment").and_then(Value::as_str))
        .or_else(|| text(event.and_then(|e| e.get("info")).and_then(Value::as_str)))
        .or_else(|| context.info.clone());
    let meta = Meta {
        confidence: out.options.default_confidence,
        source,
        description,
        valid_until: None,
    };
    let Some(parts) = kinds_of(kind, value) else {
        out.skip();
        return;
    };
    let pieces: Vec<&str> = if parts.len() > 1 {
        match value.split_once('|') {
            Some((a, b)) => vec![a, b],
            None => {
                out.error(
                    position,
                    format!("a {kind} value needs two parts separated by '|'"),
                );
                return;
            }
        }
    } else {
        vec![value]
    };
    let note = format!(" (type {kind})");
    for (part, piece) in parts.iter().zip(pieces) {
        if let Some(k) = part {
            out.add_value(position, *k, piece, &meta, &note);
        }
    }
}

/// The kinds of a MISP attribute type's parts (`None` for a part not taken, such as a port), or
/// `None` for a type that is not an indicator.
fn kinds_of(kind: &str, value: &str) -> Option<Vec<Option<ObservableKind>>> {
    use ObservableKind as K;
    Some(match kind {
        "ip-src" | "ip-dst" => vec![Some(K::Ip)],
        "ip-src|port" | "ip-dst|port" => vec![Some(K::Ip), None],
        "domain" | "hostname" => vec![Some(K::Domain)],
        "hostname|port" => vec![Some(K::Domain), None],
        "domain|ip" => vec![Some(K::Domain), Some(K::Ip)],
        "url" => vec![Some(K::Url)],
        "uri" if value.contains("://") => vec![Some(K::Url)],
        "email" | "email-src" | "email-dst" | "email-reply-to" => vec![Some(K::Email)],
        "md5" => vec![Some(K::Md5)],
        "sha1" => vec![Some(K::Sha1)],
        "sha256" => vec![Some(K::Sha256)],
        "filename" => vec![Some(K::Filename)],
        "filename|md5" => vec![Some(K::Filename), Some(K::Md5)],
        "filename|sha1" => vec![Some(K::Filename), Some(K::Sha1)],
        "filename|sha256" => vec![Some(K::Filename), Some(K::Sha256)],
        "vulnerability" => vec![Some(K::Cve)],
        _ => return None,
    })
}
