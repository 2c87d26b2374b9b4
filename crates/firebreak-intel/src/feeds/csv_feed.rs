//! CSV: a header row, then one indicator per row.
//!
//! Columns (header names case-insensitive, any order, others ignored): `type` (or `kind`),
//! `value`, and optionally `confidence` (0-100), `source`, `expiry` (or `valid_until`; RFC 3339,
//! or `YYYY-MM-DD` meaning valid through that day, UTC) and `description`. Lines starting with
//! `#` are comments. A bad row is reported as `line N` with the reason.

use time::{Date, Duration, OffsetDateTime, Time};

use super::{Collector, Indicator, Norm, kind_from_name, normalize, parse_timestamp, text};

struct Columns {
    kind: usize,
    value: usize,
    confidence: Option<usize>,
    source: Option<usize>,
    expiry: Option<usize>,
    description: Option<usize>,
}

pub(super) fn parse(bytes: &[u8], out: &mut Collector<'_>) -> Result<(), String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("unreadable CSV header: {e}"))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let (Some(kind), Some(value)) = (find(&["type", "kind"]), find(&["value"])) else {
        let found: Vec<&str> = headers.iter().collect();
        return Err(format!(
            "the CSV header must name a \"type\" (or \"kind\") and a \"value\" column; found {found:?}"
        ));
    };
    let columns = Columns {
        kind,
        value,
        confidence: find(&["confidence"]),
        source: find(&["source"]),
        expiry: find(&["expiry", "valid_until", "expires"]),
        description: find(&["description"]),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, csv::Position::line);
                if let Err(message) = row(&record, &columns, out) {
                    out.error(format!("line {line}"), message);
                }
            }
            Err(e) => {
                let line = match e.kind() {
                    csv::ErrorKind::Utf8 { pos: Some(p), .. } => p.line(),
                    _ => line,
                };
                out.error(format!("line {line}"), format!("unreadable row: {e}"));
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// One row: `Err` is the reason it is refused; a row not taken (expired, a network range) is
/// counted as skipped.
fn row(record: &csv::StringRecord, c: &Columns, out: &mut Collector<'_>) -> Result<(), String> {
    let field = |i: Option<usize>| text(i.and_then(|i| record.get(i)));
    let kind_name = field(Some(c.kind)).ok_or("no type")?;
    let value = field(Some(c.value)).ok_or("no value")?;
    let hint = kind_from_name(&kind_name).ok_or_else(|| format!("unknown type {kind_name:?}"))?;
    let confidence = match field(c.confidence) {
        None => out.options.default_confidence,
        Some(s) => s
            .parse::<i32>()
            .ok()
            .filter(|n| (0..=100).contains(n))
            .ok_or_else(|| format!("confidence must be an integer 0-100, got {s:?}"))?,
    };
    let valid_until = match field(c.expiry) {
        None => None,
        Some(s) => Some(
            parse_expiry(&s)
                .ok_or_else(|| format!("bad date {s:?} (expected RFC 3339 or YYYY-MM-DD)"))?,
        ),
    };
    let explicit_hash = !matches!(
        kind_name.to_ascii_lowercase().as_str(),
        "hash" | "filehash" | "file-hash"
    );
    let (kind, value) = match normalize(hint, &value, explicit_hash) {
        Norm::Ok(kind, value) => (kind, value),
        Norm::Range => {
            out.skip();
            return Ok(());
        }
        Norm::Invalid(message) => return Err(message),
    };
    if out.expired(valid_until) {
        out.skip();
        return Ok(());
    }
    out.add(Indicator {
        kind,
        value,
        confidence,
        source: field(c.source).unwrap_or_else(|| out.options.default_source.clone()),
        description: field(c.description),
        valid_until,
    });
    Ok(())
}

/// RFC 3339, or a date meaning "through the end of that day, UTC" (the next midnight).
fn parse_expiry(s: &str) -> Option<OffsetDateTime> {
    if let Some(t) = parse_timestamp(s) {
        return Some(t);
    }
    let date = Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.with_time(Time::MIDNIGHT).assume_utc() + Duration::DAY)
}
