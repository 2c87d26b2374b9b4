//! What Firebreak sends out: chat webhook payloads (Slack, Microsoft Teams) and indicator
//! exports (plain-text blocklists, STIX 2.1 bundles). The caller posts or serves them.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use crate::feeds::Indicator;

/// A notification, whatever the channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub title: String,
    pub text: String,
    /// Where to read more (the ticket's page); shown as a button when it is an http(s) URL.
    pub link: Option<String>,
    /// Label and value pairs, in order.
    pub facts: Vec<(String, String)>,
}

/// Slack limits (Block Kit): header text, section text, field text, fields per section.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
const SLACK_FIELDS_PER_SECTION: usize = 10;
/// Slack accepts 50 blocks; facts beyond these are dropped.
const MAX_FACTS: usize = 100;
const URL_MAX: usize = 3000;

/// Escapes Slack's control characters `&`, `<` and `>` (so user text cannot make links,
/// mentions or `<!channel>` pings).
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts to `max` characters, ending with "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Escapes, then cuts without splitting an entity such as `&amp;`.
fn slack_text(s: &str, max: usize) -> String {
    let escaped = slack_escape(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut t: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = t.rfind('&')
        && !t[amp..].contains(';')
    {
        t.truncate(amp);
    }
    t.push('…');
    t
}

/// An http(s) URL fit for a button.
fn web_link(link: Option<&str>) -> Option<&str> {
    let l = link?.trim();
    let lower = l.to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && l.len() <= URL_MAX
        && !l.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(l)
}

/// A Slack incoming-webhook payload: `text` (the notification fallback) and `blocks`: a
/// header, the text as mrkdwn, the facts as fields (ten per section), and a button to the link.
/// User text is escaped in mrkdwn; the header is `plain_text`, which Slack does not parse.
pub fn slack_payload(m: &Message) -> Value {
    let mut blocks = Vec::new();
    let title = m.title.trim();
    if !title.is_empty() {
        blocks.push(json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(title, SLACK_HEADER_MAX), "emoji": true}
        }));
    }
    if !m.text.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": slack_text(m.text.trim(), SLACK_TEXT_MAX)}
        }));
    }
    let facts: Vec<Value> = m
        .facts
        .iter()
        .take(MAX_FACTS)
        .map(|(k, v)| {
            let text = format!("*{}*\n{}", slack_escape(k.trim()), slack_escape(v.trim()));
            json!({"type": "mrkdwn", "text": truncate(&text, SLACK_FIELD_MAX)})
        })
        .collect();
    for chunk in facts.chunks(SLACK_FIELDS_PER_SECTION) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if let Some(link) = web_link(m.link.as_deref()) {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in Firebreak", "emoji": false},
                "url": link
            }]
        }));
    }
    let fallback = match (title.is_empty(), m.text.trim().is_empty()) {
        (false, false) => format!("{title}: {}", m.text.trim()),
        (false, true) => title.to_string(),
        (true, _) => m.text.trim().to_string(),
    };
    json!({"text": slack_text(&fallback, SLACK_TEXT_MAX), "blocks": blocks})
}

/// A Microsoft Teams Workflows webhook payload: a message with one Adaptive Card 1.4 (the
/// title, the text, a fact set, and an "Open" action for the link).
pub fn teams_payload(m: &Message) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": m.title.trim(),
        "size": "Large",
        "weight": "Bolder",
        "wrap": true
    })];
    if !m.text.trim().is_empty() {
        body.push(json!({"type": "TextBlock", "text": m.text.trim(), "wrap": true}));
    }
    if !m.facts.is_empty() {
        let facts: Vec<Value> = m
            .facts
            .iter()
            .take(MAX_FACTS)
            .map(|(k, v)| json!({"title": k.trim(), "value": v.trim()}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body
    });
    if let Some(link) = web_link(m.link.as_deref()) {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content
        }]
    })
}

