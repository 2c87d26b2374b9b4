//! Syslog: RFC 5424 and RFC 3164 (BSD) messages, and RFC 6587 TCP framing.
//!
//! [`parse`] reads one message (a UDP datagram, or a frame from [`FrameDecoder`]) and tells the
//! two formats apart by the `VERSION` after the PRI (`<34>1 ...` is RFC 5424). BSD messages are
//! read the way relays read them (RFC 3164 §4.3): a missing PRI means `user.notice`, a missing
//! or unreadable TIMESTAMP means there is no HOSTNAME either and the rest is content. Real
//! senders' variations are accepted: a space-padded or unpadded day (`Oct  1`, `May 5`), a
//! year (`Apr 29 2013 12:59:50`, Cisco ASA), fractional seconds, a trailing zone abbreviation,
//! an RFC 3339 timestamp (rsyslog), no hostname (`filterlog[72237]: ...`, pfSense).
//!
//! [`to_events`] turns a message into an event, handing CEF and LEEF payloads to their adapters.

use std::borrow::Cow;

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::{Level, NormalizedEvent, ParseError, ParseResult, cef, clean_title, leef};

/// Facility names, by facility number (RFC 5424 §6.2.1; 13-15 as Linux names them).
pub const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity names, by severity number (RFC 5424 §6.2.1, as syslog(3) spells them).
pub const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Which syslog format a message was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    Rfc3164,
}

/// One parameter of a structured-data element, its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdParam<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

/// One RFC 5424 structured-data element (`[id name="value" ...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    pub id: &'a str,
    pub params: Vec<SdParam<'a>>,
}

/// One syslog message. `None` stands for the NILVALUE `-` and for what a BSD message lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogMessage<'a> {
    pub format: SyslogFormat,
    /// 0-23 (`user` = 1 when the message had no PRI).
    pub facility: u8,
    /// 0-7 (`notice` = 5 when the message had no PRI).
    pub severity: u8,
    pub timestamp: Option<OffsetDateTime>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub proc_id: Option<&'a str>,
    pub msg_id: Option<&'a str>,
    pub structured_data: Vec<SdElement<'a>>,
    /// The MSG part (without a leading BOM).
    pub message: &'a str,
}

impl SyslogMessage<'_> {
    pub fn facility_name(&self) -> &'static str {
        FACILITY_NAMES
            .get(usize::from(self.facility))
            .copied()
            .unwrap_or("user")
    }
    pub fn severity_name(&self) -> &'static str {
        SEVERITY_NAMES
            .get(usize::from(self.severity))
            .copied()
            .unwrap_or("notice")
    }
}

/// Parse one syslog message. `now` supplies the year (and UTC offset) that an RFC 3164
/// timestamp lacks: the timestamp is put in `now`'s year, or the year before when that would
/// put it more than a week in the future (a December message read in January; a week leaves
/// room for skewed clocks and devices logging in a zone ahead of `now`'s).
pub fn parse(line: &str, now: OffsetDateTime) -> Result<SyslogMessage<'_>, ParseError> {
    let line = line.trim_end_matches(['\n', '\r', '\0']);
    if line.trim().is_empty() {
        return Err(ParseError::new("message", "empty syslog message"));
    }
    let (pri, rest) = match parse_pri(line) {
        Some((pri, rest)) => (Some(pri), rest),
        None => (None, line),
    };
    let (facility, severity) = pri.map_or((1, 5), |p| (p / 8, p % 8));
    if pri.is_some()
        && let Some(after_version) = rest.strip_prefix("1 ")
    {
        return parse_5424(after_version, facility, severity);
    }
    Ok(parse_3164(rest, facility, severity, now))
}

/// As [`parse`], but a message that is not valid RFC 5424 after its `<PRI>1 ` (broken
/// structured data, a bad timestamp) is read as RFC 3164 text instead of refused, with the
/// reason: a listener has no one to refuse a message to, and a log line must not be lost for
/// its header. `Err` only for an empty message.
pub fn parse_lenient(
    line: &str,
    now: OffsetDateTime,
) -> Result<(SyslogMessage<'_>, Option<ParseError>), ParseError> {
    match parse(line, now) {
        Ok(m) => Ok((m, None)),
        Err(e) if line.trim().is_empty() => Err(e),
        Err(e) => {
            let line = line.trim_end_matches(['\n', '\r', '\0']);
            let (facility, severity, rest) = match parse_pri(line) {
                Some((pri, rest)) => (pri / 8, pri % 8, rest.strip_prefix("1 ").unwrap_or(rest)),
                None => (1, 5, line),
            };
            Ok((parse_3164(rest, facility, severity, now), Some(e)))
        }
    }
}

