//! Playbook import: YAML (or JSON) text to a validated playbook
//! (`firebreak_app::playbook::parse`: YAML, then every step, condition, template, schedule
//! and duration checked, each error with its path).
#![no_main]

use firebreak_app::playbook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match playbook::parse(text) {
        Ok(pb) => {
            let _ = serde_json::to_string(&pb);
        }
        Err(errors) => assert!(!errors.is_empty(), "refused with no error"),
    }
});
