//! Golden-file tests for the text adapters (syslog, RFC 6587 framing, CEF, LEEF, email) and
//! unit tests for observable extraction and the parsers' edge cases.
//!
//! Samples live in `tests/samples/<format>/`; each has `<sample>.golden.json` next to it: the
//! adapter's output as pretty JSON (object keys sorted). Run with `FIREBREAK_BLESS=1` to
//! rewrite the goldens, then read them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use firebreak_intake::syslog::{self, FrameDecoder, SyslogFormat};
use firebreak_intake::{Level, Observable, ObservableKind, cef, eml, leef, observables};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

/// The `now` RFC 3164 timestamps take their year from.
const NOW: OffsetDateTime = datetime!(2026-01-15 12:00 UTC);

fn samples(format: &str, exts: &[&str]) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(format);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            !name.ends_with(".golden.json") && exts.iter().any(|x| name.ends_with(x))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    files
}

/// Sort object keys recursively (the map type depends on serde_json features).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Compare with (or, with FIREBREAK_BLESS=1, write) `<sample>.golden.json`; returns a mismatch.
fn golden(sample: &Path, actual: Value) -> Option<String> {
    let name = sample.file_name().unwrap().to_string_lossy();
    let path = sample.with_file_name(format!("{name}.golden.json"));
    let text = serde_json::to_string_pretty(&sorted(actual)).unwrap() + "\n";
    if std::env::var("FIREBREAK_BLESS").as_deref() == Ok("1") {
        fs::write(&path, &text).unwrap();
        return None;
    }
    match fs::read_to_string(&path) {
        Ok(expected) if expected == text => None,
        Ok(_) => Some(format!(
            "{} differs from the output (FIREBREAK_BLESS=1 to rewrite, then review)",
            path.display()
        )),
        Err(_) => Some(format!(
            "{} missing (FIREBREAK_BLESS=1 to write it, then review)",
            path.display()
        )),
    }
}

fn check_all(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

fn lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| t.format(&Rfc3339).unwrap().into())
}

fn syslog_summary(m: &syslog::SyslogMessage<'_>) -> Value {
    let sd: Vec<Value> = m
        .structured_data
        .iter()
        .map(|el| {
            let params: Vec<Value> = el
                .params
                .iter()
                .map(|p| json!([p.name, p.value.as_ref()]))
                .collect();
            json!({"id": el.id, "params": params})
        })
        .collect();
    json!({
        "format": match m.format { SyslogFormat::Rfc5424 => "rfc5424", SyslogFormat::Rfc3164 => "rfc3164" },
        "facility": m.facility_name(),
        "severity": m.severity_name(),
        "timestamp": rfc3339(m.timestamp),
        "hostname": m.hostname,
        "app_name": m.app_name,
        "proc_id": m.proc_id,
        "msg_id": m.msg_id,
        "structured_data": sd,
        "message": m.message,
    })
}

