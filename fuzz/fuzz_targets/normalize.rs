//! The whole normaliser, as `POST /ingest/ndjson` and `firebreak ingest` run it: one line in a
//! format picked by the first byte (`LineFormat::parse_line`: EVE, Wazuh, NDJSON through the
//! generic webhook mapping, CEF, LEEF, syslog), each event made storable
//! (`intake::to_event`), fingerprinted, and evaluated by CEL suppression-style conditions over
//! its fields.
#![no_main]

use firebreak_app::expr::{Condition, Input};
use firebreak_app::intake::{LineFormat, cel_event, fingerprint, to_event};
use firebreak_domain::plan::IntakePolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use time::macros::datetime;

static FORMATS: LazyLock<Vec<LineFormat>> = LazyLock::new(|| {
    ["eve", "wazuh", "ndjson", "cef", "leef", "syslog"]
        .iter()
        .filter_map(|n| LineFormat::from_name(n, None, None).ok())
        .collect()
});

static CONDITIONS: LazyLock<Vec<Condition>> = LazyLock::new(|| {
    [
        r#"event.source == "suricata" && event.severity == "high""#,
        r#"event.fields.src_ip == "10.0.0.1" || "x" in event.tags"#,
        r#"event.observables.exists(o, o.kind == "ip" && o.value.startsWith("10."))"#,
        r#"has(event.fields.proto) && string(event.fields.proto) == "TCP""#,
        r#"size(event.fields) > 3 && event.title.contains("alert")"#,
    ]
    .iter()
    .filter_map(|c| Condition::compile(c).ok())
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let Some(format) = FORMATS.get(usize::from(*sel) % FORMATS.len().max(1)) else {
        return;
    };
    let now = datetime!(2025-03-01 12:00 UTC);
    let text = String::from_utf8_lossy(rest);
    let policy = IntakePolicy::default();
    for line in text.split('\n') {
        let Ok(events) = format.parse_line(line, now) else {
            continue;
        };
        for ne in events {
            let (event, _dedup_key, _resolve) = to_event(ne, "fuzz", now);
            let _ = fingerprint(&event, &policy);
            let _ = event.details_json();
            let cel = cel_event(&event);
            let input = Input::new(&cel);
            for c in CONDITIONS.iter() {
                let _ = c.matches(&input);
            }
        }
    }
});
