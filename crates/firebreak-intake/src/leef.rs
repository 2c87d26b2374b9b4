//! IBM QRadar Log Event Extended Format (LEEF) 1.0 and 2.0:
//!
//! ```text
//! LEEF:1.0|Vendor|Product|Version|EventID|key=value<TAB>key=value...
//! LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|key=value<DELIM>key=value...
//! ```
//!
//! LEEF 2.0's delimiter field is one character or its hex code (`x09`, `0x09`, `0x5E`); it may be
//! left out (then tab). Predefined keys (IBM's "Predefined LEEF event attributes"): `src`,
//! `dst`, `srcPort`, `dstPort`, `usrName`, `sev` (1-10), `cat`, `devTime` with `devTimeFormat`
//! (a Java `SimpleDateFormat` pattern), `proto`, `identSrc`, `identHostName`, `url`... Senders
//! that put spaces instead of tabs between LEEF 1.0 attributes (seen in the wild) are read like
//! a CEF extension.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::cef::{self, parse_timestamp, parse_zone, split_extension};
use crate::observables::{classify, dedup};
use crate::syslog::{fraction_nanos, month_from_abbrev};
use crate::{Level, NormalizedEvent, ObservableKind, ParseError, ParseResult, clean_title};

/// Parse one LEEF record into one event.
pub fn parse(payload: &str) -> ParseResult {
    let start = payload
        .find("LEEF:")
        .ok_or_else(|| ParseError::new("leef", "no LEEF: header"))?;
    let body = payload
        .get(start + 5..)
        .unwrap_or("")
        .trim_end_matches(['\r', '\n', '\0']);
    let mut parts = body.splitn(6, '|');
    let version = parts.next().unwrap_or("").trim();
    let (Some(vendor), Some(product), Some(dev_version), Some(event_id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::new(
            "header",
            "expected LEEF:Version|Vendor|Product|Version|EventID|",
        ));
    };
    if !matches!(version, "1.0" | "2.0" | "1" | "2") {
        return Err(ParseError::new(
            "version",
            format!("LEEF version {version:?}: 1.0 or 2.0 expected"),
        ));
    }
    let mut attrs = parts.next().unwrap_or("");
    let mut delimiter = '\t';
    if version.starts_with('2') {
        let (cand, after) = attrs.split_once('|').unwrap_or((attrs, ""));
        if let Some(d) = parse_delimiter(cand) {
            delimiter = d;
            attrs = after;
        } else if cand.is_empty() {
            attrs = after;
        }
    }
    let attrs = split_attributes(attrs, delimiter);
    let get = |key: &str| {
        attrs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };

    let event_id = event_id.trim();
    // the sender's own words when it gives them (QRadar DSMs put them in these keys), else
    // the category and the event id
    let message = [
        "msg",
        "message",
        "eventName",
        "name",
        "summary",
        "desc",
        "description",
    ]
    .iter()
    .find_map(|k| get(k));
    let title = match (message, get("cat")) {
        (Some(m), _) => m.to_owned(),
        (None, Some(cat)) if cat != event_id && !event_id.is_empty() => {
            format!("{cat}: {event_id}")
        }
        (None, Some(cat)) if event_id.is_empty() => cat.to_owned(),
        _ => event_id.to_owned(),
    };
    let source_name = format!("{vendor} {product}").trim().to_owned();
    let mut e = NormalizedEvent::new("device", &source_name, clean_title(&title));
    if !event_id.is_empty() {
        e.rule_id = Some(event_id.to_owned());
    }
    match get("sev") {
        Some(sev) => {
            e.severity = cef::level_of_severity(sev);
            e.original_severity = Some(sev.to_owned());
        }
        None => e.severity = Level::Medium,
    }
    // Not predefined keys, but what senders put their text in.
    e.description = ["msg", "summary", "desc", "description"]
        .iter()
        .find_map(|k| get(k))
        .map(str::to_owned);
    e.host = get("identHostName").map(str::to_owned);
    e.occurred_at = get("devTime").and_then(|t| match get("devTimeFormat") {
        Some(fmt) => parse_java_format(t, fmt).or_else(|| parse_timestamp(t)),
        None => parse_timestamp(t),
    });

    let structured: [(&str, Option<ObservableKind>); 10] = [
        ("src", Some(ObservableKind::Ip)),
        ("dst", Some(ObservableKind::Ip)),
        ("identSrc", Some(ObservableKind::Ip)),
        ("identHostName", Some(ObservableKind::Hostname)),
        ("usrName", Some(ObservableKind::User)),
        ("accountName", Some(ObservableKind::User)),
        ("url", Some(ObservableKind::Url)),
        ("fname", Some(ObservableKind::Filename)),
        ("fileHash", Some(ObservableKind::Sha256)),
        ("domain", None),
    ];
    let mut obs = Vec::new();
    for (key, kind) in structured {
        let Some(v) = get(key) else { continue };
        // `domain` is the Windows domain of an identity event: a DNS name only if it looks like one.
        let o = if key == "domain" {
            classify(None, v).filter(|o| o.kind == ObservableKind::Domain)
        } else {
            classify(kind, v)
        };
        if let Some(o) = o {
            obs.push(o);
        }
    }
    e.observables = dedup(obs);

    let f = &mut e.fields;
    f.insert("leef_version".into(), version.into());
    f.insert("device_vendor".into(), vendor.into());
    f.insert("device_product".into(), product.into());
    f.insert("device_version".into(), dev_version.into());
    for (k, v) in &attrs {
        f.insert(k.clone(), v.as_str().into());
    }
    e.raw = payload.to_owned();
    Ok(vec![e])
}

