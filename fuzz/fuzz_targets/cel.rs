//! CEL conditions (`firebreak_app::expr`): suppression and classification rules
//! (`Condition::compile` + `matches` on a fixed event) and playbook conditions
//! (`ContextCondition::compile` + `eval` over a fixed run context). Pathological expressions
//! must end with an error, not hang or exhaust memory.
#![no_main]

use firebreak_app::expr::{CelEvent, CelObservable, Condition, ContextCondition, Input};
use firebreak_app::playbook::VARIABLES;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

static FIELDS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    match json!({
        "src_ip": "10.0.0.1",
        "dest_port": 443,
        "proto": "TCP",
        "score": 7.5,
        "list": [1, "two", null, {"k": true}],
        "nested": {"a": {"b": {"c": "deep"}}},
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
});

static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| vec!["phishing".into(), "vip".into()]);

static CONTEXT: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    match json!({
        "event": {"source": "suricata", "severity": "high", "fields": {"src_ip": "10.0.0.1"}},
        "ticket": {"reference": "SEC-000042", "priority": "p2", "tags": ["a"]},
        "steps": {"lookup": {"verdict": "malicious", "score": 42}},
        "trigger": {"kind": "manual"},
        "playbook": {"name": "fuzz"},
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cond) = Condition::compile(source) {
        let event = CelEvent {
            source: "suricata",
            source_kind: "sensor",
            source_ref: Some("1234"),
            rule_id: Some("2019401"),
            title: "ET POLICY curl User-Agent",
            description: None,
            severity: "high",
            original_severity: Some("1"),
            host: Some("web-01"),
            status: "new",
            tags: &TAGS,
            fields: &FIELDS,
            observables: vec![CelObservable {
                kind: "ip",
                value: "10.0.0.1",
            }],
            assets: vec!["web-01"],
            critical_asset: false,
            reporter_kind: None,
        };
        let _ = cond.needs();
        let _ = cond.matches(&Input::new(&event));
        let needs = cond.needs().clone();
        let _ = cond.matches(&Input::for_needs(&event, &needs));
    }
    if let Ok(cond) = ContextCondition::compile(source, VARIABLES) {
        let _ = cond.eval(&CONTEXT);
    }
});
