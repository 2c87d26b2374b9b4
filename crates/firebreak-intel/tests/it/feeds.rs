use firebreak_intel::feeds::{FeedFormat, FeedOptions, Indicator, parse_feed, parse_feed_with};
use time::macros::datetime;

use crate::{NOW, check_golden, sample};

fn keys(indicators: &[Indicator]) -> Vec<(String, String)> {
    indicators
        .iter()
        .map(|i| (i.kind.clone(), i.value.clone()))
        .collect()
}

fn has(indicators: &[Indicator], kind: &str, value: &str) -> bool {
    indicators
        .iter()
        .any(|i| i.kind == kind && i.value == value)
}

#[test]
fn golden_feeds() {
    for (format, file) in [
        (FeedFormat::Stix, "stix/bundle.json"),
        (FeedFormat::Misp, "misp/event.json"),
        (FeedFormat::Misp, "misp/restsearch-attributes.json"),
        (FeedFormat::Csv, "csv/indicators.csv"),
    ] {
        let report = parse_feed(format, &sample(file), "local-feed", NOW).unwrap();
        let golden = format!("{}.golden.json", file.rsplit_once('.').unwrap().0);
        check_golden(&golden, &serde_json::to_value(&report).unwrap());
    }
}

#[test]
fn stix_bundle_takes_equalities_resolves_identities_and_skips_the_rest() {
    let report = parse_feed(
        FeedFormat::Stix,
        &sample("stix/bundle.json"),
        "local-feed",
        NOW,
    )
    .unwrap();
    let ind = &report.indicators;
    // Poison Ivy: both hashes, canonical lowercase, source from created_by_ref.
    let ivy = ind.iter().find(|i| i.kind == "md5").unwrap();
    assert_eq!(ivy.source, "ACME Threat Intelligence");
    assert_eq!(ivy.confidence, 85);
    assert_eq!(ivy.valid_until, Some(datetime!(2027-06-30 00:00 UTC)));
    assert!(has(
        ind,
        "sha256",
        "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"
    ));
    // A /32 is its address; a /24 is skipped; IPv6 compressed.
    assert!(has(ind, "ip", "198.51.100.23"));
    assert!(!ind.iter().any(|i| i.value.starts_with("198.51.100.0")));
    assert!(has(ind, "ip", "2001:db8::2a"));
    // Escaped quote in a file name.
    assert!(has(ind, "filename", "Rechnung_2026'11.pdf.exe"));
    // The duplicate domain keeps the higher confidence.
    let portal: Vec<_> = ind
        .iter()
        .filter(|i| i.value == "invoice-portal.example.com")
        .collect();
    assert_eq!(portal.len(), 1);
    assert_eq!(portal[0].confidence, 60);
    // Revoked, expired, non-STIX pattern, MATCHES: none taken.
    for v in ["192.0.2.55", "old-sinkhole.example.org", "203.0.113.80"] {
        assert!(!ind.iter().any(|i| i.value == v), "{v} taken");
    }
    // Cyber observables and the vulnerability.
    assert!(has(ind, "ip", "198.51.100.3"));
    assert!(has(ind, "domain", "example.com"));
    assert!(has(ind, "cve", "CVE-2021-44228"));
    let positions: Vec<&str> = report.errors.iter().map(|e| e.position.as_str()).collect();
    assert_eq!(positions, ["objects[12]", "objects[13]", "objects[14]"]);
    assert_eq!(report.skipped, 8);
}

#[test]
fn stix_accepts_a_bare_object_and_an_array() {
    let single = br#"{"type":"indicator","spec_version":"2.1","id":"indicator--1","pattern":"[domain-name:value = 'c2.example.net']","valid_from":"2026-01-01T00:00:00Z"}"#;
    let report = parse_feed(FeedFormat::Stix, single, "f", NOW).unwrap();
    assert_eq!(
        keys(&report.indicators),
        [("domain".into(), "c2.example.net".into())]
    );
    assert_eq!(report.indicators[0].confidence, 50);
    let array = br#"[{"type":"url","value":"https://c2.example.net/a"},{"type":"email-addr","value":"X@Example.net"}]"#;
    let report = parse_feed(FeedFormat::Stix, array, "f", NOW).unwrap();
    assert_eq!(
        keys(&report.indicators),
        [
            ("url".into(), "https://c2.example.net/a".into()),
            ("email".into(), "x@example.net".into())
        ]
    );
}