fn result_json(r: firebreak_intake::ParseResult) -> Value {
    match r {
        Ok(events) => json!({ "events": events }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

// ---------------------------------------------------------------- goldens

#[test]
fn golden_syslog() {
    let mut failures = Vec::new();
    for path in samples("syslog", &[".log"]) {
        let out: Vec<Value> = lines(&path)
            .iter()
            .enumerate()
            .map(|(n, line)| match syslog::parse(line, NOW) {
                Ok(m) => json!({
                    "line": n + 1,
                    "parsed": syslog_summary(&m),
                    "result": result_json(syslog::to_events(&m, line)),
                }),
                Err(e) => json!({"line": n + 1, "error": e.to_string()}),
            })
            .collect();
        failures.extend(golden(&path, Value::Array(out)));
    }
    check_all(&failures);
}

fn decode_all(stream: &[u8], chunks: &[usize], max: usize) -> Vec<Result<String, String>> {
    let mut d = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    let drain = |d: &mut FrameDecoder, out: &mut Vec<Result<String, String>>| {
        while let Some(f) = d.next_frame() {
            out.push(
                f.map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string()),
            );
        }
    };
    for &c in chunks {
        let end = (pos + c).min(stream.len());
        d.push(&stream[pos..end]);
        pos = end;
        drain(&mut d, &mut out);
    }
    d.push(&stream[pos..]);
    drain(&mut d, &mut out);
    out
}

#[test]
fn golden_framing() {
    let mut failures = Vec::new();
    for path in samples("framing", &[".bin"]) {
        let stream = fs::read(&path).unwrap();
        let frames = decode_all(&stream, &[], 64 * 1024);
        let out: Vec<Value> = frames
            .into_iter()
            .map(|f| match f {
                Ok(s) => json!({ "frame": s }),
                Err(e) => json!({ "error": e }),
            })
            .collect();
        failures.extend(golden(&path, Value::Array(out)));
    }
    check_all(&failures);
}

#[test]
fn golden_cef() {
    let mut failures = Vec::new();
    for path in samples("cef", &[".log"]) {
        let out: Vec<Value> = lines(&path)
            .iter()
            .map(|l| result_json(cef::parse(l)))
            .collect();
        failures.extend(golden(&path, Value::Array(out)));
    }
    check_all(&failures);
}

#[test]
fn golden_leef() {
    let mut failures = Vec::new();
    for path in samples("leef", &[".log"]) {
        let out: Vec<Value> = lines(&path)
            .iter()
            .map(|l| result_json(leef::parse(l)))
            .collect();
        failures.extend(golden(&path, Value::Array(out)));
    }
    check_all(&failures);
}

fn mail_address(a: &eml::MailAddress) -> Value {
    json!({"address": a.address, "name": a.name})
}

#[test]
fn golden_eml() {
    let mut failures = Vec::new();
    for path in samples("eml", &[".eml"]) {
        let bytes = fs::read(&path).unwrap();
        let raw = String::from_utf8_lossy(&bytes);
        let out = match eml::parse(&bytes) {
            Err(e) => json!({ "error": e.to_string() }),
            Ok(mail) => {
                let event = eml::to_event(&mail, &raw);
                assert_eq!(event.raw, raw, "raw must be the message as received");
                let mut event = serde_json::to_value(&event).unwrap();
                event["raw"] = format!("({} bytes: the message as received)", raw.len()).into();
                let attachments: Vec<Value> = mail
                    .attachments
                    .iter()
                    .map(|a| {
                        json!({
                            "filename": a.filename,
                            "content_type": a.content_type,
                            "size": a.bytes.len(),
                            "sha256": a.sha256,
                        })
                    })
                    .collect();
                let attached: Vec<Value> = mail
                    .attached_messages
                    .iter()
                    .map(|m| {
                        json!({
                            "message_id": m.message_id,
                            "subject": m.subject,
                            "from": m.from.as_ref().map(mail_address),
                            "date": rfc3339(m.date),
                            "text": m.text,
                            "html_links": m.html_links,
                            "depth": m.depth,
                            "attachments": m.attachments.iter().map(|a| json!({
                                "filename": a.filename,
                                "content_type": a.content_type,
                                "size": a.size,
                                "sha256": a.sha256,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "parsed": {
                        "message_id": mail.message_id,
                        "subject": mail.subject,
                        "from": mail.from.as_ref().map(mail_address),
                        "to": mail.to.iter().map(mail_address).collect::<Vec<_>>(),
                        "cc": mail.cc.iter().map(mail_address).collect::<Vec<_>>(),
                        "date": rfc3339(mail.date),
                        "text": mail.text,
                        "attachments": attachments,
                        "attached_messages": attached,
                        "nested_truncated": mail.nested_truncated,
                        "html_links": mail.html_links,
                        "in_reply_to": mail.in_reply_to,
                        "references": mail.references,
                    },
                    "ticket_number_sec": mail.subject.as_deref().and_then(|s| eml::ticket_number_in_subject(s, "SEC")),
                    "event": event,
                })
            }
        };
        failures.extend(golden(&path, out));
    }
    check_all(&failures);
}

// ---------------------------------------------------------------- observables

fn obs(kind: ObservableKind, value: &str) -> Observable {
    Observable::new(kind, value)
}

fn has(list: &[Observable], kind: ObservableKind, value: &str) -> bool {
    list.contains(&obs(kind, value))
}

#[test]
fn regexes_compile() {
    assert!(observables::regexes_ok());
}

#[test]
fn defanged_observables_come_back_refanged() {
    let found = observables::extract(
        "Clicked hxxps://evil[.]example[.]com/login then 1.2.3[.]4; mail user[@]example[.]com \
         or admin(at)phish(dot)co and fxp://files[.]example[.]net/a.zip, hXXp[:]//198.51.100[.]7:8080/x",
    );
    assert!(
        has(
            &found,
            ObservableKind::Url,
            "https://evil.example.com/login"
        ),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Domain, "evil.example.com"),
        "{found:?}"
    );
    assert!(has(&found, ObservableKind::Ip, "1.2.3.4"), "{found:?}");
    assert!(
        has(&found, ObservableKind::Email, "user@example.com"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Email, "admin@phish.co"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Url, "ftp://files.example.net/a.zip"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Url, "http://198.51.100.7:8080/x"),
        "{found:?}"
    );
    assert!(has(&found, ObservableKind::Ip, "198.51.100.7"), "{found:?}");
    assert!(found.iter().all(|o| !o.value.contains('[')), "{found:?}");
    assert_eq!(
        observables::refang("hxxps://evil[.]example[.]com/login"),
        "https://evil.example.com/login"
    );
    assert_eq!(
        observables::refang("user[@]example[.]com"),
        "user@example.com"
    );
    assert_eq!(observables::refang("a [dot] b (dot) c{.}d"), "a.b.c.d");
    assert_eq!(observables::refang("no defang here"), "no defang here");
}

#[test]
fn order_is_first_appearance_and_deduplicated() {
    let found = observables::extract(
        "b.example.org then 10.0.0.1 then B.Example.org again and http://a.example.com/ and 10.0.0.1",
    );
    assert_eq!(
        found,
        vec![
            obs(ObservableKind::Domain, "b.example.org"),
            obs(ObservableKind::Ip, "10.0.0.1"),
            obs(ObservableKind::Url, "http://a.example.com/"),
            obs(ObservableKind::Domain, "a.example.com"),
        ]
    );
}

#[test]
fn file_names_are_not_domains() {
    let found = observables::extract(
        "Open report.pdf and Invoice_2024.ZIP, run C:\\Users\\bob\\evil.exe or ./payload.sh; see \
         README.md, main.rs and bundle.js.map",
    );
    assert!(
        has(&found, ObservableKind::Filename, "report.pdf"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Filename, "Invoice_2024.ZIP"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Filename, "evil.exe"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Filename, "payload.sh"),
        "{found:?}"
    );
    assert!(
        found.iter().all(|o| o.kind != ObservableKind::Domain),
        "{found:?}"
    );
    assert!(
        !has(&found, ObservableKind::Filename, "bundle.js"),
        "{found:?}"
    );
    // Inside a URL host, a TLD that is also an extension is a domain.
    let found = observables::extract("download from https://invoice.zip/get now");
    assert!(
        has(&found, ObservableKind::Domain, "invoice.zip"),
        "{found:?}"
    );
    assert!(
        !has(&found, ObservableKind::Filename, "invoice.zip"),
        "{found:?}"
    );
}

#[test]
fn version_strings_are_not_ips() {
    for text in [
        "version 1.2.3 released",
        "build 10.0.19044.1234",
        "OID 1.3.6.1.4.1.9 here",
        "v1.2.3.4",
        "999.1.1.1 and 256.256.256.256",
        "at 19:10:30 and mac 00:0C:29:EB:35:DE and std::string",
    ] {
        let found = observables::extract(text);
        assert!(
            found.iter().all(|o| o.kind != ObservableKind::Ip),
            "{text}: {found:?}"
        );
    }
    let found = observables::extract("from 192.168.2.43/443 and (10.0.0.1).");
    assert!(has(&found, ObservableKind::Ip, "192.168.2.43"));
    assert!(has(&found, ObservableKind::Ip, "10.0.0.1"));
}

#[test]
fn ipv6_is_canonical() {
    let found = observables::extract(
        "src 2001:DB8:0:0:0:0:0:1 via inside:fe80::2205:baff:fe9d:f637/0 and OUTSIDE:2a02:cf40:add:4002:91f2:a9b2:e09a:6fc6/443 and ::ffff:192.0.2.1",
    );
    assert!(has(&found, ObservableKind::Ip, "2001:db8::1"), "{found:?}");
    assert!(
        has(&found, ObservableKind::Ip, "fe80::2205:baff:fe9d:f637"),
        "{found:?}"
    );
    assert!(
        has(
            &found,
            ObservableKind::Ip,
            "2a02:cf40:add:4002:91f2:a9b2:e09a:6fc6"
        ),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Ip, "::ffff:192.0.2.1"),
        "{found:?}"
    );
}

#[test]
fn hashes_by_exact_length() {
    let h31 = "a".repeat(31);
    let h33 = "b".repeat(33);
    let h65 = "c".repeat(65);
    let found = observables::extract(&format!("{h31} {h33} {h65}"));
    assert!(found.is_empty(), "{found:?}");
    let md5 = "44D88612FEA8A8F36DE82E1278ABB02F";
    let sha1 = "3395856ce81f2b7382dee72602f798b642f14140";
    let sha256 = "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F";
    let found = observables::extract(&format!(
        "md5={md5}, sha1 {sha1}; https://www.virustotal.com/gui/file/{sha256}"
    ));
    assert!(
        has(&found, ObservableKind::Md5, &md5.to_lowercase()),
        "{found:?}"
    );
    assert!(has(&found, ObservableKind::Sha1, sha1), "{found:?}");
    assert!(
        has(&found, ObservableKind::Sha256, &sha256.to_lowercase()),
        "{found:?}"
    );
}

/// A URL percent-encoded inside another (a redirect parameter) is found decoded, with its
/// host; the escape's hex digits never become part of a domain (`2Fevil.example.org`).
#[test]
fn percent_encoded_urls_are_decoded() {
    let got = observables::extract(
        "GET /wp-login.php?redirect_to=http%3A%2F%2Fevil.example.org%2Fa%3Fb%3D1 HTTP/1.1",
    );
    assert!(
        has(&got, ObservableKind::Url, "http://evil.example.org/a?b=1"),
        "{got:?}"
    );
    assert!(
        has(&got, ObservableKind::Domain, "evil.example.org"),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|o| o.value.to_ascii_lowercase().contains("2fevil")),
        "{got:?}"
    );
    // inside a full URL, whose own value stays as written
    let got = observables::extract(
        "see https://login.example.com/sso?next=HTTPS%3a%2f%2fphish.example.net%2fx",
    );
    assert!(
        has(&got, ObservableKind::Url, "https://phish.example.net/x"),
        "{got:?}"
    );
    assert!(
        has(&got, ObservableKind::Domain, "phish.example.net"),
        "{got:?}"
    );
    assert!(
        has(&got, ObservableKind::Domain, "login.example.com"),
        "{got:?}"
    );
    // twice encoded
    let got = observables::extract("u=http%253A%252F%252Ftwice.example.org%252F");
    assert!(
        has(&got, ObservableKind::Domain, "twice.example.org"),
        "{got:?}"
    );
    // a bare escape before a domain
    let got = observables::extract("path=%2Fwww.example.org");
    assert!(
        has(&got, ObservableKind::Domain, "www.example.org"),
        "{got:?}"
    );
    // nothing to decode, or a broken escape: no panic, nothing invented
    assert!(observables::extract("100% sure %3A%2F%2F %zz").is_empty());
}

#[test]
fn urls_emails_cves_canonical() {
    let found = observables::extract(
        "See (HTTPS://Login.Example.COM/Reset?Token=AbC). Reply to Alice.Smith@Example.COM, \
         ref cve-2021-44228 and https://en.wikipedia.org/wiki/Foo_(bar), <http://[2001:db8::1]:8443/a>",
    );
    assert!(
        has(
            &found,
            ObservableKind::Url,
            "https://login.example.com/Reset?Token=AbC"
        ),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Domain, "login.example.com"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Email, "alice.smith@example.com"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Domain, "example.com"),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Cve, "CVE-2021-44228"),
        "{found:?}"
    );
    assert!(
        has(
            &found,
            ObservableKind::Url,
            "https://en.wikipedia.org/wiki/Foo_(bar)"
        ),
        "{found:?}"
    );
    assert!(
        has(&found, ObservableKind::Url, "http://[2001:db8::1]:8443/a"),
        "{found:?}"
    );
    assert!(has(&found, ObservableKind::Ip, "2001:db8::1"), "{found:?}");
}

#[test]
fn dedup_keeps_first_order_for_long_lists() {
    let text: String = (0..80)
        .map(|i| format!("10.0.{}.{} ", i % 50, i % 50))
        .collect();
    let found = observables::extract(&text);
    assert_eq!(found.len(), 50);
    assert_eq!(found[0], obs(ObservableKind::Ip, "10.0.0.0"));
    assert_eq!(found[49], obs(ObservableKind::Ip, "10.0.49.49"));
}

#[test]
fn classify_single_values() {
    use ObservableKind::*;
    let c = observables::classify;
    assert_eq!(c(Some(Ip), " 10.0.0.1 "), Some(obs(Ip, "10.0.0.1")));
    assert_eq!(c(Some(Ip), "[2001:DB8::0:1]"), Some(obs(Ip, "2001:db8::1")));
    assert_eq!(c(Some(Ip), "10.0.0"), None);
    assert_eq!(c(Some(Hostname), "10.1.1.40"), Some(obs(Ip, "10.1.1.40")));
    assert_eq!(
        c(Some(Hostname), "WIN-RM6HM42G65V"),
        Some(obs(Hostname, "win-rm6hm42g65v"))
    );
    assert_eq!(
        c(Some(Url), "example.com"),
        Some(obs(Domain, "example.com"))
    );
    assert_eq!(
        c(Some(Url), "hxxp://Evil.Example.com/a"),
        Some(obs(Url, "http://evil.example.com/a"))
    );
    // a value given as a URL keeps its last character: these are distinct indicators
    for u in [
        "http://evil.example/dl.php?id=5;",
        "http://ex.com/path?q=1&x=<b>",
        "http://ex.com/a.",
        "http://ex.com/a)",
    ] {
        assert_eq!(c(Some(Url), u), Some(obs(Url, u)), "{u}");
    }
    assert_eq!(
        c(Some(Md5), &"A".repeat(64)),
        Some(obs(Sha256, &"a".repeat(64)))
    );
    assert_eq!(c(Some(Sha256), &"a".repeat(33)), None);
    assert_eq!(c(Some(User), "N/A"), None);
    assert_eq!(c(Some(User), "(no user)"), None);
    assert_eq!(c(Some(User), "root"), Some(obs(User, "root")));
    assert_eq!(
        c(Some(Email), "Bob@Example.org"),
        Some(obs(Email, "bob@example.org"))
    );
    assert_eq!(
        c(Some(Cve), "cve-2014-0160"),
        Some(obs(Cve, "CVE-2014-0160"))
    );
    assert_eq!(c(None, "8.8.8.8"), Some(obs(Ip, "8.8.8.8")));
    assert_eq!(c(None, "report.pdf"), Some(obs(Filename, "report.pdf")));
    assert_eq!(c(None, "evil[.]com"), Some(obs(Domain, "evil.com")));
    assert_eq!(c(None, "just words"), None);
}

// ---------------------------------------------------------------- syslog

#[test]
fn bsd_timestamp_with_padded_day_and_year_rollover() {
    let m = syslog::parse(
        "<13>Oct  1 07:05:09 host1 sshd[42]: Accepted publickey",
        NOW,
    )
    .unwrap();
    assert_eq!(m.format, SyslogFormat::Rfc3164);
    // October is in the future on 15 January 2026: the year before.
    assert_eq!(m.timestamp, Some(datetime!(2025-10-01 07:05:09 UTC)));
    assert_eq!(m.hostname, Some("host1"));
    assert_eq!(m.app_name, Some("sshd"));
    assert_eq!(m.proc_id, Some("42"));
    assert_eq!(m.message, "Accepted publickey");
    let m = syslog::parse("<13>Jan  9 23:59:59 host1 cron: job", NOW).unwrap();
    assert_eq!(m.timestamp, Some(datetime!(2026-01-09 23:59:59 UTC)));
    let m = syslog::parse("<13>Jan 9 23:59:59 host1 cron: job", NOW).unwrap();
    assert_eq!(m.timestamp, Some(datetime!(2026-01-09 23:59:59 UTC)));
}

#[test]
fn no_pri_is_user_notice() {
    let m = syslog::parse("just some text from a device", NOW).unwrap();
    assert_eq!((m.facility, m.severity), (1, 5));
    assert_eq!(m.message, "just some text from a device");
    let ev = syslog::to_events(&m, "just some text from a device").unwrap();
    assert_eq!(ev[0].severity, Level::Low);
    assert_eq!(ev[0].original_severity.as_deref(), Some("notice"));
    assert_eq!(ev[0].source_name, "syslog");
}

#[test]
fn rfc5424_structured_data_escapes_and_nil() {
    let line = r#"<11>1 2024-02-29T08:01:02.123456+01:00 - app - - [x@1 a="q\"q" b="b\\s" c="r\]b" d="k\eep"][y@1 z=""] msg"#;
    let m = syslog::parse(line, NOW).unwrap();
    assert_eq!(m.format, SyslogFormat::Rfc5424);
    assert_eq!(m.hostname, None);
    assert_eq!(m.app_name, Some("app"));
    assert_eq!(
        m.timestamp,
        Some(datetime!(2024-02-29 08:01:02.123456 +01:00))
    );
    let values: Vec<(&str, &str)> = m.structured_data[0]
        .params
        .iter()
        .map(|p| (p.name, p.value.as_ref()))
        .collect();
    assert_eq!(
        values,
        vec![("a", "q\"q"), ("b", "b\\s"), ("c", "r]b"), ("d", "k\\eep")]
    );
    assert_eq!(m.structured_data[1].params[0].value, "");
    assert_eq!(m.message, "msg");
    let ev = syslog::to_events(&m, line).unwrap();
    assert_eq!(ev[0].severity, Level::High);
    assert_eq!(ev[0].fields["sd_x_1_a"], "q\"q");
    assert!(syslog::parse(r#"<11>1 - - - - - [x@1 a="unterminated]"#, NOW).is_err());
    assert!(syslog::parse("<11>1 2024-02-29T08:01:02Z host", NOW).is_err());
}

#[test]
fn severity_mapping() {
    for (sev, level) in [
        (0, Level::Critical),
        (2, Level::Critical),
        (3, Level::High),
        (4, Level::Medium),
        (5, Level::Low),
        (7, Level::Low),
    ] {
        assert_eq!(syslog::level_of_severity(sev), level);
    }
}

// ---------------------------------------------------------------- RFC 6587 framing

fn framing_stream() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/framing/mixed_stream.bin");
    fs::read(p).unwrap()
}

#[test]
fn framing_mixed_split_at_every_byte_boundary() {
    let stream = framing_stream();
    let whole = decode_all(&stream, &[], 64 * 1024);
    assert_eq!(whole.len(), 6, "{whole:?}");
    assert!(whole.iter().all(Result::is_ok));
    for split in 0..=stream.len() {
        assert_eq!(
            decode_all(&stream, &[split], 64 * 1024),
            whole,
            "split at {split}"
        );
    }
    // One byte at a time.
    let ones = vec![1; stream.len()];
    assert_eq!(decode_all(&stream, &ones, 64 * 1024), whole);
    // Three-way splits around the octet-count headers.
    for a in 0..40 {
        for b in 1..40 {
            assert_eq!(decode_all(&stream, &[a, b], 64 * 1024), whole, "{a}/{b}");
        }
    }
}

#[test]
fn framing_oversize_frames_are_skipped() {
    let big = "x".repeat(300);
    let mut stream = Vec::new();
    stream.extend_from_slice(format!("{} <13>{big}", big.len() + 4).as_bytes());
    stream.extend_from_slice(b"5 <13>a");
    stream.extend_from_slice(format!("<13>{big}\n").as_bytes());
    stream.extend_from_slice(b"<13>ok\r\n");
    for chunk in [1usize, 7, 64, 1000] {
        let chunks = vec![chunk; stream.len() / chunk + 1];
        let out = decode_all(&stream, &chunks, 100);
        assert_eq!(out.len(), 4, "chunk {chunk}: {out:?}");
        assert!(out[0].is_err(), "{out:?}");
        assert_eq!(out[1], Ok("<13>a".to_owned()));
        assert!(out[2].is_err(), "{out:?}");
        assert_eq!(out[3], Ok("<13>ok".to_owned()));
    }
    // Nothing is buffered beyond the limit while an oversize frame streams in.
    let mut d = FrameDecoder::new(100);
    d.push(b"<13>");
    for _ in 0..1000 {
        d.push(&[b'y'; 50]);
        while d.next_frame().is_some() {}
        assert!(d.buffered() <= 150);
    }
    d.push(b"\n<13>after\n");
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame() {
        frames.push(f);
    }
    assert_eq!(frames.last(), Some(&Ok(b"<13>after".to_vec())));
}

#[test]
fn framing_dribbled_frame_is_linear() {
    // A 60 KiB LF-terminated frame arriving one byte at a time, then an octet-counted one.
    let body = vec![b'z'; 60 * 1024];
    let mut d = FrameDecoder::new(64 * 1024);
    let start = std::time::Instant::now();
    d.push(b"<13>");
    for b in &body {
        d.push(std::slice::from_ref(b));
        assert!(d.next_frame().is_none());
    }
    d.push(b"\n7 <13>end");
    let first = d.next_frame().unwrap().unwrap();
    assert_eq!(first.len(), 4 + body.len());
    assert_eq!(d.next_frame(), Some(Ok(b"<13>end".to_vec())));
    assert_eq!(d.next_frame(), None);
    assert_eq!(d.buffered(), 0);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------- CEF / LEEF

#[test]
fn cef_escapes_and_values_with_spaces() {
    let line = r"<134>Dec 14 19:04:54 fw1 CEF:0|Ven\|dor|Pro\\duct|1.0|sig-7|Name with \| pipe|7|msg=a\=b c\\d cs1Label=Rule Name cs1=Block all outbound src=10.0.0.1 act=blocked\nnext suser=bob smith";
    let m = syslog::parse(line, NOW).unwrap();
    assert_eq!(m.hostname, Some("fw1"));
    let ev = syslog::to_events(&m, line).unwrap();
    let e = &ev[0];
    assert_eq!(e.source_name, "Ven|dor Pro\\duct");
    assert_eq!(e.title, "Name with | pipe");
    assert_eq!(e.rule_id.as_deref(), Some("sig-7"));
    assert_eq!(e.severity, Level::High);
    assert_eq!(e.description.as_deref(), Some("a=b c\\d"));
    assert_eq!(e.fields["cs1"], "Block all outbound");
    assert_eq!(e.fields["rule_name"], "Block all outbound");
    assert_eq!(e.fields["act"], "blocked\nnext");
    assert_eq!(e.fields["suser"], "bob smith");
    assert_eq!(e.host.as_deref(), Some("fw1"), "syslog hostname fills in");
    assert_eq!(e.occurred_at, Some(datetime!(2025-12-14 19:04:54 UTC)));
    assert!(has(&e.observables, ObservableKind::Ip, "10.0.0.1"));
    assert!(has(&e.observables, ObservableKind::User, "bob smith"));
    assert_eq!(e.raw, line);
    assert!(cef::parse("CEF:0|only|three").is_err());
    assert!(cef::parse("no cef here").is_err());
}

#[test]
fn truncated_cef_over_syslog_falls_back_to_generic_event() {
    let line = "<134>Dec 14 19:04:54 fw1 CEF:0|Trend Micro|Deep Security Agent|1.2.3|40000";
    let m = syslog::parse(line, NOW).unwrap();
    let ev = syslog::to_events(&m, line).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].source_name, "syslog");
    assert_eq!(ev[0].host.as_deref(), Some("fw1"));
    assert!(
        ev[0].fields["payload_error"]
            .as_str()
            .unwrap()
            .starts_with("header:")
    );
    assert_eq!(ev[0].raw, line);
}

#[test]
fn cef_severity_scale() {
    for (s, l) in [
        ("0", Level::Low),
        ("3", Level::Low),
        ("4", Level::Medium),
        ("6", Level::Medium),
        ("7", Level::High),
        ("8", Level::High),
        ("9", Level::Critical),
        ("10", Level::Critical),
        ("Low", Level::Low),
        ("Medium", Level::Medium),
        ("High", Level::High),
        ("Very-High", Level::Critical),
        ("Unknown", Level::Medium),
    ] {
        assert_eq!(cef::level_of_severity(s), l, "{s}");
    }
}

/// `dtz` (device time zone) places a time that names no zone; a time with a zone, or in epoch
/// milliseconds, keeps its own.
#[test]
fn cef_device_time_zone() {
    let at = |ext: &str| {
        let line = format!("CEF:0|Vendor|Product|1.0|100|Blocked|5|{ext}");
        let evs = cef::parse(&line).expect("parses");
        evs[0]
            .occurred_at
            .map(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap())
    };
    // summer in Berlin: UTC+2; winter: UTC+1
    assert_eq!(
        at("rt=Jul 01 2024 14:00:00 dtz=Europe/Berlin src=10.0.0.1").as_deref(),
        Some("2024-07-01T12:00:00Z")
    );
    assert_eq!(
        at("dtz=Europe/Berlin rt=Jan 15 2024 14:00:00").as_deref(),
        Some("2024-01-15T13:00:00Z")
    );
    assert_eq!(
        at("rt=Mar 10 2024 08:30:00 dtz=America/New_York").as_deref(),
        Some("2024-03-10T12:30:00Z")
    );
    assert_eq!(
        at("rt=Jan 15 2024 14:00:00 dtz=GMT-05:00").as_deref(),
        Some("2024-01-15T19:00:00Z")
    );
    // the time's own zone wins; so do epoch milliseconds
    assert_eq!(
        at("rt=Jan 15 2024 14:00:00 GMT+01:00 dtz=America/New_York").as_deref(),
        Some("2024-01-15T13:00:00Z")
    );
    assert_eq!(
        at("rt=1705327200000 dtz=Europe/Berlin").as_deref(),
        Some("2024-01-15T14:00:00Z")
    );
    // an unknown zone name: read as UTC, as without dtz
    assert_eq!(
        at("rt=Jan 15 2024 14:00:00 dtz=Mars/Olympus").as_deref(),
        Some("2024-01-15T14:00:00Z")
    );
    // the zone name as a zone inside the time
    assert_eq!(
        at("rt=Jan 15 2024 14:00:00 Asia/Tokyo").as_deref(),
        Some("2024-01-15T05:00:00Z")
    );
}

#[test]
fn leef2_custom_and_hex_delimiters() {
    for line in [
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=8^srcPort=81^dstPort=21",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|0x5E|src=10.0.1.8^dst=10.0.0.5^sev=8^srcPort=81^dstPort=21",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|x5e|src=10.0.1.8^dst=10.0.0.5^sev=8^srcPort=81^dstPort=21",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|x09|src=10.0.1.8\tdst=10.0.0.5\tsev=8\tsrcPort=81\tdstPort=21",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|src=10.0.1.8\tdst=10.0.0.5\tsev=8\tsrcPort=81\tdstPort=21",
    ] {
        let e = &leef::parse(line).unwrap()[0];
        assert_eq!(e.fields["src"], "10.0.1.8", "{line}");
        assert_eq!(e.fields["dst"], "10.0.0.5", "{line}");
        assert_eq!(e.fields["dstPort"], "21", "{line}");
        assert_eq!(e.severity, Level::High, "{line}");
        assert_eq!(e.rule_id.as_deref(), Some("41"));
        assert_eq!(e.source_name, "Lancope StealthWatch");
        assert!(has(&e.observables, ObservableKind::Ip, "10.0.1.8"));
    }
    let e = &leef::parse("LEEF:1.0|V|P|1|Id|a=1").unwrap()[0];
    assert_eq!(e.severity, Level::Medium, "no sev: medium");
    assert!(leef::parse("LEEF:1.0|V|P").is_err());
}

#[test]
fn leef_java_date_formats() {
    use leef::parse_java_format as p;
    assert_eq!(
        p("Sep 29 2008 13:32:12", "MMM dd yyyy HH:mm:ss"),
        Some(datetime!(2008-09-29 13:32:12 UTC))
    );
    assert_eq!(
        p("Jun-18-2018 14:38:07 GMT", "MMM dd yyyy HH:mm:ss z"),
        Some(datetime!(2018-06-18 14:38:07 UTC))
    );
    assert_eq!(
        p("2019-05-13T11:45:03.250+0200", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
        Some(datetime!(2019-05-13 11:45:03.25 +02:00))
    );
    assert_eq!(
        p("05/13/2019 11:45:03 PM", "MM/dd/yyyy hh:mm:ss a"),
        Some(datetime!(2019-05-13 23:45:03 UTC))
    );
    assert_eq!(p("garbage", "MMM dd yyyy HH:mm:ss"), None);
    let e = &leef::parse("LEEF:1.0|V|P|1|Id|devTime=1557773103767").unwrap()[0];
    assert_eq!(e.occurred_at, Some(datetime!(2019-05-13 18:45:03.767 UTC)));
}

// ---------------------------------------------------------------- email

#[test]
fn ticket_number_in_subject() {
    use eml::ticket_number_in_subject as t;
    assert_eq!(t("RE: [SEC-000042] Suspicious login", "SEC"), Some(42));
    assert_eq!(t("Fwd: sec-7 follow-up", "SEC"), Some(7));
    assert_eq!(t("about INC-12", "inc"), Some(12));
    assert_eq!(t("XSEC-42 nope", "SEC"), None);
    assert_eq!(t("SEC-42a nope", "SEC"), None);
    assert_eq!(t("SEC- nope", "SEC"), None);
    assert_eq!(t("SEC-99999999999999999999 overflow", "SEC"), None);
    assert_eq!(t("no ticket here", "SEC"), None);
    assert_eq!(t("ends with SEC", "SEC"), None);
}

#[test]
fn mail_with_ticket_number_in_subject() {
    let raw = "From: Jordan Lee <jordan.lee@acme.example.com>\r\nTo: firebreak@acme.example.com\r\n\
               Subject: Re: [SEC-000042] Phish from evil[.]example[.]net\r\nMessage-ID: <abc@x.example.com>\r\n\
               Date: Wed, 20 Sep 2023 09:02:11 -0400\r\n\r\nIt came from bad@evil.example.net; me: jordan.lee@acme.example.com\r\n";
    let mail = eml::parse(raw.as_bytes()).unwrap();
    assert_eq!(
        eml::ticket_number_in_subject(mail.subject.as_deref().unwrap(), "SEC"),
        Some(42)
    );
    let e = eml::to_event(&mail, raw);
    assert_eq!(e.source_kind, "employee");
    assert_eq!(e.dedup_key.as_deref(), Some("email:abc@x.example.com"));
    assert_eq!(e.occurred_at, Some(datetime!(2023-09-20 09:02:11 -04:00)));
    assert!(has(
        &e.observables,
        ObservableKind::Domain,
        "evil.example.net"
    ));
    assert!(has(
        &e.observables,
        ObservableKind::Email,
        "bad@evil.example.net"
    ));
    assert!(!has(
        &e.observables,
        ObservableKind::Email,
        "jordan.lee@acme.example.com"
    ));
    assert!(!has(
        &e.observables,
        ObservableKind::Domain,
        "acme.example.com"
    ));
    let reporter = e.reporter.unwrap();
    assert_eq!(reporter.name.as_deref(), Some("Jordan Lee"));
    assert_eq!(
        reporter.contact.as_deref(),
        Some("jordan.lee@acme.example.com")
    );
    assert!(eml::parse(b"").is_err());
    assert!(eml::parse(b"\x00\x01\x02 not a mail").is_err());
}

// ---------------------------------------------------------------- no panics on truncation

fn char_prefixes(s: &str) -> impl Iterator<Item = &str> {
    s.char_indices()
        .map(move |(i, _)| &s[..i])
        .chain(std::iter::once(s))
}

#[test]
fn every_truncated_prefix_parses_without_panic() {
    let mut texts: Vec<String> = Vec::new();
    for fmt in ["syslog", "cef", "leef"] {
        for p in samples(fmt, &[".log"]) {
            texts.extend(lines(&p));
        }
    }
    for text in &texts {
        for prefix in char_prefixes(text) {
            if let Ok(m) = syslog::parse(prefix, NOW) {
                let _ = syslog::to_events(&m, prefix);
            }
            let _ = cef::parse(prefix);
            let _ = leef::parse(prefix);
            let _ = observables::extract(prefix);
            let _ = observables::classify(None, prefix);
        }
    }
    let stream = framing_stream();
    for n in 0..=stream.len() {
        let _ = decode_all(&stream[..n], &[], 64);
    }
    for p in samples("eml", &[".eml"]) {
        let bytes = fs::read(&p).unwrap();
        for n in 0..=bytes.len() {
            let prefix = &bytes[..n];
            if let Ok(mail) = eml::parse(prefix) {
                let _ = eml::to_event(&mail, &String::from_utf8_lossy(prefix));
            }
        }
    }
}

/// Random text over an alphabet of the characters the parsers care about (seeded, so a
/// failure reproduces).
#[test]
fn random_input_does_not_panic() {
    const ALPHABET: &[&str] = &[
        "<",
        ">",
        "1",
        "3",
        "4",
        "9",
        "0",
        " ",
        "  ",
        ".",
        ":",
        "::",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "|",
        "\\",
        "=",
        "\"",
        "-",
        "@",
        "/",
        "x",
        "h",
        "a",
        "f",
        "Z",
        "T",
        "\n",
        "\r",
        "\t",
        "^",
        "\u{feff}",
        "é",
        "€",
        "💥",
        "CEF:",
        "LEEF:2.0|",
        "LEEF:1.0|",
        "0x",
        "hxxp",
        "[.]",
        "://",
        "Oct",
        " 1 ",
        "12:34:56",
        "2024-01-02T03:04:05Z",
        "-",
        "SEC-",
        "cve-",
        "fe80",
        "ffff",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let len = (next() % 40) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        if let Ok(m) = syslog::parse(&text, NOW) {
            let _ = syslog::to_events(&m, &text);
        }
        let _ = cef::parse(&text);
        let _ = leef::parse(&text);
        let _ = observables::extract(&text);
        for kind in [
            None,
            Some(ObservableKind::Ip),
            Some(ObservableKind::Url),
            Some(ObservableKind::Hostname),
        ] {
            let _ = observables::classify(kind, &text);
        }
        let _ = leef::parse_java_format(&text, "MMM dd yyyy HH:mm:ss.SSS z");
        let _ = eml::ticket_number_in_subject(&text, "SEC");
        if let Ok(mail) = eml::parse(text.as_bytes()) {
            let _ = eml::to_event(&mail, &text);
        }
        let mut d = FrameDecoder::new(16);
        d.push(text.as_bytes());
        while d.next_frame().is_some() {}
    }
}

#[test]
#[ignore = "timing; run with --release --ignored"]
fn extract_throughput() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/cef/mcas_and_carbon_black.log"),
    )
    .unwrap();
    let text: String = text.chars().take(1024).collect();
    let n = 100_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(observables::extract(std::hint::black_box(&text)));
    }
    let per_sec = f64::from(n) / start.elapsed().as_secs_f64();
    println!("extract: {per_sec:.0} texts of 1 KiB per second");
}