/// `<PRIVAL>` with 1-3 digits and a value of at most 191.
fn parse_pri(line: &str) -> Option<(u8, &str)> {
    let after = line.strip_prefix('<')?;
    let close = after.find('>')?;
    let digits = after.get(..close)?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u16 = digits.parse().ok()?;
    let pri = u8::try_from(pri).ok().filter(|p| *p <= 191)?;
    Some((pri, after.get(close + 1..)?))
}

fn nil(field: &str) -> Option<&str> {
    (field != "-" && !field.is_empty()).then_some(field)
}

/// Split off the next space-delimited header field.
fn next_field<'a>(s: &'a str, name: &str) -> Result<(&'a str, &'a str), ParseError> {
    match s.split_once(' ') {
        Some((f, rest)) => Ok((f, rest)),
        None if !s.is_empty() => Ok((s, "")),
        None => Err(ParseError::new(
            name,
            format!("truncated RFC 5424 header: no {name}"),
        )),
    }
}

fn parse_5424(s: &str, facility: u8, severity: u8) -> Result<SyslogMessage<'_>, ParseError> {
    let (ts, s) = next_field(s, "timestamp")?;
    let (hostname, s) = next_field(s, "hostname")?;
    let (app_name, s) = next_field(s, "app_name")?;
    let (proc_id, s) = next_field(s, "proc_id")?;
    let (msg_id, s) = next_field(s, "msg_id")?;
    let timestamp = nil(ts).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let (structured_data, rest) = parse_structured_data(s)?;
    let msg = rest.strip_prefix(' ').unwrap_or(rest);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Ok(SyslogMessage {
        format: SyslogFormat::Rfc5424,
        facility,
        severity,
        timestamp,
        hostname: nil(hostname),
        app_name: nil(app_name),
        proc_id: nil(proc_id),
        msg_id: nil(msg_id),
        structured_data,
        message: msg,
    })
}

/// STRUCTURED-DATA: `-` or one or more `[SD-ID (SP PARAM="VALUE")*]`, values escaping `"`,
/// `\` and `]` with a backslash (a backslash before anything else is kept as is).
fn parse_structured_data(s: &str) -> Result<(Vec<SdElement<'_>>, &str), ParseError> {
    let err = |m: &str| ParseError::new("structured_data", m);
    if s.is_empty() {
        return Ok((Vec::new(), ""));
    }
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((Vec::new(), rest));
    }
    if !s.starts_with('[') {
        return Err(err("expected '-' or '['"));
    }
    let mut elements = Vec::new();
    let mut rest = s;
    while let Some(body) = rest.strip_prefix('[') {
        let id_end = body
            .find([' ', ']'])
            .ok_or_else(|| err("unterminated SD-ELEMENT"))?;
        let id = body.get(..id_end).unwrap_or("");
        if id.is_empty() || id.contains(['=', '"']) {
            return Err(err("invalid SD-ID"));
        }
        let mut cur = body.get(id_end..).unwrap_or("");
        let mut params = Vec::new();
        loop {
            if let Some(after) = cur.strip_prefix(']') {
                cur = after;
                break;
            }
            let trimmed = cur.trim_start_matches(' ');
            if trimmed.len() == cur.len() {
                return Err(err("expected ' ' or ']' in SD-ELEMENT"));
            }
            cur = trimmed;
            if let Some(after) = cur.strip_prefix(']') {
                cur = after;
                break;
            }
            let eq = cur.find('=').ok_or_else(|| err("SD-PARAM without '='"))?;
            let name = cur.get(..eq).unwrap_or("");
            if name.is_empty() || name.contains([' ', ']', '"']) {
                return Err(err("invalid PARAM-NAME"));
            }
            let after_eq = cur.get(eq + 1..).unwrap_or("");
            let quoted = after_eq
                .strip_prefix('"')
                .ok_or_else(|| err("PARAM-VALUE not quoted"))?;
            let (value, after_value) =
                read_sd_value(quoted).ok_or_else(|| err("unterminated PARAM-VALUE"))?;
            params.push(SdParam { name, value });
            cur = after_value;
        }
        elements.push(SdElement { id, params });
        rest = cur;
    }
    Ok((elements, rest))
}