/// A LEEF 2.0 delimiter field: one character, or `x`/`0x` and 1-4 hex digits.
fn parse_delimiter(s: &str) -> Option<char> {
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(c);
    }
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .or_else(|| s.strip_prefix('x'))
        .or_else(|| s.strip_prefix('X'))?;
    if hex.is_empty() || hex.len() > 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    char::from_u32(u32::from_str_radix(hex, 16).ok()?)
}

/// Split attributes at the delimiter. A piece without `key=` belongs to the previous value (the
/// value held the delimiter). Tab-delimited text with no tab but `key=` pairs separated by
/// spaces is split like a CEF extension.
fn split_attributes(s: &str, delimiter: char) -> Vec<(String, String)> {
    if delimiter == '\t' && !s.contains('\t') && s.contains(' ') {
        return split_extension(s, false);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in s.split(delimiter) {
        let key_value = piece.split_once('=').filter(|(k, _)| {
            let k = k.trim();
            !k.is_empty() && !k.contains(char::is_whitespace)
        });
        match key_value {
            Some((k, v)) => out.push((k.trim().to_owned(), v.trim().to_owned())),
            None => {
                if let Some((_, prev)) = out.last_mut() {
                    prev.push(delimiter);
                    prev.push_str(piece);
                }
            }
        }
    }
    out
}

#[derive(Debug)]
enum Token<'a> {
    Field(char, usize),
    Literal(&'a str),
    Space,
}

fn tokenize(fmt: &str) -> Option<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_ascii_alphabetic() {
            let mut n = 1;
            while chars.peek().is_some_and(|&(_, d)| d == c) {
                chars.next();
                n += 1;
            }
            out.push(Token::Field(c, n));
        } else if c == '\'' {
            let start = i + 1;
            let mut end = None;
            for (j, d) in chars.by_ref() {
                if d == '\'' {
                    end = Some(j);
                    break;
                }
            }
            let end = end?;
            let lit = fmt.get(start..end)?;
            out.push(if lit.is_empty() {
                Token::Literal("'")
            } else {
                Token::Literal(lit)
            });
        } else if c.is_whitespace() {
            while chars.peek().is_some_and(|&(_, d)| d.is_whitespace()) {
                chars.next();
            }
            out.push(Token::Space);
        } else {
            out.push(Token::Literal(fmt.get(i..i + c.len_utf8())?));
        }
    }
    Some(out)
}

