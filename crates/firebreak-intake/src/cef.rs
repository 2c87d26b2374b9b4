//! ArcSight Common Event Format (CEF), per "Implementing ArcSight Common Event Format (CEF)"
//! (v25/v26):
//!
//! ```text
//! CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension
//! ```
//!
//! Header fields escape `|` and `\` with a backslash. The extension is `key=value` pairs
//! separated by spaces; a value may contain spaces and ends where the next ` key=` begins; in
//! values `\=`, `\\`, `\n` and `\r` are escapes. Keys are the short names (`src`, `dvchost`...);
//! the long names (`sourceAddress`...) are accepted too. Text before `CEF:` (a syslog header
//! the caller did not strip) is skipped.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::observables::{classify, dedup, hash_by_length};
use crate::syslog::{digits, month_from_abbrev, parse_hms, zone_abbrev_offset};
use crate::{Level, NormalizedEvent, ObservableKind, ParseError, ParseResult, clean_title};

/// Parse one CEF record into one event.
pub fn parse(payload: &str) -> ParseResult {
    let start = payload
        .find("CEF:")
        .ok_or_else(|| ParseError::new("cef", "no CEF: header"))?;
    let body = payload
        .get(start + 4..)
        .unwrap_or("")
        .trim_end_matches(['\r', '\n', '\0']);
    let (header, ext) = split_header(body)?;
    let [
        version,
        vendor,
        product,
        dev_version,
        signature,
        name,
        severity,
    ] = header;
    let ext = split_extension(ext, true);
    let get = |short: &str, long: &str| lookup(&ext, short, long);

    let source_name = format!("{vendor} {product}").trim().to_owned();
    let title = if name.trim().is_empty() {
        signature.as_str()
    } else {
        name.as_str()
    };
    let mut e = NormalizedEvent::new("device", &source_name, clean_title(title));
    if !signature.trim().is_empty() {
        e.rule_id = Some(signature.trim().to_owned());
    }
    e.severity = level_of_severity(&severity);
    if !severity.trim().is_empty() {
        e.original_severity = Some(severity.trim().to_owned());
    }
    e.description = get("msg", "message")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    e.source_ref = get("externalId", "externalId")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    // the host is the device that reported (its name, else its address), as in ArcSight's
    // own views; the source and destination hosts are observables, never the event's host
    e.host = [("dvchost", "deviceHostName"), ("dvc", "deviceAddress")]
        .iter()
        .find_map(|(s, l)| get(s, l).filter(|v| !v.is_empty()))
        .map(str::to_owned);
    // a time without a zone is in the device's zone (`dtz`: an IANA name, `GMT+hh:mm`, or
    // an abbreviation), else UTC; one that names its zone keeps it
    let dtz = get("dtz", "deviceTimeZone").filter(|z| !z.trim().is_empty());
    e.occurred_at = [
        ("rt", "deviceReceiptTime"),
        ("end", "endTime"),
        ("start", "startTime"),
    ]
    .iter()
    .find_map(|(s, l)| get(s, l).and_then(|v| parse_timestamp_in(v, dtz)));

    let mut obs = Vec::new();
    let structured: [(&str, &str, Option<ObservableKind>); 14] = [
        ("src", "sourceAddress", Some(ObservableKind::Ip)),
        ("dst", "destinationAddress", Some(ObservableKind::Ip)),
        ("c6a2", "deviceCustomIPv6Address2", Some(ObservableKind::Ip)),
        ("c6a3", "deviceCustomIPv6Address3", Some(ObservableKind::Ip)),
        ("shost", "sourceHostName", Some(ObservableKind::Hostname)),
        (
            "dhost",
            "destinationHostName",
            Some(ObservableKind::Hostname),
        ),
        ("suser", "sourceUserName", Some(ObservableKind::User)),
        ("duser", "destinationUserName", Some(ObservableKind::User)),
        ("fname", "fileName", Some(ObservableKind::Filename)),
        ("fileHash", "fileHash", Some(ObservableKind::Sha256)),
        ("request", "requestUrl", Some(ObservableKind::Url)),
        (
            "sourceDnsDomain",
            "sourceDnsDomain",
            Some(ObservableKind::Domain),
        ),
        (
            "destinationDnsDomain",
            "destinationDnsDomain",
            Some(ObservableKind::Domain),
        ),
        (
            "deviceDnsDomain",
            "deviceDnsDomain",
            Some(ObservableKind::Domain),
        ),
    ];
    for (short, long, kind) in structured {
        if let Some(o) = get(short, long).and_then(|v| classify(kind, v)) {
            obs.push(o);
        }
    }
    // `filePath` holds the full path: its last component is the file name.
    if let Some(name) = get("filePath", "filePath")
        .and_then(|p| p.rsplit(['/', '\\']).next())
        .and_then(|n| classify(Some(ObservableKind::Filename), n))
    {
        obs.push(name);
    }
    // Vendor keys named after a hash (`TrendMicroDsFileSHA256`...).
    for (k, v) in &ext {
        let lower = k.to_ascii_lowercase();
        let hashy = ["md5", "sha1", "sha256"].iter().any(|h| lower.ends_with(h));
        if hashy && let Some(o) = hash_by_length(v) {
            obs.push(o);
        }
    }

    let f = &mut e.fields;
    f.insert("cef_version".into(), version.trim().into());
    f.insert("device_vendor".into(), vendor.into());
    f.insert("device_product".into(), product.into());
    f.insert("device_version".into(), dev_version.into());
    for (k, v) in &ext {
        f.insert(k.clone(), v.as_str().into());
    }
    // Custom fields with labels (`cs1Label=Rule Name cs1=Block all`): also `rule_name`.
    for (k, label) in &ext {
        let Some(base) = k.strip_suffix("Label") else {
            continue;
        };
        let Some(value) = lookup(&ext, base, base) else {
            continue;
        };
        let key = snake_case(label);
        if key.is_empty() || value.is_empty() {
            continue;
        }
        if matches!(
            key.as_str(),
            "md5" | "sha1" | "sha256" | "sha_256" | "file_hash" | "hash"
        ) && let Some(o) = hash_by_length(value)
        {
            obs.push(o);
        }
        f.entry(key).or_insert_with(|| value.into());
    }
    e.observables = dedup(obs);
    e.raw = payload.to_owned();
    Ok(vec![e])
}

