//! Email (RFC 5322 / MIME), read with `mail-parser`: a message reported by an employee (a
//! phishing report, usually with the suspicious message forwarded inline or attached as
//! `message/rfc822`) or a reply to a ticket notification.

use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::observables::{self, dedup, email_domain, extract};
use crate::{NormalizedEvent, Observable, ObservableKind, ParseError, Reporter, clean_title};

/// Descriptions are capped at this many bytes (the whole message stays in `raw`).
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;

/// A mailbox: the address and the display name, as the header gave them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailAddress {
    pub address: Option<String>,
    pub name: Option<String>,
}

/// One attachment, decoded. A forwarded message (`message/rfc822`) is an attachment too; its
/// bytes are the message as attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAttachment {
    pub filename: Option<String>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
}

/// Attached messages are followed this many levels down (mail-parser itself decodes three).
pub const MAX_NESTING: usize = 8;
/// At most this many attachments of attached messages are recorded (all levels together).
pub const MAX_NESTED_ATTACHMENTS: usize = 256;
/// At most this many links are read from one message's HTML.
pub const MAX_HTML_LINKS: usize = 512;

/// An attachment of an attached message: what triage needs of it (its bytes are inside the
/// attached message's own bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedAttachment {
    pub filename: Option<String>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    pub size: usize,
    /// SHA-256 of the decoded bytes, lowercase hex.
    pub sha256: String,
}

/// The parts of an attached (forwarded) message that triage needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachedMessage {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<MailAddress>,
    pub date: Option<OffsetDateTime>,
    pub text: String,
    /// `href`, `src` and `action` values of its HTML bodies, entity-decoded.
    pub html_links: Vec<String>,
    /// 1 for a message attached to the mail, 2 for one attached to that one, and so on.
    pub depth: usize,
    /// Its own attachments (an attached message among them is listed in
    /// [`ParsedMail::attached_messages`] too, one level deeper).
    pub attachments: Vec<NestedAttachment>,
}

/// One email, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMail {
    /// Without the angle brackets.
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<MailAddress>,
    pub to: Vec<MailAddress>,
    pub cc: Vec<MailAddress>,
    pub date: Option<OffsetDateTime>,
    /// The text body: the text/plain parts, or the HTML converted to text when there are none.
    pub text: String,
    pub attachments: Vec<MailAttachment>,
    /// Messages attached as `message/rfc822` (also listed in `attachments`), and the messages
    /// attached to those, depth first, up to [`MAX_NESTING`] levels.
    pub attached_messages: Vec<AttachedMessage>,
    /// More attachments of attached messages than [`MAX_NESTED_ATTACHMENTS`] (the rest are
    /// not listed).
    pub nested_truncated: bool,
    /// `href`, `src` and `action` values of the HTML bodies, entity-decoded.
    pub html_links: Vec<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

/// Parse an RFC 5322 message. An error when the bytes are not a mail at all (no header).
pub fn parse(bytes: &[u8]) -> Result<ParsedMail, ParseError> {
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ParseError::new("message", "not an email message"))?;
    if !message.headers().iter().any(|h| is_mail_header(h.name())) {
        return Err(ParseError::new(
            "headers",
            "not an email message: no RFC 5322 header",
        ));
    }
    let mut mail = ParsedMail {
        message_id: message.message_id().map(str::to_owned),
        subject: message.subject().map(str::to_owned),
        from: message.from().and_then(first_address),
        to: message.to().map(all_addresses).unwrap_or_default(),
        cc: message.cc().map(all_addresses).unwrap_or_default(),
        date: message_date(&message),
        text: body_text(&message),
        html_links: html_links(&message),
        in_reply_to: header_ids(message.in_reply_to()),
        references: header_ids(message.references()),
        ..ParsedMail::default()
    };
    let mut budget = MAX_NESTED_ATTACHMENTS;
    for part in message.attachments() {
        let bytes = part.contents().to_vec();
        mail.attachments.push(MailAttachment {
            filename: part.attachment_name().map(str::to_owned),
            content_type: content_type(part),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
        });
        if let Some(inner) = part.message() {
            attached_message(inner, 1, &mut budget, &mut mail);
        }
    }
    Ok(mail)
}