/// Parse `value` with a Java `SimpleDateFormat` pattern (`MMM dd yyyy HH:mm:ss`,
/// `yyyy-MM-dd'T'HH:mm:ss.SSSZ`...). Supported letters: `y M d H k h K a m s S E z Z X`.
/// Lenient as QRadar is: a separator in the pattern matches any one separator in the value, so
/// `Jun-18-2018` reads with `MMM dd yyyy`. Without a zone the time is UTC.
pub fn parse_java_format(value: &str, fmt: &str) -> Option<OffsetDateTime> {
    let tokens = tokenize(fmt)?;
    let v = value.trim();
    let mut pos = 0usize;
    let mut year: Option<i32> = None;
    let mut month: Option<Month> = None;
    let mut day: u8 = 1;
    let mut hour: u8 = 0;
    let mut pm: Option<bool> = None;
    let mut twelve_hour = false;
    let mut minute: u8 = 0;
    let mut second: u8 = 0;
    let mut nanos: u32 = 0;
    let mut offset = UtcOffset::UTC;

    let rest = |pos: usize| v.get(pos..).unwrap_or("");
    let take_digits = |pos: usize, max: usize| -> (usize, &str) {
        let r = rest(pos);
        let n = r
            .bytes()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        (n, r.get(..n).unwrap_or(""))
    };
    let take_alpha = |pos: usize| -> (usize, &str) {
        let r = rest(pos);
        let n = r.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        (n, r.get(..n).unwrap_or(""))
    };

    for tok in &tokens {
        match *tok {
            Token::Space => {
                let r = rest(pos);
                let n = r.len() - r.trim_start().len();
                if n == 0 && !r.is_empty() {
                    // lenient: another single separator in place of the space
                    let c = r.chars().next()?;
                    if c.is_alphanumeric() {
                        return None;
                    }
                    pos += c.len_utf8();
                } else {
                    pos += n;
                }
            }
            Token::Literal(lit) => {
                let r = rest(pos);
                if r.starts_with(lit) {
                    pos += lit.len();
                } else {
                    let c = r.chars().next()?;
                    let lit_is_sep = lit.chars().all(|l| !l.is_alphanumeric());
                    if !lit_is_sep || c.is_alphanumeric() {
                        return None;
                    }
                    pos += c.len_utf8();
                }
            }
            Token::Field(letter, count) => match letter {
                'y' | 'u' => {
                    let (n, d) = take_digits(pos, if count == 2 { 2 } else { 4 });
                    if n == 0 {
                        return None;
                    }
                    let y: i32 = d.parse().ok()?;
                    year = Some(if count == 2 && n == 2 { 2000 + y } else { y });
                    pos += n;
                }
                'M' | 'L' if count >= 3 => {
                    let (n, word) = take_alpha(pos);
                    month = Some(month_from_abbrev(word)?);
                    pos += n;
                }
                'M' | 'L' => {
                    let (n, d) = take_digits(pos, 2);
                    month = Some(Month::try_from(d.parse::<u8>().ok()?).ok()?);
                    pos += n;
                }
                'd' | 'H' | 'k' | 'h' | 'K' | 'm' | 's' => {
                    let (n, d) = take_digits(pos, 2);
                    let x: u8 = d.parse().ok()?;
                    match letter {
                        'd' => day = x,
                        'H' => hour = x,
                        'k' => hour = x % 24,
                        'h' | 'K' => {
                            hour = x % 12;
                            twelve_hour = true;
                        }
                        'm' => minute = x,
                        _ => second = x.min(59),
                    }
                    pos += n;
                }
                'S' => {
                    let (n, d) = take_digits(pos, 9);
                    nanos = fraction_nanos(d)?;
                    pos += n;
                }
                'a' => {
                    let (n, word) = take_alpha(pos);
                    pm = match word.to_ascii_uppercase().as_str() {
                        "AM" => Some(false),
                        "PM" => Some(true),
                        _ => return None,
                    };
                    pos += n;
                }
                'E' => {
                    let (n, _) = take_alpha(pos);
                    pos += n;
                }
                'z' | 'Z' | 'X' => {
                    let r = rest(pos);
                    let n = r
                        .bytes()
                        .take_while(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b':')
                        })
                        .count();
                    let zone = r.get(..n)?;
                    offset = parse_zone(zone)?;
                    pos += n;
                }
                _ => return None,
            },
        }
    }
    if !rest(pos).trim().is_empty() {
        return None;
    }
    if twelve_hour && pm == Some(true) {
        hour += 12;
    }
    let date = Date::from_calendar_date(year?, month?, day).ok()?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}
