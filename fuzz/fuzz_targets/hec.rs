//! Splunk HTTP Event Collector bodies: `/services/collector` (concatenated JSON envelopes,
//! `hec::split_events` + `HecEvent::parse` + `hec::to_events`) when the first byte is even,
//! `/services/collector/raw` (`hec::raw_to_events`, with a Suricata, Wazuh or other sourcetype
//! picked by the first byte) when it is odd.
#![no_main]

use firebreak_intake::hec::{self, HecEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, body @ ..] = data else {
        return;
    };
    if sel % 2 == 0 {
        for item in hec::split_events(body) {
            let Ok((i, raw)) = item else {
                continue;
            };
            match HecEvent::parse(raw, i) {
                Ok(ev) => {
                    let _ = hec::to_events(&ev, raw.get());
                }
                Err(e) => {
                    let _ = e.response_body();
                }
            }
        }
    } else {
        let sourcetype = match (sel / 2) % 4 {
            0 => None,
            1 => Some("suricata"),
            2 => Some("wazuh"),
            _ => Some("linux_secure"),
        };
        let _ = hec::raw_to_events(body, Some("host-1"), Some("/var/log/x"), sourcetype);
    }
});
