//! Prometheus Alertmanager webhook bodies (`firebreak_intake::alertmanager::parse`).
#![no_main]

use firebreak_intake::alertmanager;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = alertmanager::parse(data);
    if let Ok(serde_json::Value::Object(labels)) = serde_json::from_slice(data) {
        let _ = alertmanager::labels_fingerprint(&labels);
    }
});