#[test]
fn unreadable_documents_are_errors() {
    assert!(parse_feed(FeedFormat::Stix, b"<xml/>", "f", NOW).is_err());
    assert!(parse_feed(FeedFormat::Stix, b"42", "f", NOW).is_err());
    assert!(
        parse_feed(
            FeedFormat::Stix,
            br#"{"type":"bundle","objects":{}}"#,
            "f",
            NOW
        )
        .is_err()
    );
    assert!(parse_feed(FeedFormat::Misp, b"{\"foo\": 1}", "f", NOW).is_err());
    assert!(parse_feed(FeedFormat::Misp, b"not json", "f", NOW).is_err());
    let err = parse_feed(FeedFormat::Csv, b"ioc,notes\n1.2.3.4,x\n", "f", NOW).unwrap_err();
    assert!(err.contains("\"type\""), "{err}");
    // An empty bundle is fine and empty.
    let report = parse_feed(
        FeedFormat::Stix,
        br#"{"type":"bundle","id":"bundle--1"}"#,
        "f",
        NOW,
    )
    .unwrap();
    assert!(report.indicators.is_empty() && report.errors.is_empty());
}

#[test]
fn misp_event_maps_types_source_and_composites() {
    let report = parse_feed(
        FeedFormat::Misp,
        &sample("misp/event.json"),
        "local-feed",
        NOW,
    )
    .unwrap();
    let ind = &report.indicators;
    assert!(ind.iter().all(|i| i.source == "CIRCL"));
    assert!(has(ind, "ip", "197.231.221.221"), "port stripped");
    assert!(has(ind, "domain", "wannacry-c2.example.net") && has(ind, "ip", "203.0.113.45"));
    assert!(
        has(ind, "filename", "tasksche.exe") && has(ind, "md5", "84c82835a5d21bbcf75a61706d8ab549")
    );
    assert!(
        has(ind, "sha1", "e889544aff85ffaf8b0d0da705105dee7c97fe26"),
        "object attribute"
    );
    assert!(has(ind, "cve", "CVE-2017-0144"));
    // Deleted attribute and deleted object, link, text, relative uri: not taken.
    for v in [
        "db349b97c37d22f5ea1d1841e3c89eb4",
        "192.0.2.200",
        "/gate.php",
    ] {
        assert!(!ind.iter().any(|i| i.value.contains(v)), "{v} taken");
    }
    assert!(!ind.iter().any(|i| i.value.contains("malwarebytes")));
    assert_eq!(report.skipped, 5);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].position, "Event.Attribute[7]");
    // The attribute comment, else the event title.
    let kill = ind
        .iter()
        .find(|i| i.value.contains("iuqerfsodp9"))
        .unwrap();
    assert_eq!(kill.description.as_deref(), Some("Kill switch domain"));
    let ip = ind.iter().find(|i| i.value == "128.31.0.39").unwrap();
    assert_eq!(
        ip.description.as_deref(),
        Some("OSINT - WannaCry ransomware spreading via SMBv1 (MS17-010)")
    );
}

#[test]
fn misp_ids_only_drops_attributes_not_for_detection() {
    let mut options = FeedOptions::new("local-feed", NOW);
    options.ids_only = true;
    options.default_confidence = 75;
    let report = parse_feed_with(FeedFormat::Misp, &sample("misp/event.json"), &options).unwrap();
    let ind = &report.indicators;
    assert!(!has(ind, "filename", "tasksche.exe"));
    assert!(!has(ind, "cve", "CVE-2017-0144"));
    assert!(!has(ind, "filename", "mssecsvc.exe"));
    assert!(has(ind, "sha1", "e889544aff85ffaf8b0d0da705105dee7c97fe26"));
    assert!(ind.iter().all(|i| i.confidence == 75));
    // The 5 skipped without ids_only, plus tasksche.exe, the CVE and mssecsvc.exe.
    assert_eq!(report.skipped, 8);
}

#[test]
fn misp_rest_search_and_attribute_arrays() {
    let report = parse_feed(
        FeedFormat::Misp,
        &sample("misp/restsearch-attributes.json"),
        "misp.internal",
        NOW,
    )
    .unwrap();
    assert_eq!(
        keys(&report.indicators),
        [
            ("ip".into(), "203.0.113.7".into()),
            (
                "url".into(),
                "http://203.0.113.7:8080/wp-content/Invoice/".into()
            )
        ]
    );
    assert!(
        report
            .indicators
            .iter()
            .all(|i| i.source == "misp.internal")
    );
    let array = br#"[{"type":"ip-src","value":"192.0.2.1/32","to_ids":"1"},{"type":"ip-src","value":"192.0.2.0/28"},{"type":"hostname|port","value":"mail.evil.example|25"},{"type":"email-src","value":"Bad@Evil.Example"},{"foo":1}]"#;
    let report = parse_feed(FeedFormat::Misp, array, "f", NOW).unwrap();
    assert_eq!(
        keys(&report.indicators),
        [
            ("ip".into(), "192.0.2.1".into()),
            ("domain".into(), "mail.evil.example".into()),
            ("email".into(), "bad@evil.example".into())
        ]
    );
    assert_eq!(report.skipped, 1);
    assert_eq!(report.errors[0].position, "[4]");
}