/// A blocklist: the values of the indicators of `kinds` (all kinds when empty), sorted,
/// unique, one a line. Values with control characters are left out (they would break the
/// line format). The caller leaves out expired indicators.
pub fn export_text(indicators: &[Indicator], kinds: &[&str]) -> String {
    let values: BTreeSet<&str> = indicators
        .iter()
        .filter(|i| kinds.is_empty() || kinds.contains(&i.kind.as_str()))
        .map(|i| i.value.as_str())
        .filter(|v| !v.is_empty() && !v.chars().any(char::is_control))
        .collect();
    let mut out = String::new();
    for v in values {
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// A STIX 2.1 bundle of the indicators, created by an `identity` named `identity_name`.
///
/// Each indicator becomes an `indicator` with a STIX pattern (`ipv4-addr`/`ipv6-addr`,
/// `domain-name` (for domains and hostnames), `url`, `email-addr`, `file:hashes.MD5`,
/// `file:hashes.'SHA-1'`, `file:hashes.'SHA-256'`, `file:name`), and a `cve` becomes a
/// `vulnerability` with a `cve` external reference. Kinds STIX has no object for (`user`,
/// `other`) and indicators expired at `now` are left out. Ids are deterministic
/// (`indicator--<UUID from SHA-256 of kind, value and source>`), so re-exports update the same
/// objects; `created`, `modified` and `valid_from` are `now` (millisecond precision, UTC). The
/// description goes in `name`, the indicator's headline.
pub fn export_stix(indicators: &[Indicator], identity_name: &str, now: OffsetDateTime) -> Value {
    let ts = stix_timestamp(now);
    let identity_id = stix_id("identity", &["identity", identity_name]);
    let mut objects = vec![json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": ts,
        "modified": ts,
        "name": identity_name,
        "identity_class": "organization"
    })];
    let mut seen = HashSet::new();
    for i in indicators {
        if i.valid_until.is_some_and(|t| t <= now) {
            continue;
        }
        let confidence = i.confidence.clamp(0, 100);
        let description = i
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty());
        let object = if i.kind == "cve" {
            let id = stix_id("vulnerability", &[&i.kind, &i.value, &i.source]);
            let mut v = json!({
                "type": "vulnerability",
                "spec_version": "2.1",
                "id": id,
                "created_by_ref": identity_id,
                "created": ts,
                "modified": ts,
                "name": i.value,
                "confidence": confidence,
                "external_references": [{"source_name": "cve", "external_id": i.value}]
            });
            if let Some(d) = description {
                v["description"] = json!(d);
            }
            v
        } else {
            let Some(pattern) = stix_pattern(&i.kind, &i.value) else {
                continue;
            };
            let id = stix_id("indicator", &[&i.kind, &i.value, &i.source]);
            let mut v = json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": id,
                "created_by_ref": identity_id,
                "created": ts,
                "modified": ts,
                "indicator_types": ["malicious-activity"],
                "pattern": pattern,
                "pattern_type": "stix",
                "pattern_version": "2.1",
                "valid_from": ts,
                "confidence": confidence
            });
            if let Some(d) = description {
                v["name"] = json!(d);
            }
            if let Some(t) = i.valid_until {
                v["valid_until"] = json!(stix_timestamp(t));
            }
            v
        };
        let id = object["id"].as_str().unwrap_or_default().to_string();
        if seen.insert(id) {
            objects.push(object);
        }
    }
    let ids: Vec<&str> = objects.iter().filter_map(|o| o["id"].as_str()).collect();
    let mut parts = vec!["bundle", ts.as_str()];
    parts.extend(ids);
    json!({
        "type": "bundle",
        "id": stix_id("bundle", &parts),
        "objects": objects
    })
}

/// The STIX pattern for one indicator, or `None` for kinds STIX patterns do not cover.
pub fn stix_pattern(kind: &str, value: &str) -> Option<String> {
    let path = match kind {
        "ip" if value.contains(':') => "ipv6-addr:value",
        "ip" => "ipv4-addr:value",
        "domain" | "hostname" => "domain-name:value",
        "url" => "url:value",
        "email" => "email-addr:value",
        "md5" => "file:hashes.MD5",
        "sha1" => "file:hashes.'SHA-1'",
        "sha256" => "file:hashes.'SHA-256'",
        "filename" => "file:name",
        _ => return None,
    };
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    Some(format!("[{path} = '{escaped}']"))
}

/// `<prefix>--<UUID>`: the first 16 bytes of SHA-256 over the NUL-separated parts, with the
/// version (5) and RFC 4122 variant bits set, as a name-based UUID would have.
fn stix_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (n, p) in parts.iter().enumerate() {
        if n > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{prefix}--{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `2026-12-01T09:30:00.000Z`: UTC, milliseconds, as STIX wants.
fn stix_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_look_like_version_5_uuids() {
        let id = stix_id("indicator", &["ip", "192.0.2.1", "feed"]);
        let uuid = id.strip_prefix("indicator--").unwrap();
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('5'));
        assert!(matches!(
            groups[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
        assert_eq!(id, stix_id("indicator", &["ip", "192.0.2.1", "feed"]));
        assert_ne!(id, stix_id("indicator", &["ip", "192.0.2.1", "other feed"]));
        assert_ne!(stix_id("x", &["ab", "c"]), stix_id("x", &["a", "bc"]));
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = datetime!(2026-12-01 10:30:05.123456 +02:00);
        assert_eq!(stix_timestamp(t), "2026-12-01T08:30:05.123Z");
    }

    #[test]
    fn patterns_escape_quotes_and_backslashes() {
        assert_eq!(
            stix_pattern("filename", r"C:\Users\it's.exe").unwrap(),
            r"[file:name = 'C:\\Users\\it\'s.exe']"
        );
        assert_eq!(
            stix_pattern("ip", "2001:db8::1").unwrap(),
            "[ipv6-addr:value = '2001:db8::1']"
        );
        assert_eq!(stix_pattern("user", "alice"), None);
    }

    #[test]
    fn slack_escaping_and_truncation() {
        assert_eq!(
            slack_escape("<!channel> a&b >"),
            "&lt;!channel&gt; a&amp;b &gt;"
        );
        let t = slack_text(&"&".repeat(10), 12);
        assert!(t.ends_with('…'));
        assert!(!t.trim_end_matches('…').ends_with("&am"), "{t}");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