/// `type/subtype` of a part, lowercase.
fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| {
            if part.is_message() {
                "message/rfc822".to_owned()
            } else {
                "application/octet-stream".to_owned()
            }
        })
        .to_ascii_lowercase()
}

/// Records an attached message at `depth` and, depth first, the messages attached to it,
/// with at most `budget` attachments over all levels.
fn attached_message(inner: &Message<'_>, depth: usize, budget: &mut usize, mail: &mut ParsedMail) {
    let at = mail.attached_messages.len();
    mail.attached_messages.push(AttachedMessage {
        message_id: inner.message_id().map(str::to_owned),
        subject: inner.subject().map(str::to_owned),
        from: inner.from().and_then(first_address),
        date: message_date(inner),
        text: body_text(inner),
        html_links: html_links(inner),
        depth,
        attachments: Vec::new(),
    });
    for part in inner.attachments() {
        if *budget == 0 {
            mail.nested_truncated = true;
            return;
        }
        *budget -= 1;
        let bytes = part.contents();
        let attachment = NestedAttachment {
            filename: part.attachment_name().map(str::to_owned),
            content_type: content_type(part),
            size: bytes.len(),
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        if let Some(m) = mail.attached_messages.get_mut(at) {
            m.attachments.push(attachment);
        }
        if let Some(next) = part.message() {
            if depth < MAX_NESTING {
                attached_message(next, depth + 1, budget, mail);
            } else {
                mail.nested_truncated = true;
            }
        }
    }
}

/// Headers that only an email message has (an arbitrary `key: value` line is not enough).
fn is_mail_header(name: &str) -> bool {
    const NAMES: [&str; 13] = [
        "from",
        "sender",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "received",
        "return-path",
        "mime-version",
        "content-type",
        "reply-to",
        "in-reply-to",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn first_address(a: &Address<'_>) -> Option<MailAddress> {
    a.first().map(|x| MailAddress {
        address: x.address().map(str::to_owned),
        name: x.name().map(str::to_owned),
    })
}

fn all_addresses(a: &Address<'_>) -> Vec<MailAddress> {
    a.iter()
        .map(|x| MailAddress {
            address: x.address().map(str::to_owned),
            name: x.name().map(str::to_owned),
        })
        .collect()
}

fn header_ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn to_offset_datetime(d: &mail_parser::DateTime) -> Option<OffsetDateTime> {
    if !d.is_valid() {
        return None;
    }
    let utc = OffsetDateTime::from_unix_timestamp(d.to_timestamp()).ok()?;
    let sign: i8 = if d.tz_before_gmt { -1 } else { 1 };
    let h = i8::try_from(d.tz_hour).ok()?;
    let m = i8::try_from(d.tz_minute).ok()?;
    let offset = UtcOffset::from_hms(sign * h, sign * m, 0).unwrap_or(UtcOffset::UTC);
    Some(utc.to_offset(offset))
}

/// The `Date` header: read per RFC 5322 §3.3 with the obsolete forms of §4.3 (a two- or
/// three-digit year, no seconds, `UT`/`GMT`/North American zone names, military letters),
/// else as mail-parser reads it (a year before 1900 is not taken: it is a misread).
fn message_date(message: &Message<'_>) -> Option<OffsetDateTime> {
    message
        .header_raw(HeaderName::Date)
        .and_then(parse_rfc5322_date)
        .or_else(|| {
            message
                .date()
                .filter(|d| d.year >= 1900)
                .and_then(to_offset_datetime)
        })
}

/// Removes RFC 5322 comments (nested parentheses, `\` escapes); `None` when one is unclosed.
fn strip_comments(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in s.chars() {
        if depth > 0 {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                out.push(' ');
            }
        } else if c == '(' {
            depth = 1;
        } else {
            out.push(c);
        }
    }
    (depth == 0).then_some(out)
}

/// An RFC 5322 `date-time`, the obsolete syntax (§4.3) included:
/// `[day-of-week ","] day month year hour ":" minute [":" second] zone`.
pub fn parse_rfc5322_date(value: &str) -> Option<OffsetDateTime> {
    let text = strip_comments(value)?;
    // obsolete syntax allows folding white space around the `:` of the time
    let mut text = text.replace(',', " , ");
    while text.contains(" :") || text.contains(": ") {
        text = text.replace(" :", ":").replace(": ", ":");
    }
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    if let Some(i) = tokens.iter().position(|t| *t == ",") {
        let day_name = tokens.get(..i)?;
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        if i != 1
            || !day_name
                .iter()
                .all(|d| DAYS.iter().any(|n| n.eq_ignore_ascii_case(d)))
        {
            return None;
        }
        tokens.drain(..=i);
    } else if tokens
        .first()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return None;
    }
    let [day, month, year, time, zone] = tokens.as_slice() else {
        return None;
    };
    let digits = |t: &str, min: usize, max: usize| -> Option<u32> {
        (t.len() >= min && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let day = u8::try_from(digits(day, 1, 2)?).ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month_index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))?;
    let month = Month::try_from(u8::try_from(month_index + 1).ok()?).ok()?;
    let year = match year.len() {
        // §4.3: a two-digit year is 2000 + it below 50, else 1900 + it; three digits, 1900 + it
        2 => match digits(year, 2, 2)? {
            y if y < 50 => 2000 + y,
            y => 1900 + y,
        },
        3 => 1900 + digits(year, 3, 3)?,
        _ => digits(year, 4, 4)?,
    };
    let mut hms = time.split(':');
    let hour = u8::try_from(digits(hms.next()?, 2, 2)?).ok()?;
    let minute = u8::try_from(digits(hms.next()?, 2, 2)?).ok()?;
    let second = match hms.next() {
        // a leap second is read as the second before it
        Some(s) => u8::try_from(digits(s, 2, 2)?).ok()?.min(59),
        None => 0,
    };
    if hms.next().is_some() {
        return None;
    }
    let offset = zone_offset(zone)?;
    let date = Date::from_calendar_date(i32::try_from(year).ok()?, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// `+hhmm`/`-hhmm`, or an obsolete zone name (RFC 5322 §4.3): `UT`, `GMT`, the North
/// American zones, and the military letters, which §4.3 says to read as `-0000` (UTC, the
/// local zone unknown).
fn zone_offset(zone: &str) -> Option<UtcOffset> {
    if let Some(rest) = zone.strip_prefix(['+', '-']) {
        if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let h: i8 = rest.get(..2)?.parse().ok()?;
        let m: i8 = rest.get(2..)?.parse().ok()?;
        if m > 59 {
            return None;
        }
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        return UtcOffset::from_hms(sign * h, sign * m, 0).ok();
    }
    let hours: i8 = match zone.to_ascii_uppercase().as_str() {
        "UT" | "GMT" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        z if z.len() == 1 && z.bytes().all(|b| b.is_ascii_alphabetic() && b != b'J') => 0,
        _ => return None,
    };
    UtcOffset::from_hms(hours, 0, 0).ok()
}

/// The `href`, `src`, `action` (and `formaction`) values of a message's HTML bodies (the HTML
/// of `multipart/alternative` included), entity-decoded, in order, without repeats.
fn html_links(message: &Message<'_>) -> Vec<String> {
    let mut links = Vec::new();
    for part in message.html_bodies() {
        if let PartType::Html(html) = &part.body {
            collect_html_links(html, &mut links);
        }
    }
    links
}

/// Reads the link attributes of the tags of `html` into `out` (up to [`MAX_HTML_LINKS`]).
fn collect_html_links(html: &str, out: &mut Vec<String>) {
    let b = html.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < MAX_HTML_LINKS {
        if b.get(i) != Some(&b'<') {
            i += 1;
            continue;
        }
        // a comment is skipped whole
        if b.get(i + 1..i + 4) == Some(b"!--") {
            i = html
                .get(i + 4..)
                .and_then(|r| r.find("-->"))
                .map_or(b.len(), |e| i + 4 + e + 3);
            continue;
        }
        i += 1;
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        // the tag name
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'>' && *c != b'/')
        {
            i += 1;
        }
        // attributes, up to the end of the tag
        loop {
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
            {
                i += 1;
            }
            match b.get(i) {
                None => return,
                Some(b'>') => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            let name_start = i;
            while b
                .get(i)
                .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b'>' | b'/'))
            {
                i += 1;
            }
            let name = html.get(name_start..i).unwrap_or("");
            if name.is_empty() {
                // a stray `=` or quote: step over it
                i += 1;
                continue;
            }
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                continue;
            }
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            let value = match b.get(i) {
                Some(q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = b
                        .get(start..)
                        .and_then(|r| r.iter().position(|c| c == q))
                        .map_or(b.len(), |p| start + p);
                    i = (end + 1).min(b.len());
                    html.get(start..end).unwrap_or("")
                }
                _ => {
                    let start = i;
                    while b
                        .get(i)
                        .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'>')
                    {
                        i += 1;
                    }
                    html.get(start..i).unwrap_or("")
                }
            };
            let wanted = ["href", "src", "action", "formaction"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name));
            if wanted {
                // browsers drop tabs and newlines from URLs and trim the ends
                let link: String = decode_entities(value)
                    .chars()
                    .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                    .collect();
                let link = link.trim();
                if !link.is_empty() && !out.iter().any(|l| l == link) {
                    out.push(link.to_owned());
                }
            }
        }
    }
}