#[test]
fn csv_reports_bad_rows_by_line_and_keeps_the_rest() {
    let report = parse_feed(
        FeedFormat::Csv,
        &sample("csv/indicators.csv"),
        "soc-wiki",
        NOW,
    )
    .unwrap();
    let lines: Vec<(&str, &str)> = report
        .errors
        .iter()
        .map(|e| (e.position.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(lines[0], ("line 8", "unknown type \"registry-key\""));
    assert_eq!(lines[1], ("line 9", "\"300.1.2.3\" is not a valid ip"));
    assert!(lines[2].0 == "line 10" && lines[2].1.contains("0-100"));
    assert!(lines[3].0 == "line 13" && lines[3].1.contains("bad date"));
    assert_eq!(lines.len(), 6);
    assert_eq!(report.skipped, 2, "expired row and /24");
    assert_eq!(report.duplicates, 1);
    let ind = &report.indicators;
    let emotet = ind.iter().find(|i| i.value == "203.0.113.7").unwrap();
    assert_eq!(emotet.confidence, 90);
    assert_eq!(
        emotet.valid_until,
        Some(datetime!(2027-02-01 00:00 UTC)),
        "through the day"
    );
    assert!(
        has(ind, "url", "http://evil.example.com/gate.php?id=1"),
        "refanged"
    );
    assert!(has(ind, "filename", "invoice \"final\".exe"));
    let drop = ind.iter().find(|i| i.kind == "domain").unwrap();
    assert_eq!((drop.source.as_str(), drop.confidence), ("soc-wiki", 50));
}

#[test]
fn csv_accepts_alias_headers_and_a_bom() {
    let doc = "\u{feff}KIND;VALUE\n".replace(';', ",")
        + "ipv4,192.0.2.10\nhash,D41D8CD98F00B204E9800998ECF8427E\n";
    let report = parse_feed(FeedFormat::Csv, doc.as_bytes(), "f", NOW).unwrap();
    assert_eq!(
        keys(&report.indicators),
        [
            ("ip".into(), "192.0.2.10".into()),
            ("md5".into(), "d41d8cd98f00b204e9800998ecf8427e".into())
        ]
    );
    let doc = "value,valid_until,kind,description\nc2.example.net,2026-12-01T00:00:00Z,domain,x\nc3.example.net,2026-12-01T00:00:01Z,domain,y\n";
    let report = parse_feed(FeedFormat::Csv, doc.as_bytes(), "f", NOW).unwrap();
    assert_eq!(
        keys(&report.indicators),
        [("domain".into(), "c3.example.net".into())]
    );
    assert_eq!(report.skipped, 1, "valid_until == now is expired");
    assert_eq!(report.indicators[0].description.as_deref(), Some("y"));
}

#[test]
fn damaged_documents_never_panic() {
    for (format, file) in [
        (FeedFormat::Stix, "stix/bundle.json"),
        (FeedFormat::Misp, "misp/event.json"),
        (FeedFormat::Csv, "csv/indicators.csv"),
    ] {
        let doc = sample(file);
        // Every cut, and every byte replaced by a quote, a bracket or invalid UTF-8.
        for cut in (0..doc.len()).step_by(7) {
            let _ = parse_feed(format, &doc[..cut], "f", NOW);
        }
        for at in (0..doc.len()).step_by(13) {
            for b in [b'\'', b'"', b'[', b'|', 0xff] {
                let mut d = doc.clone();
                d[at] = b;
                let _ = parse_feed(format, &d, "f", NOW);
            }
        }
    }
}

#[test]
fn damaged_patterns_are_errors_not_panics() {
    let patterns = [
        r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f' OR file:hashes.MD5 = '3773a88f65a5e780c8dff9cdc3a056f3']",
        r"([ipv4-addr:value IN ('198.51.100.1', '198.51.100.2')] FOLLOWEDBY [url:value = 'http://x.example/a\'b']) WITHIN 300 SECONDS START t'2026-01-01T00:00:00Z' STOP t'2026-02-01T00:00:00Z'",
        r"[email-message:to_refs[*].value = 'a@b.example' AND email-message:from_ref.value NOT MATCHES '^x$'] REPEATS 2 TIMES",
    ];
    for p in patterns {
        let chars: Vec<char> = p.chars().collect();
        for cut in 0..chars.len() {
            let s: String = chars[..cut].iter().collect();
            let doc = serde_json::json!({"type": "indicator", "pattern": s}).to_string();
            let _ = parse_feed(FeedFormat::Stix, doc.as_bytes(), "f", NOW).unwrap();
            for c in ['[', ']', '(', ')', '\'', '\\', ':', '.', '='] {
                let mut broken = chars.clone();
                broken[cut] = c;
                let s: String = broken.iter().collect();
                let doc = serde_json::json!({"type": "indicator", "pattern": s}).to_string();
                let _ = parse_feed(FeedFormat::Stix, doc.as_bytes(), "f", NOW).unwrap();
            }
        }
    }
}