/// Read a PARAM-VALUE up to its closing quote; return it unescaped and what follows the quote.
fn read_sd_value(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut owned: Option<String> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(s.get(..i)?),
                };
                return Some((value, s.get(i + 1..)?));
            }
            '\\' => {
                let next = chars.clone().next();
                match next {
                    Some((_, n @ ('"' | '\\' | ']'))) => {
                        let o = owned.get_or_insert_with(|| s.get(..i).unwrap_or("").to_owned());
                        o.push(n);
                        chars.next();
                    }
                    _ => {
                        if let Some(o) = owned.as_mut() {
                            o.push('\\');
                        }
                    }
                }
            }
            c => {
                if let Some(o) = owned.as_mut() {
                    o.push(c);
                }
            }
        }
    }
    None
}

fn parse_3164(s: &str, facility: u8, severity: u8, now: OffsetDateTime) -> SyslogMessage<'_> {
    let mut msg = SyslogMessage {
        format: SyslogFormat::Rfc3164,
        facility,
        severity,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: Vec::new(),
        message: s,
    };
    let Some((timestamp, after_ts)) = parse_3164_timestamp(s, now) else {
        // No header: the whole is content; a leading TAG is still recognized.
        let (app, pid, rest) = split_tag(s);
        msg.app_name = app;
        msg.proc_id = pid;
        msg.message = rest;
        return msg;
    };
    msg.timestamp = timestamp;
    let mut rest = after_ts.trim_start_matches(' ');
    let token = rest.split(' ').next().unwrap_or("");
    if !is_tag_token(token) && is_hostname(token) {
        msg.hostname = Some(token);
        rest = rest
            .get(token.len()..)
            .unwrap_or("")
            .trim_start_matches(' ');
        // Cisco ASA: `HOSTNAME : %ASA-...`
        if let Some(after) = rest.strip_prefix(": ") {
            rest = after.trim_start_matches(' ');
        } else if rest == ":" {
            rest = "";
        }
    }
    let (app, pid, rest) = split_tag(rest);
    msg.app_name = app;
    msg.proc_id = pid;
    msg.message = rest;
    msg
}

/// `TAG[PID]: ` or `TAG: ` at the start of the content: the name starts with a letter or digit,
/// holds a letter (`82:` is a Cisco sequence number, not a tag) and no `%`, `=` or `|`.
fn split_tag(s: &str) -> (Option<&str>, Option<&str>, &str) {
    let token = s.split(' ').next().unwrap_or("");
    if !is_tag_token(token) {
        return (None, None, s);
    }
    let core = token.get(..token.len() - 1).unwrap_or("");
    let (name, pid) = match core.split_once('[') {
        Some((n, p)) => (n, p.strip_suffix(']')),
        None => (core, None),
    };
    let rest = s.get(token.len()..).unwrap_or("");
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    (Some(name), pid.filter(|p| !p.is_empty()), rest)
}