/// Decodes HTML character references: the named ones mail uses, `&#NN;` and `&#xHH;`.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(rest.get(..p).unwrap_or(""));
        rest = rest.get(p..).unwrap_or("");
        let end = rest
            .get(1..)
            .and_then(|r| r.find(';'))
            .filter(|e| *e <= 32)
            .map(|e| e + 1);
        let decoded = end.and_then(|e| {
            let name = rest.get(1..e)?;
            let c = if let Some(num) = name.strip_prefix('#') {
                let n = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => num.parse::<u32>().ok()?,
                };
                char::from_u32(n).filter(|c| *c != '\0')?
            } else {
                match name {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    "nbsp" => '\u{a0}',
                    "sol" => '/',
                    "colon" => ':',
                    "period" => '.',
                    "quest" => '?',
                    "equals" => '=',
                    "num" => '#',
                    "percnt" => '%',
                    _ => return None,
                }
            };
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = rest.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

fn body_text(message: &Message<'_>) -> String {
    let mut parts = Vec::new();
    for i in 0..message.text_body_count() {
        if let Some(t) = message.body_text(i) {
            parts.push(t.into_owned());
        }
    }
    parts.join("\n").replace("\r\n", "\n")
}

/// A ticket number in a subject: `[SEC-000042]` or `SEC-42` for prefix `SEC` (any case), the
/// prefix not glued to a preceding word nor the number to a following one.
pub fn ticket_number_in_subject(subject: &str, prefix: &str) -> Option<i64> {
    let prefix = prefix.trim().trim_end_matches('-');
    if prefix.is_empty() {
        return None;
    }
    let b = subject.as_bytes();
    let p = prefix.as_bytes();
    let mut i = 0;
    while i + p.len() < b.len() {
        let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let start_ok = i == 0 || b.get(i - 1).is_some_and(|&c| !is_word(c));
        let matches = b
            .get(i..i + p.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(p));
        if start_ok && matches && b.get(i + p.len()) == Some(&b'-') {
            let ds = i + p.len() + 1;
            let n = b
                .get(ds..)
                .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
            let end_ok = b.get(ds + n).is_none_or(|&c| !is_word(c));
            if n > 0
                && end_ok
                && let Some(num) = subject.get(ds..ds + n).and_then(|d| d.parse::<i64>().ok())
            {
                return Some(num);
            }
        }
        i += 1;
    }
    None
}

/// Cut `s` to at most `max` bytes at a char boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The event for a reported email: the sender is the reporter (an employee), the subject the
/// title, the body the description. Observables: those in the subject and body, in each
/// attached message (its sender, subject and text), the attachments' names and SHA-256s; never
/// the reporter's own address or domain, nor the addresses the mail was sent to.
pub fn to_event(mail: &ParsedMail, raw: &str) -> NormalizedEvent {
    let title = mail
        .subject
        .as_deref()
        .map(clean_title)
        .filter(|t| t != "(untitled event)")
        .unwrap_or_else(|| "(no subject)".to_owned());
    let mut e = NormalizedEvent::new("employee", "email", title);
    let from_address = mail.from.as_ref().and_then(|f| f.address.clone());
    e.reporter = Some(Reporter {
        kind: "employee".into(),
        name: mail.from.as_ref().and_then(|f| f.name.clone()),
        contact: from_address.clone(),
    });
    let body = mail.text.trim();
    if !body.is_empty() {
        e.description = Some(truncate_bytes(body, MAX_DESCRIPTION_BYTES).to_owned());
    }
    e.occurred_at = mail.date;

    let mut obs: Vec<Observable> = Vec::new();
    let subject = mail.subject.as_deref().unwrap_or("");
    obs.extend(extract(&format!("{subject}\n{body}")));
    link_observables(&mail.html_links, &mut obs);
    for m in &mail.attached_messages {
        if let Some(addr) = m.from.as_ref().and_then(|f| f.address.as_deref())
            && let Some(o) = observables::classify(Some(ObservableKind::Email), addr)
        {
            if let Some(d) = email_domain(&o.value) {
                obs.push(o);
                obs.push(Observable::new(ObservableKind::Domain, d));
            } else {
                obs.push(o);
            }
        }
        let text = format!("{}\n{}", m.subject.as_deref().unwrap_or(""), m.text.trim());
        obs.extend(extract(&text));
        link_observables(&m.html_links, &mut obs);
    }
    let nested = mail
        .attached_messages
        .iter()
        .flat_map(|m| m.attachments.iter().map(move |a| (m.depth, a)));
    let listed: Vec<(usize, Option<&str>, &str, usize, &str)> = mail
        .attachments
        .iter()
        .map(|a| {
            let name = a.filename.as_deref();
            (
                0,
                name,
                a.content_type.as_str(),
                a.bytes.len(),
                a.sha256.as_str(),
            )
        })
        .chain(nested.map(|(depth, a)| {
            let name = a.filename.as_deref();
            (
                depth,
                name,
                a.content_type.as_str(),
                a.size,
                a.sha256.as_str(),
            )
        }))
        .collect();
    for (_, name, _, _, sha256) in &listed {
        if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
            obs.push(Observable::new(ObservableKind::Filename, name.trim()));
        }
        obs.push(Observable::new(ObservableKind::Sha256, *sha256));
    }
    // The reporter and the mailboxes the report went to (the security team, Firebreak) are
    // not observables of what is reported.
    let reporter = from_address.as_deref().map(str::to_ascii_lowercase);
    let reporter_domain = reporter.as_deref().and_then(email_domain);
    let own: Vec<String> = reporter
        .iter()
        .cloned()
        .chain(
            mail.to
                .iter()
                .chain(&mail.cc)
                .filter_map(|a| a.address.as_deref())
                .map(str::to_ascii_lowercase),
        )
        .collect();
    e.observables = dedup(obs.into_iter().filter(|o| match o.kind {
        ObservableKind::Email => !own.contains(&o.value),
        ObservableKind::Domain => Some(&o.value) != reporter_domain.as_ref(),
        _ => true,
    }));

    if let Some(id) = &mail.message_id {
        e.source_ref = Some(id.clone());
        e.dedup_key = Some(format!("email:{id}"));
    }
    let f = &mut e.fields;
    if let Some(a) = &from_address {
        f.insert("from".into(), a.as_str().into());
    }
    let to: Vec<serde_json::Value> = mail
        .to
        .iter()
        .filter_map(|a| a.address.as_deref())
        .map(Into::into)
        .collect();
    f.insert("to".into(), to.into());
    if let Some(id) = &mail.message_id {
        f.insert("message_id".into(), id.as_str().into());
    }
    f.insert("attachment_count".into(), mail.attachments.len().into());
    if !listed.is_empty() {
        // every attachment, those of attached messages too (`depth` 1 and down)
        let list: Vec<serde_json::Value> = listed
            .iter()
            .map(|(depth, name, ct, size, sha256)| {
                serde_json::json!({
                    "filename": name,
                    "content_type": ct,
                    "size": size,
                    "sha256": sha256,
                    "depth": depth,
                })
            })
            .collect();
        f.insert("attachments".into(), list.into());
    }
    if mail.nested_truncated {
        f.insert("attachments_truncated".into(), true.into());
    }
    e.raw = raw.to_owned();
    e
}