/// The seven header fields (unescaped) and the extension that follows the seventh `|`. A
/// record with no extension may also end right after the severity.
fn split_header(s: &str) -> Result<([String; 7], &str), ParseError> {
    let mut fields: Vec<String> = Vec::with_capacity(7);
    let mut cur = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.clone().next() {
                Some((_, n @ ('|' | '\\'))) => {
                    cur.push(n);
                    chars.next();
                }
                _ => cur.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 7 {
                    let ext = s.get(i + 1..).unwrap_or("");
                    return Ok((to_array(fields)?, ext));
                }
            }
            c => cur.push(c),
        }
    }
    if fields.len() == 6 {
        fields.push(cur);
        return Ok((to_array(fields)?, ""));
    }
    Err(ParseError::new(
        "header",
        format!(
            "expected 7 '|'-separated header fields after CEF:, found {}",
            fields.len() + 1
        ),
    ))
}

fn to_array(fields: Vec<String>) -> Result<[String; 7], ParseError> {
    fields
        .try_into()
        .map_err(|_| ParseError::new("header", "bad header field count"))
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']' | b',')
}

/// Split `key=value key=value` where values may hold spaces: a key starts the text or follows
/// a space, is made of letters, digits and `_ . - [ ] ,`, starts with a letter or `_`, and is
/// followed by `=`. Values are trimmed and lose a pair of enclosing double quotes; with
/// `unescape`, CEF escapes are undone. Text before the first key is dropped.
pub(crate) fn split_extension(ext: &str, unescape: bool) -> Vec<(String, String)> {
    let b = ext.as_bytes();
    // (key start, key end, value start)
    let mut keys: Vec<(usize, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let at_start = i == 0 || b.get(i - 1) == Some(&b' ');
        let starts_key = b
            .get(i)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_');
        if at_start && starts_key {
            let mut j = i;
            while b.get(j).is_some_and(|&c| is_key_byte(c)) {
                j += 1;
            }
            if b.get(j) == Some(&b'=') {
                keys.push((i, j, j + 1));
                i = j + 1;
                continue;
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    let mut out = Vec::with_capacity(keys.len());
    for (n, &(ks, ke, vs)) in keys.iter().enumerate() {
        let ve = keys.get(n + 1).map_or(b.len(), |&(next, _, _)| next);
        let key = ext.get(ks..ke).unwrap_or("");
        let mut raw = ext.get(vs..ve).unwrap_or("").trim_matches(' ');
        // Some senders quote values (`rt="Jun 18 2018 14:38:07"`), which CEF does not do.
        if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            raw = raw.get(1..raw.len() - 1).unwrap_or(raw);
        }
        let value = if unescape {
            unescape_value(raw)
        } else {
            raw.to_owned()
        };
        out.push((key.to_owned(), value));
    }
    out
}

fn unescape_value(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('\\') => out.push('\\'),
            Some('=') => out.push('='),
            Some('|') => out.push('|'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// The last value given for a key, under its short or long name.
fn lookup<'a>(ext: &'a [(String, String)], short: &str, long: &str) -> Option<&'a str> {
    ext.iter()
        .rev()
        .find(|(k, _)| k == short || k == long)
        .map(|(_, v)| v.as_str())
}

/// CEF severity: 0-3 low, 4-6 medium, 7-8 high, 9-10 critical; or `Low`, `Medium`, `High`,
/// `Very-High` (critical). `Unknown` and anything else: medium.
pub fn level_of_severity(s: &str) -> Level {
    let t = s.trim();
    if let Ok(n) = t.parse::<f64>() {
        return match n {
            n if n < 4.0 => Level::Low,
            n if n < 7.0 => Level::Medium,
            n if n < 9.0 => Level::High,
            _ => Level::Critical,
        };
    }
    match t.to_ascii_lowercase().as_str() {
        "low" => Level::Low,
        "high" => Level::High,
        "very-high" | "very high" | "veryhigh" | "very_high" | "critical" => Level::Critical,
        _ => Level::Medium,
    }
}

/// A label as a flat snake_case key (`Rule Name` → `rule_name`).
pub(crate) fn snake_case(label: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in label.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// A CEF or LEEF timestamp: epoch milliseconds (or seconds, for 9-11 digits), RFC 3339, or
/// `MMM dd yyyy HH:mm:ss[.SSS][ zone]` (also `MMM-dd-yyyy`). Without a zone, UTC.
pub(crate) fn parse_timestamp(v: &str) -> Option<OffsetDateTime> {
    parse_timestamp_in(v, None)
}

/// [`parse_timestamp`], with a time that names no zone read in `zone` (the device's: an IANA
/// name such as `Europe/Berlin`, or what [`parse_zone`] reads) when it is known.
pub(crate) fn parse_timestamp_in(v: &str, zone: Option<&str>) -> Option<OffsetDateTime> {
    let v = v.trim().trim_matches('"').trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        let n: i128 = v.parse().ok()?;
        return match v.len() {
            12..=14 => OffsetDateTime::from_unix_timestamp_nanos(n.checked_mul(1_000_000)?).ok(),
            9..=11 => OffsetDateTime::from_unix_timestamp_nanos(n.checked_mul(1_000_000_000)?).ok(),
            _ => None,
        };
    }
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t);
    }
    parse_month_first(v, zone, OffsetDateTime::now_utc())
}