fn is_tag_token(token: &str) -> bool {
    let Some(core) = token.strip_suffix(':') else {
        return false;
    };
    let (name, pid) = match core.split_once('[') {
        Some((n, p)) => match p.strip_suffix(']') {
            Some(pid) => (n, Some(pid)),
            None => return false,
        },
        None => (core, None),
    };
    if pid.is_some_and(|p| p.contains(['[', ']'])) {
        return false;
    }
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().any(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

fn is_hostname(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 255
        && (token.parse::<std::net::IpAddr>().is_ok()
            || token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

pub(crate) fn month_from_abbrev(s: &str) -> Option<Month> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let prefix = s.get(..3)?.to_ascii_lowercase();
    let idx = MONTHS.iter().position(|m| *m == prefix)?;
    Month::try_from(u8::try_from(idx + 1).ok()?).ok()
}

/// Offsets of the zone abbreviations that devices append to BSD timestamps.
pub(crate) fn zone_abbrev_offset(s: &str) -> Option<UtcOffset> {
    let hours: i8 = match s.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        "CET" => 1,
        "CEST" => 2,
        "EET" => 2,
        "EEST" => 3,
        "BST" => 1,
        "IST" => 5, // India; 5:30 below
        "JST" => 9,
        _ => return None,
    };
    let minutes = if s.eq_ignore_ascii_case("IST") { 30 } else { 0 };
    UtcOffset::from_hms(hours, minutes, 0).ok()
}

/// Parse `hh:mm:ss[.frac]`.
pub(crate) fn parse_hms(s: &str) -> Option<Time> {
    let (hms, frac) = match s.split_once(['.', ',']) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let h: u8 = digits(it.next()?, 1, 2)?;
    let m: u8 = digits(it.next()?, 1, 2)?;
    let sec: u8 = digits(it.next()?, 1, 2)?;
    if it.next().is_some() {
        return None;
    }
    let nanos = match frac {
        Some(f) => fraction_nanos(f)?,
        None => 0,
    };
    Time::from_hms_nano(h, m, sec.min(59), nanos).ok()
}

/// Digits of a decimal fraction as nanoseconds (`"52"` → 520 000 000).
pub(crate) fn fraction_nanos(f: &str) -> Option<u32> {
    if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = f.parse().ok()?;
    let scale = 10u32.checked_pow(u32::try_from(9 - f.len()).ok()?)?;
    v.checked_mul(scale)
}

pub(crate) fn digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A BSD timestamp at the start of `s`, and what follows it. `Some((None, rest))` never
/// happens: an unreadable timestamp gives `None` and the caller treats `s` as content.
fn parse_3164_timestamp(s: &str, now: OffsetDateTime) -> Option<(Option<OffsetDateTime>, &str)> {
    // rsyslog's high-precision format: an RFC 3339 timestamp in place of the BSD one.
    if s.get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
        && s.get(4..5) == Some("-")
    {
        let (tok, rest) = s.split_once(' ').unwrap_or((s, ""));
        let ts = OffsetDateTime::parse(tok, &Rfc3339).ok()?;
        return Some((Some(ts), rest));
    }
    let month = month_from_abbrev(s)?;
    let after_month = s.get(3..)?;
    if !after_month.starts_with(' ') {
        return None;
    }
    let mut parts = after_month.trim_start_matches(' ');
    let (day_s, rest) = parts.split_once(' ')?;
    let day: u8 = digits(day_s, 1, 2)?;
    parts = rest.trim_start_matches(' ');
    // Optional year (Cisco ASA `Apr 29 2013 12:59:50`).
    let mut year = None;
    if let Some((maybe_year, rest)) = parts.split_once(' ')
        && let Some(y) = digits::<i32>(maybe_year, 4, 4)
    {
        year = Some(y);
        parts = rest.trim_start_matches(' ');
    }
    let mut time_end = parts
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(parts.len());
    // `12:59:50: %ASA` and `12:59:50. text`: the separator is not part of the time.
    while parts
        .get(..time_end)
        .is_some_and(|t| t.ends_with(':') || t.ends_with('.'))
    {
        time_end -= 1;
    }
    let time_s = parts.get(..time_end)?;
    let time = parse_hms(time_s)?;
    let mut rest = parts.get(time_end..)?;
    let mut offset = now.offset();
    // Optional zone abbreviation (`09:34:34 EDT:`).
    if let Some(after_space) = rest.strip_prefix(' ') {
        let tok = after_space.split([' ', ':']).next().unwrap_or("");
        if let Some(off) = zone_abbrev_offset(tok) {
            offset = off;
            rest = after_space.get(tok.len()..).unwrap_or("");
        }
    }
    // Cisco ASA ends the timestamp with a colon: `12:59:50: %ASA-...`.
    if let Some(after_colon) = rest.strip_prefix(':') {
        rest = after_colon;
    }
    let ts = build_bsd_datetime(year, month, day, time, offset, now);
    Some((ts, rest))
}

fn build_bsd_datetime(
    year: Option<i32>,
    month: Month,
    day: u8,
    time: Time,
    offset: UtcOffset,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let make = |y: i32| {
        Date::from_calendar_date(y, month, day)
            .ok()
            .map(|d| PrimitiveDateTime::new(d, time).assume_offset(offset))
    };
    if let Some(y) = year {
        return make(y);
    }
    let this_year = now.year();
    match make(this_year) {
        Some(ts) if ts - now > time::Duration::days(7) => make(this_year - 1),
        Some(ts) => Some(ts),
        // 29 February outside a leap year: the last leap year before.
        None => make(this_year - 1)
            .or_else(|| make(this_year - 2))
            .or_else(|| make(this_year - 3))
            .or_else(|| make(this_year - 4)),
    }
}

/// Level of a syslog severity: 0-2 critical, 3 high, 4 medium, 5-7 low.
pub fn level_of_severity(severity: u8) -> Level {
    match severity {
        0..=2 => Level::Critical,
        3 => Level::High,
        4 => Level::Medium,
        _ => Level::Low,
    }
}

/// A flat snake_case key for an SD-ID and parameter: `sd_<id>_<param>`.
fn sd_key(id: &str, param: &str) -> String {
    let mut key = String::from("sd_");
    let mut last_us = true;
    for c in id.chars().chain(std::iter::once('_')).chain(param.chars()) {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
            last_us = false;
        } else if !last_us {
            key.push('_');
            last_us = true;
        }
    }
    while key.ends_with('_') {
        key.pop();
    }
    key
}

/// The events of one syslog message. A CEF or LEEF payload goes to that adapter (the syslog
/// hostname and timestamp fill in when the payload has none); anything else, and a CEF or LEEF
/// payload the adapter refuses (then `fields.payload_error` says why), is one generic `device`
/// event. `raw` is the record as received (the whole line).
pub fn to_events(msg: &SyslogMessage<'_>, raw: &str) -> ParseResult {
    let payload = msg.message.trim_start();
    let mut payload_error = None;
    if payload.starts_with("CEF:") || payload.starts_with("LEEF:") {
        let parsed = if payload.starts_with("CEF:") {
            cef::parse(payload)
        } else {
            leef::parse(payload)
        };
        match parsed {
            Ok(mut events) => {
                for e in &mut events {
                    if e.host.is_none() {
                        e.host = msg.hostname.map(str::to_owned);
                    }
                    if e.occurred_at.is_none() {
                        e.occurred_at = msg.timestamp;
                    }
                    e.raw = raw.to_owned();
                }
                return Ok(events);
            }
            // A broken payload (often one cut at a UDP size limit) still is a syslog message:
            // report it as one rather than lose it, and say why.
            Err(err) => payload_error = Some(err.to_string()),
        }
    }
    let text = msg.message.trim();
    // An empty MSG (RFC 5424 allows it): the app name and MSGID say what it is.
    let title_text = if text.is_empty() {
        [msg.app_name, msg.msg_id]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text.to_owned()
    };
    let mut e = NormalizedEvent::new(
        "device",
        msg.app_name.unwrap_or("syslog"),
        clean_title(&title_text),
    );
    if !text.is_empty() && e.title != text {
        e.description = Some(text.to_owned());
    }
    e.severity = level_of_severity(msg.severity);
    e.original_severity = Some(msg.severity_name().to_owned());
    e.occurred_at = msg.timestamp;
    e.host = msg.hostname.map(str::to_owned);
    let f = &mut e.fields;
    f.insert("facility".into(), msg.facility_name().into());
    f.insert("severity".into(), msg.severity_name().into());
    for (key, value) in [
        ("app_name", msg.app_name),
        ("proc_id", msg.proc_id),
        ("msg_id", msg.msg_id),
    ] {
        if let Some(v) = value {
            f.insert(key.into(), v.into());
        }
    }
    if let Some(err) = payload_error {
        f.insert("payload_error".into(), err.into());
    }
    for el in &msg.structured_data {
        for p in &el.params {
            f.insert(sd_key(el.id, p.name), p.value.as_ref().into());
        }
    }
    e.raw = raw.to_owned();
    Ok(vec![e])
}

/// Splits a TCP byte stream into syslog frames per RFC 6587: octet counting (`LEN SP MSG`) or
/// non-transparent framing (a frame ends at LF; a CR before it is dropped; NUL also ends a
/// frame), told apart at the start of each frame (a frame starting with a digit is octet
/// counted). Frames longer than the maximum are reported as errors and skipped, without being
/// buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned or discarded.
    start: usize,
    /// Up to here `buf` holds no terminator of the pending non-transparent frame (so a frame
    /// arriving in many small pieces is not rescanned from its start each time).
    scanned: usize,
    max_frame: usize,
    skip: Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// Discard this many more bytes (an oversize octet-counted frame).
    Octets(usize),
    /// Discard up to and including the next LF or NUL (an oversize LF-terminated frame).
    UntilTerminator,
}

