//! Text output of `firebreak ticket`: the ticket table, a ticket's detail, its timeline, one-line
//! outcomes. Reads the API's JSON loosely (a field a server lacks shows as `-`), and never lets
//! a stored text drive the terminal: control characters are replaced, and so are the
//! bidirectional-text controls that reorder what a reader sees (CVE-2021-42574).

use serde_json::Value;
use std::io::{IsTerminal, Result, Write};

/// Titles in the table at most, when standard output is a terminal (piped output keeps them).
const TITLE_WIDTH: usize = 60;

/// A character that must not reach a terminal as it is: a control character (escape sequences),
/// or a bidirectional embedding, override, isolate or mark, which reorder the text around them.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `s` on one line: line breaks and tabs become spaces, other control characters and
/// bidirectional controls `\u{fffd}`.
pub fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if unsafe_char(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// `s` with its lines kept: `\r` dropped, control characters other than `\n` and tab replaced.
fn clean_block(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '\r')
        .map(|c| match c {
            '\n' | '\t' => c,
            c if unsafe_char(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A field as text: a string cleaned, a number or boolean as written, `-` when null or absent.
fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => clean_line(s),
        Some(other) => clean_line(&other.to_string()),
    }
}

fn has(v: &Value, key: &str) -> bool {
    match v.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM[:SS]` in UTC (as given when it does not parse).
fn when(v: &Value, key: &str, seconds: bool) -> String {
    use time::format_description::well_known::Rfc3339;
    let raw = field(v, key);
    let Ok(t) = time::OffsetDateTime::parse(&raw, &Rfc3339) else {
        return raw;
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let f = if seconds {
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")
    } else {
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")
    };
    t.format(f).unwrap_or(raw)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('\u{2026}');
    t
}

/// Rows under a header, each column as wide as its widest cell; the last column is not padded.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `firebreak ticket list`.
pub fn ticket_table(out: &mut dyn Write, tickets: &[Value]) -> Result<()> {
    let width = if std::io::stdout().is_terminal() {
        TITLE_WIDTH
    } else {
        usize::MAX
    };
    let rows: Vec<Vec<String>> = tickets
        .iter()
        .map(|t| {
            vec![
                field(t, "number"),
                field(t, "status"),
                field(t, "severity"),
                field(t, "priority"),
                criticality(t),
                field(t, "owner"),
                field(t, "assignee"),
                when(t, "updated_at", false),
                truncate(&field(t, "title"), width),
            ]
        })
        .collect();
    table(
        out,
        &[
            "NUMBER",
            "STATUS",
            "SEVERITY",
            "PRI",
            "CRITICALITY",
            "OWNER",
            "ASSIGNEE",
            "UPDATED (UTC)",
            "TITLE",
        ],
        &rows,
    )
}

/// `normal`, `escalation/2`: the criticality with the tier when it is not 1.
fn criticality(t: &Value) -> String {
    let c = field(t, "criticality");
    match t.get("tier").and_then(Value::as_i64) {
        Some(tier) if tier != 1 => format!("{c}/{tier}"),
        _ => c,
    }
}

/// One line: number, status and the fields a transition or an edit changes.
pub fn ticket_line(out: &mut dyn Write, t: &Value) -> Result<()> {
    writeln!(
        out,
        "{} {}: {} tier {}, severity {}, priority {}, owner {}, assignee {}{}",
        field(t, "number"),
        field(t, "status"),
        field(t, "criticality"),
        field(t, "tier"),
        field(t, "severity"),
        field(t, "priority"),
        field(t, "owner"),
        field(t, "assignee"),
        if t.get("false_positive") == Some(&Value::Bool(true)) {
            ", false positive"
        } else {
            ""
        }
    )
}

/// `SEC-000001 (id ...): title [severity/priority]`, for `create`'s stderr.
pub fn created_summary(t: &Value) -> String {
    format!(
        "{} (id {}): {} [{}, {}]",
        field(t, "number"),
        field(t, "id"),
        field(t, "title"),
        field(t, "severity"),
        field(t, "priority")
    )
}

/// `firebreak ticket show`: the fields, the description, the linked events, the timeline.
pub fn ticket_detail(
    out: &mut dyn Write,
    t: &Value,
    events: Option<&[Value]>,
    log: Option<&[Value]>,
) -> Result<()> {
    writeln!(out, "{}  {}", field(t, "number"), field(t, "title"))?;
    let mut rows: Vec<(&str, String)> = vec![
        ("id", field(t, "id")),
        ("status", field(t, "status")),
        (
            "criticality",
            format!("{}, tier {}", field(t, "criticality"), field(t, "tier")),
        ),
        ("severity", field(t, "severity")),
        ("priority", field(t, "priority")),
        ("owner", field(t, "owner")),
        ("assignee", field(t, "assignee")),
        ("source", source(t.get("source"))),
    ];
    if has(t, "escalation_reason") || field(t, "criticality") != "normal" {
        rows.push(("escalation", field(t, "escalation_reason")));
    }
    if let Some(tags) = t.get("tags").and_then(Value::as_array)
        && !tags.is_empty()
    {
        let tags: Vec<String> = tags
            .iter()
            .map(|t| clean_line(t.as_str().unwrap_or_default()))
            .collect();
        rows.push(("tags", tags.join(", ")));
    }
    for (key, label) in [
        ("restricted", "restricted"),
        ("incident", "incident"),
        ("false_positive", "false positive"),
    ] {
        if has(t, key) {
            rows.push((label, "yes".into()));
        }
    }
    for (key, label) in [
        ("resolution", "resolution"),
        ("problem_category", "category"),
    ] {
        if has(t, key) {
            rows.push((label, field(t, key)));
        }
    }
    rows.push((
        "created",
        format!(
            "{} UTC by {}",
            when(t, "created_at", false),
            field(t, "created_by")
        ),
    ));
    rows.push((
        "updated",
        format!(
            "{} UTC (version {})",
            when(t, "updated_at", false),
            field(t, "version")
        ),
    ));
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in rows {
        writeln!(out, "  {label:<width$}  {value}")?;
    }
    if has(t, "description") {
        writeln!(out, "\ndescription:")?;
        let d = clean_block(t.get("description").and_then(Value::as_str).unwrap_or(""));
        for l in d.lines() {
            writeln!(out, "  {l}")?;
        }
    }
    if let Some(events) = events {
        if events.is_empty() {
            writeln!(out, "\nevents: none linked")?;
        } else {
            writeln!(out, "\nevents ({}):", events.len())?;
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        format!("  {}", when(e, "received_at", false)),
                        field(e, "severity"),
                        field(e, "source"),
                        field(e, "id"),
                        field(e, "title"),
                    ]
                })
                .collect();
            table(
                out,
                &["  RECEIVED", "SEVERITY", "SOURCE", "ID", "TITLE"],
                &rows,
            )?;
        }
    }
    if let Some(entries) = log {
        writeln!(out, "\nlog ({} entries):", entries.len())?;
        let mut text = Vec::new();
        self::log(&mut text, entries)?;
        for l in String::from_utf8_lossy(&text).lines() {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

fn source(s: Option<&Value>) -> String {
    let Some(s) = s.filter(|s| s.is_object()) else {
        return "-".into();
    };
    let mut text = field(s, "kind");
    if has(s, "name") {
        text.push_str(&format!(": {}", field(s, "name")));
    }
    if has(s, "contact") {
        text.push_str(&format!(" ({})", field(s, "contact")));
    }
    text
}

/// The timeline: time, actor, action, then the text (later lines indented under it).
pub fn log(out: &mut dyn Write, entries: &[Value]) -> Result<()> {
    let actor_w = entries
        .iter()
        .map(|e| field(e, "actor").chars().count())
        .max()
        .unwrap_or(0);
    let action_w = entries
        .iter()
        .map(|e| field(e, "action").chars().count())
        .max()
        .unwrap_or(0);
    for e in entries {
        let text = clean_block(e.get("text").and_then(Value::as_str).unwrap_or(""));
        let mut lines = text.lines();
        let head = format!(
            "{}  {:<actor_w$}  {:<action_w$}  {}",
            when(e, "at", true),
            field(e, "actor"),
            field(e, "action"),
            lines.next().unwrap_or("")
        );
        writeln!(out, "{}", head.trim_end())?;
        let indent = 19 + 2 + actor_w + 2 + action_w + 2;
        for l in lines {
            writeln!(out, "{:indent$}{l}", "")?;
        }
    }
    Ok(())
}

/// After `note`: which entry the text became.
pub fn note_added(out: &mut dyn Write, reference: &str, e: &Value) -> Result<()> {
    writeln!(
        out,
        "{}: {} added to the log (entry {}, {} UTC)",
        clean_line(reference),
        field(e, "kind"),
        field(e, "seq"),
        when(e, "at", true)
    )
}

/// `ticket comm list`.
pub fn communications(out: &mut dyn Write, items: &[Value]) -> Result<()> {
    if items.is_empty() {
        return writeln!(out, "no communications");
    }
    for c in items {
        let to: Vec<String> = c
            .get("to")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(clean_line).collect())
            .unwrap_or_default();
        writeln!(
            out,
            "{} UTC  {} {}  from {} to {}{}",
            when(c, "occurred_at", false),
            field(c, "direction"),
            field(c, "channel"),
            field(c, "from"),
            if to.is_empty() {
                "-".into()
            } else {
                to.join(", ")
            },
            if has(c, "subject") {
                format!(": {}", field(c, "subject"))
            } else {
                String::new()
            }
        )?;
        let body = clean_block(c.get("body").and_then(Value::as_str).unwrap_or(""));
        for l in body.lines() {
            writeln!(out, "    {l}")?;
        }
    }
    Ok(())
}

/// After `comm add`.
pub fn communication_added(out: &mut dyn Write, reference: &str, c: &Value) -> Result<()> {
    writeln!(
        out,
        "{}: {} {} captured (id {})",
        clean_line(reference),
        field(c, "direction"),
        field(c, "channel"),
        field(c, "id")
    )
}

/// A transition's answer: the ticket in one line, an emergency, a phase, or else the JSON.
pub fn outcome(out: &mut dyn Write, v: &Value) -> Result<()> {
    if has(v, "number") && has(v, "status") {
        return ticket_line(out, v);
    }
    if has(v, "declared_by") && has(v, "ticket_number") {
        writeln!(
            out,
            "emergency {} on {} ({}): coordinator {}, war room {}, course of action {}",
            field(v, "id"),
            field(v, "ticket_number"),
            field(v, "status"),
            field(v, "coordinator"),
            field(v, "war_room"),
            field(v, "course_of_action")
        )?;
        if let Some(open) = v.get("open_obligations").and_then(Value::as_array) {
            for o in open.iter().filter_map(Value::as_str) {
                writeln!(out, "  open: {}", clean_line(o))?;
            }
        }
        return Ok(());
    }
    if has(v, "phase") && has(v, "ticket_number") {
        let was = if has(v, "previous") {
            format!(" (was {})", field(v, "previous"))
        } else {
            String::new()
        };
        return writeln!(
            out,
            "{} phase: {}{was}",
            field(v, "ticket_number"),
            field(v, "phase")
        );
    }
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    writeln!(out, "{}", clean_block(&text))
}

/// JSON text indented by two spaces, nothing in it reordered or rewritten (the text must be
/// valid JSON).
pub fn pretty_json(raw: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    }
    let mut out = String::with_capacity(raw.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(char::is_ascii_whitespace).is_some() {}
                if let Some(close) = chars.next_if(|n| matches!(n, '}' | ']')) {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(f: impl FnOnce(&mut dyn Write) -> Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn ticket_text_never_carries_control_characters() {
        assert_eq!(clean_line("a\x1b[31mb\nc\td"), "a\u{fffd}[31mb c d");
        assert_eq!(clean_block("x\r\ny\x07"), "x\ny\u{fffd}");
        // Trojan Source: an override and an isolate would reorder what the reader sees
        assert_eq!(
            clean_line("admin\u{202E}txt.exe\u{2066}x\u{2069}"),
            "admin\u{fffd}txt.exe\u{fffd}x\u{fffd}"
        );
        assert_eq!(clean_block("a\u{200F}b\nc"), "a\u{fffd}b\nc");
        // letters of right-to-left scripts are text, not controls
        assert_eq!(clean_line("שלום مرحبا"), "שלום مرحبا");
    }

    #[test]
    fn ticket_table_aligns_columns_and_shows_missing_fields_as_dashes() {
        let rows = [
            json!({"number": "SEC-000002", "status": "in_progress", "severity": "critical",
                   "priority": "p1", "criticality": "escalation", "tier": 2, "owner": "ana",
                   "assignee": null, "updated_at": "2026-12-07T16:49:05.123Z", "title": "Ransom\nnote"}),
            json!({"number": "SEC-000001", "status": "open", "title": "x"}),
        ];
        let out = text(|o| ticket_table(o, &rows));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].starts_with("NUMBER      STATUS       SEVERITY"),
            "{out}"
        );
        assert!(
            lines[1].contains("escalation/2")
                && lines[1].contains("2026-12-07 16:49")
                && lines[1].ends_with("Ransom note"),
            "{out}"
        );
        let title_at = lines[0].find("TITLE").unwrap();
        assert_eq!(lines[2].find(" x").map(|i| i + 1), Some(title_at), "{out}");
        assert!(lines[2].contains("open         -"), "{out}");
    }

    #[test]
    fn ticket_log_indents_continuation_lines() {
        let entries = [json!({"at": "2026-12-07T16:49:05Z", "actor": "ana",
                              "action": "log.note", "text": "first\nsecond"})];
        let out = text(|o| log(o, &entries));
        // the second line starts under the first's text
        let head = "2026-12-07 16:49:05  ana  log.note  ";
        assert_eq!(
            out,
            format!("{head}first\n{}second\n", " ".repeat(head.len()))
        );
    }

    #[test]
    fn ticket_json_is_indented_in_the_servers_order() {
        let raw = r#"{"z":1,"a":[],"s":"x,\"y\": {[","o":{ },"l":[1, {"k":null}]}"#;
        assert_eq!(
            pretty_json(raw),
            "{\n  \"z\": 1,\n  \"a\": [],\n  \"s\": \"x,\\\"y\\\": {[\",\n  \"o\": {},\n  \"l\": [\n    1,\n    {\n      \"k\": null\n    }\n  ]\n}"
        );
        let v: Value = serde_json::from_str(&pretty_json(raw)).unwrap();
        assert_eq!(v, serde_json::from_str::<Value>(raw).unwrap());
    }
}