/// The offset of `zone` at the local time `local`: a fixed zone as [`parse_zone`] reads it, or
/// an IANA time zone name (daylight saving applied; of a repeated hour, the first).
pub(crate) fn zone_offset_at(
    zone: &str,
    local: time::PrimitiveDateTime,
) -> Option<time::UtcOffset> {
    let zone = zone.trim();
    if let Some(off) = parse_zone(zone) {
        return Some(off);
    }
    if matches!(zone, "UTC" | "GMT" | "Z") {
        return Some(time::UtcOffset::UTC);
    }
    use chrono::{Offset, TimeZone};
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(
        local.year(),
        u32::from(u8::from(local.month())),
        u32::from(local.day()),
    )?;
    let naive = date.and_hms_nano_opt(
        u32::from(local.hour()),
        u32::from(local.minute()),
        u32::from(local.second()),
        local.nanosecond(),
    )?;
    // a time skipped by a daylight saving change is read with the offset before it
    let off = match tz.offset_from_local_datetime(&naive) {
        chrono::LocalResult::Single(o) | chrono::LocalResult::Ambiguous(o, _) => o.fix(),
        chrono::LocalResult::None => tz
            .offset_from_utc_datetime(&(naive - chrono::Duration::hours(3)))
            .fix(),
    };
    time::UtcOffset::from_whole_seconds(off.local_minus_utc()).ok()
}