/// The most digits an octet count may have (9 digits: < 1 GB).
const MAX_LEN_DIGITS: usize = 9;

fn is_terminator(b: u8) -> bool {
    b == b'\n' || b == 0
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame` bytes (e.g. 64 KiB).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_frame: max_frame.max(1),
            skip: Skip::None,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.discard_skipped();
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Mark `n` more bytes as consumed; reclaim the consumed prefix when it is worth it.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        self.scanned = self.start;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        } else if self.start >= 4096 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
            self.scanned = 0;
        }
    }

    fn discard_skipped(&mut self) {
        match self.skip {
            Skip::None => {}
            Skip::Octets(n) => {
                let k = n.min(self.buffered());
                self.consume(k);
                self.skip = if n == k {
                    Skip::None
                } else {
                    Skip::Octets(n - k)
                };
            }
            Skip::UntilTerminator => {
                let pending = self.buf.get(self.start..).unwrap_or(&[]);
                match pending.iter().position(|&b| is_terminator(b)) {
                    Some(p) => {
                        self.consume(p + 1);
                        self.skip = Skip::None;
                    }
                    None => self.consume(pending.len()),
                }
            }
        }
    }

    /// The next complete frame, `Some(Err)` for a frame that was too long (it is skipped), or
    /// `None` when more bytes are needed. Empty frames (blank lines) are not returned.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, ParseError>> {
        loop {
            self.discard_skipped();
            if self.skip != Skip::None {
                return None;
            }
            // Stray terminators between frames.
            let lead = self
                .buf
                .get(self.start..)?
                .iter()
                .take_while(|&&b| matches!(b, b'\n' | b'\r' | 0))
                .count();
            if lead > 0 {
                self.consume(lead);
            }
            let pending = self.buf.get(self.start..)?;
            let first = *pending.first()?;
            if first.is_ascii_digit() && first != b'0' && self.scanned == self.start {
                let n_digits = pending.iter().take_while(|b| b.is_ascii_digit()).count();
                match pending.get(n_digits) {
                    None if n_digits <= MAX_LEN_DIGITS => return None, // need more
                    Some(b' ') if n_digits <= MAX_LEN_DIGITS => {
                        let len: usize = std::str::from_utf8(pending.get(..n_digits)?)
                            .ok()?
                            .parse()
                            .ok()?;
                        if len > self.max_frame {
                            self.consume(n_digits + 1);
                            self.skip = Skip::Octets(len);
                            self.discard_skipped();
                            return Some(Err(too_long(Some(len), self.max_frame)));
                        }
                        let end = n_digits + 1 + len;
                        let Some(frame) = pending.get(n_digits + 1..end) else {
                            return None; // need more
                        };
                        let frame = frame.to_vec();
                        self.consume(end);
                        return Some(Ok(frame));
                    }
                    _ => {} // not an octet count: a non-transparent frame starting with digits
                }
            }
            let from = self.scanned.max(self.start);
            let found = self.buf.get(from..)?.iter().position(|&b| is_terminator(b));
            match found {
                Some(p) => {
                    let end = from + p;
                    let mut frame = self.buf.get(self.start..end)?.to_vec();
                    self.consume(end + 1 - self.start);
                    if frame.last() == Some(&b'\r') {
                        frame.pop();
                    }
                    if frame.len() > self.max_frame {
                        return Some(Err(too_long(Some(frame.len()), self.max_frame)));
                    }
                    if frame.is_empty() {
                        continue;
                    }
                    return Some(Ok(frame));
                }
                None if self.buffered() > self.max_frame => {
                    let n = self.buffered();
                    self.consume(n);
                    self.skip = Skip::UntilTerminator;
                    return Some(Err(too_long(None, self.max_frame)));
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

fn too_long(len: Option<usize>, max: usize) -> ParseError {
    let message = match len {
        Some(n) => format!("frame of {n} bytes exceeds the maximum of {max}; skipped"),
        None => format!("frame longer than the maximum of {max} bytes; skipped"),
    };
    ParseError::new("frame", message)
}
