//! Step templates (minijinja with the fuel limit, `firebreak_app::playbook::render` and
//! `render_json`) against a fixed run context. Checked: the output limit holds, and a JSON body
//! renders to valid JSON or an error. Pathological templates must stop with an error (libFuzzer's
//! `-timeout` and `-rss_limit_mb` catch the ones that do not).
#![no_main]

use firebreak_app::playbook::{self, MAX_RENDERED};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

static CONTEXT: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let v = json!({
        "event": {
            "title": "ET MALWARE beacon <script>alert(1)</script>",
            "source": "suricata",
            "severity": "high",
            "host": "web-01",
            "tags": ["a", "b\"c"],
            "fields": {"src_ip": "10.0.0.1", "dest_port": 443, "nested": {"x": [1, 2, 3]}},
            "observables": [{"kind": "ip", "value": "10.0.0.1"}],
        },
        "ticket": {"reference": "SEC-000042", "title": "Beacon {{ 7*7 }}", "priority": "p2"},
        "steps": {"lookup": {"verdict": "malicious", "summary": "42/70 engines", "score": 42.5}},
        "trigger": {"kind": "event_received"},
        "playbook": {"name": "fuzz"},
        "observable": null,
        "emergency": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(out) = playbook::render(template, &CONTEXT) {
        assert!(out.len() <= MAX_RENDERED.max(template.len()));
    }
    if let Ok(out) = playbook::render_json(template, &CONTEXT) {
        assert!(out.len() <= MAX_RENDERED);
        assert!(serde_json::from_str::<Value>(&out).is_ok());
    }
});
