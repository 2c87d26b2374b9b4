//! Syslog messages, RFC 5424 and RFC 3164 (`firebreak_intake::syslog::parse` and `to_events`),
//! one per line, with `now` near a year boundary (RFC 3164 timestamps have no year).
#![no_main]

use firebreak_intake::syslog;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        for now in [
            datetime!(2025-01-02 00:30 UTC),
            datetime!(2024-12-31 23:59:59 +14:00),
        ] {
            if let Ok(msg) = syslog::parse(line, now) {
                let _ = msg.facility_name();
                let _ = msg.severity_name();
                let _ = syslog::to_events(&msg, line);
            }
        }
    }
});