/// Observables of links read from HTML: web URLs (and their host), and `mailto:` addresses.
/// Relative links and other schemes (`cid:`, `data:`, `tel:`...) give none.
fn link_observables(links: &[String], obs: &mut Vec<Observable>) {
    for link in links {
        let lower = link
            .get(..7)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if lower == "mailto:" {
            let to = link.get(7..).unwrap_or("");
            let to = to.split('?').next().unwrap_or("");
            for addr in to.split(',') {
                let addr = addr.trim().replace("%40", "@");
                obs.extend(observables::classify(Some(ObservableKind::Email), &addr));
            }
            continue;
        }
        let Some((scheme, rest)) = link.split_once("://") else {
            continue;
        };
        if !["http", "https", "ftp"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            continue;
        }
        let Some(url) = observables::classify(Some(ObservableKind::Url), link)
            .filter(|o| o.kind == ObservableKind::Url)
        else {
            continue;
        };
        obs.push(url);
        let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if host.starts_with('[') {
            host.split_once(']')
                .map_or(host, |(h, _)| h.trim_start_matches('['))
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        obs.extend(observables::classify(Some(ObservableKind::Domain), host));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/eml: a `message/rfc822` part holding another one with an empty body, right
    /// before the closing boundary, trips a `debug_assert!` in mail-parser 0.11 (a panic in
    /// debug builds; release builds recover). The workspace's dev profile turns that crate's
    /// debug assertions off (Cargo.toml), so debug builds read it as release ones do.
    #[test]
    fn nested_empty_rfc822_part_does_not_panic() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\
            Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n\n--b--\n";
        let mail = parse(raw).expect("a mail with a damaged attachment is still a mail");
        let _ = to_event(&mail, &String::from_utf8_lossy(raw));
    }

    #[test]
    fn obsolete_date_forms_per_rfc5322_section_4_3() {
        let at = |s: &str| {
            parse_rfc5322_date(s).map(|d| (d.unix_timestamp(), d.offset().whole_seconds()))
        };
        let utc_2024 = Some((1_714_468_500, 0)); // 2024-04-30T09:15:00Z
        assert_eq!(at("Tue, 30 Apr 2024 09:15:00 +0000"), utc_2024);
        assert_eq!(at("Tue, 30 Apr 24 09:15 GMT"), utc_2024);
        assert_eq!(at("30 Apr 24 09:15:00 UT"), utc_2024);
        assert_eq!(
            at("Tue, 30 Apr 24 09:15 Z"),
            utc_2024,
            "military zones are -0000"
        );
        assert_eq!(at("Tue, 30 Apr 24 09:15 a"), utc_2024);
        assert_eq!(
            at("Tue , 30 Apr 24 09 : 15 : 00 GMT (comment (nested))"),
            utc_2024
        );
        // 00-49 are 20xx, 50-99 19xx; three digits are 1900 + them
        assert_eq!(at("1 Jan 49 00:00 +0000").map(|t| t.0), Some(2_493_072_000));
        assert_eq!(at("1 Jan 50 00:00 +0000").map(|t| t.0), Some(-631_152_000));
        assert_eq!(
            at("1 Jan 124 00:00 +0000").map(|t| t.0),
            Some(1_704_067_200)
        );
        // North American zones
        assert_eq!(
            at("Tue, 30 Apr 2024 02:15 PDT"),
            Some((1_714_468_500, -7 * 3600))
        );
        assert_eq!(
            at("Tue, 30 Apr 2024 04:15:00 EST"),
            Some((1_714_468_500, -5 * 3600))
        );
        assert_eq!(
            at("Tue, 30 Apr 2024 11:15:00 +0200"),
            Some((1_714_468_500, 7200))
        );
        for bad in [
            "",
            "30 Apr 24",
            "Tue, 31 Feb 2024 09:15 GMT",
            "Tue, 30 Foo 2024 09:15 GMT",
            "Tue, 30 Apr 2024 24:15 GMT",
            "Tue, 30 Apr 2024 09:15 J",
            "Tue, 30 Apr 2024 09:15 XYZ",
            "Tue, 30 Apr 2024 09:15 +02",
            "Tue, 30 Apr 2024 09:15:00 +0000 (unclosed",
            "Someday, 30 Apr 2024 09:15 GMT",
        ] {
            assert_eq!(parse_rfc5322_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn html_links_are_read_from_attributes_and_entity_decoded() {
        let mut links = Vec::new();
        collect_html_links(
            "<p>Hi <a\n HREF = 'https://a.example.org/x?u=1&amp;v=2'>x</a> \
             <img src=https://img.example.net/p.png alt=\"\"> \
             <!-- <a href=\"https://commented.example.com/\"> --> \
             <form method=post action=\"https://post.example.com/login\"><button></form> \
             <a href=\"mailto:Boss@Example.com?subject=hi\">boss</a> \
             <a href=\"ht&#x74;ps://ent.example.com/&#47;p\">e</a><a href=\"#top\">t</a><a href",
            &mut links,
        );
        assert_eq!(
            links,
            [
                "https://a.example.org/x?u=1&v=2",
                "https://img.example.net/p.png",
                "https://post.example.com/login",
                "mailto:Boss@Example.com?subject=hi",
                "https://ent.example.com//p",
                "#top",
            ]
        );
        let mut obs = Vec::new();
        link_observables(&links, &mut obs);
        let values: Vec<(&str, &str)> = obs
            .iter()
            .map(|o| (o.kind.as_str(), o.value.as_str()))
            .collect();
        assert!(
            values.contains(&("url", "https://a.example.org/x?u=1&v=2")),
            "{values:?}"
        );
        assert!(
            values.contains(&("domain", "post.example.com")),
            "{values:?}"
        );
        assert!(
            values
                .iter()
                .any(|(k, v)| *k == "email" && v.eq_ignore_ascii_case("boss@example.com")),
            "{values:?}"
        );
        assert!(!values.iter().any(|(_, v)| v.contains("top")), "{values:?}");
        assert_eq!(
            decode_entities("a &amp;amp; &#65;&#x42; &bogus; & ;"),
            "a &amp; AB &bogus; & ;"
        );
        assert_eq!(
            decode_entities("&#0; &#xD800; &#99999999999;"),
            "&#0; &#xD800; &#99999999999;"
        );
    }

    #[test]
    fn an_html_only_mail_reads_as_text_and_keeps_its_links() {
        let raw = "From: a@b.example\nSubject: s\nContent-Type: text/html\n\n\
            <html><head><style>p{}</style></head><body><p>Dear&nbsp;user,</p><p>Click \
            <a href=\"https://phish.example.org/login?a=1&amp;b=2\">here</a> &amp; verify</p>\
            <script>alert(1)</script></body></html>\n";
        let mail = parse(raw.as_bytes()).unwrap();
        let e = to_event(&mail, raw);
        let d = e.description.unwrap_or_default();
        assert!(d.contains("Click here & verify"), "{d}");
        assert!(
            !d.contains('<') && !d.contains("&amp;") && !d.contains("alert"),
            "{d}"
        );
        assert!(
            e.observables
                .iter()
                .any(|o| o.value == "https://phish.example.org/login?a=1&b=2"),
            "{:?}",
            e.observables
        );
    }

    #[test]
    fn attachments_of_attached_messages_are_bounded() {
        let mut inner =
            String::from("From: x@y.example\nContent-Type: multipart/mixed; boundary=i\n\n");
        for n in 0..MAX_NESTED_ATTACHMENTS + 10 {
            inner.push_str(&format!(
                "--i\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"f{n}.bin\"\n\n{n}\n"
            ));
        }
        inner.push_str("--i--\n");
        let raw = format!(
            "From: r@corp.example\nContent-Type: multipart/mixed; boundary=o\n\n--o\n\
             Content-Type: text/plain\n\nsee attached\n--o\nContent-Type: message/rfc822\n\n{inner}--o--\n"
        );
        let mail = parse(raw.as_bytes()).unwrap();
        assert!(mail.nested_truncated);
        let listed: usize = mail
            .attached_messages
            .iter()
            .map(|m| m.attachments.len())
            .sum();
        assert_eq!(listed, MAX_NESTED_ATTACHMENTS);
        let e = to_event(&mail, &raw);
        assert_eq!(e.fields["attachments_truncated"], true);
        assert!(e.observables.iter().any(|o| o.value == "f0.bin"));
    }
}