/// `MMM dd [yyyy] HH:mm:ss[.SSS] [zone]` (the CEF specification's forms for `rt`, `start` and
/// `end`, with or without the year). Without a year, the time is put in `now`'s year, or the
/// year before when that would place it more than a week ahead (as syslog's RFC 3164 times).
fn parse_month_first(
    v: &str,
    default_zone: Option<&str>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let mut tokens: Vec<&str> = Vec::new();
    for (n, t) in v.split_whitespace().enumerate() {
        if n == 0 && t.contains('-') {
            tokens.extend(t.split('-'));
        } else {
            tokens.push(t);
        }
    }
    let (mon, day, year, time, rest) = match tokens.as_slice() {
        [mon, day, time, rest @ ..] if time.contains(':') => (mon, day, None, time, rest),
        [mon, day, year, time, rest @ ..] => {
            (mon, day, Some(digits::<i32>(year, 4, 4)?), time, rest)
        }
        _ => return None,
    };
    let month = month_from_abbrev(mon)?;
    let day: u8 = digits(day, 1, 2)?;
    let time = parse_hms(time)?;
    let at = |year: i32| -> Option<OffsetDateTime> {
        let date = time::Date::from_calendar_date(year, month, day).ok()?;
        let local = time::PrimitiveDateTime::new(date, time);
        let offset = match rest {
            [] => default_zone
                .and_then(|z| zone_offset_at(z, local))
                .unwrap_or(time::UtcOffset::UTC),
            [zone] => zone_offset_at(zone, local)?,
            _ => return None,
        };
        Some(local.assume_offset(offset))
    };
    match year {
        Some(y) => at(y),
        None => {
            let y = now.year();
            match at(y) {
                Some(t) if t - now > time::Duration::days(7) => at(y - 1),
                Some(t) => Some(t),
                // 29 February outside a leap year: the last leap year before
                None => (1..=4).find_map(|back| at(y - back)),
            }
        }
    }
}

/// A zone: an abbreviation (`GMT`, `EDT`...), `Z`, `+hh:mm`, `+hhmm`, `+hh`, or `GMT+hh:mm`.
pub(crate) fn parse_zone(z: &str) -> Option<time::UtcOffset> {
    if let Some(off) = zone_abbrev_offset(z) {
        return Some(off);
    }
    let z = z
        .strip_prefix("GMT")
        .or_else(|| z.strip_prefix("UTC"))
        .unwrap_or(z);
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1i8, z.get(1..)?),
        b'-' => (-1i8, z.get(1..)?),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => (rest.get(..2)?, rest.get(2..)?),
        None => (rest, "0"),
    };
    let h: i8 = digits(h, 1, 2)?;
    let m: i8 = digits(m, 1, 2)?;
    time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The specification's forms without a year (`MMM dd HH:mm:ss[.SSS] [zzz]`) take the
    /// receiving year, or the year before when that would put them more than a week ahead.
    #[test]
    fn times_without_a_year_take_the_nearest_past_year() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let at = |v: &str| parse_month_first(v, None, now);
        assert_eq!(at("Jan 01 10:00:00"), Some(datetime!(2026-01-01 10:00 UTC)));
        assert_eq!(
            at("Jan 01 10:00:00.123 UTC"),
            Some(datetime!(2026-01-01 10:00:00.123 UTC))
        );
        assert_eq!(
            at("Feb 27 10:00:00 GMT+01:00"),
            Some(datetime!(2026-02-27 09:00 UTC))
        );
        // December seen in March: last year's
        assert_eq!(
            at("Dec 31 23:59:59"),
            Some(datetime!(2025-12-31 23:59:59 UTC))
        );
        // a few days ahead (a device clock running fast) stays in this year
        assert_eq!(at("Mar 04 08:00:00"), Some(datetime!(2026-03-04 08:00 UTC)));
        // in the device's zone when the time names none
        assert_eq!(
            parse_month_first("Jan 15 14:00:00", Some("Europe/Berlin"), now),
            Some(datetime!(2026-01-15 13:00 UTC))
        );
        // 29 February outside a leap year: the last leap year's
        assert_eq!(at("Feb 29 10:00:00"), Some(datetime!(2024-02-29 10:00 UTC)));
        // not a time
        assert_eq!(at("Jan 01 10h00"), None);
        assert_eq!(at("Foo 01 10:00:00"), None);
        // with the year, as before
        assert_eq!(
            at("Jan 01 2024 10:00:00"),
            Some(datetime!(2024-01-01 10:00 UTC))
        );
    }
}
