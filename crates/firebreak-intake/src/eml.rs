//! Email (RFC 5322 / MIME), read with `mail-parser`: a message reported by an employee (a
//! phishing report, usually with the suspicious message forwarded inline or attached as
//! `message/rfc822`) or a reply to a ticket notification.

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

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

/// The parts of an attached (forwarded) message that triage needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachedMessage {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<MailAddress>,
    pub date: Option<OffsetDateTime>,
    pub text: String,
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
    /// Messages attached as `message/rfc822` (also listed in `attachments`).
    pub attached_messages: Vec<AttachedMessage>,
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
        date: message.date().and_then(to_offset_datetime),
        text: body_text(&message),
        in_reply_to: header_ids(message.in_reply_to()),
        references: header_ids(message.references()),
        ..ParsedMail::default()
    };
    for part in message.attachments() {
        let bytes = part.contents().to_vec();
        let content_type = part
            .content_type()
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
            .to_ascii_lowercase();
        mail.attachments.push(MailAttachment {
            filename: part.attachment_name().map(str::to_owned),
            content_type,
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
        });
        if let Some(inner) = part.message() {
            mail.attached_messages.push(AttachedMessage {
                message_id: inner.message_id().map(str::to_owned),
                subject: inner.subject().map(str::to_owned),
                from: inner.from().and_then(first_address),
                date: inner.date().and_then(to_offset_datetime),
                text: body_text(inner),
            });
        }
    }
    Ok(mail)
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
    }
    for a in &mail.attachments {
        if let Some(name) = a.filename.as_deref().filter(|n| !n.trim().is_empty()) {
            obs.push(Observable::new(ObservableKind::Filename, name.trim()));
        }
        obs.push(Observable::new(ObservableKind::Sha256, a.sha256.clone()));
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
    e.raw = raw.to_owned();
    e
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
}
