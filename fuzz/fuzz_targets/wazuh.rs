//! Wazuh `alerts.json` lines (`firebreak_intake::wazuh::parse_line`).
#![no_main]

use firebreak_intake::wazuh;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let _ = wazuh::parse_line(line);
    }
});
