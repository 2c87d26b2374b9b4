//! ArcSight CEF records (`firebreak_intake::cef::parse`), bare and behind a syslog header
//! (`syslog::parse` + `syslog::to_events`, which detects the CEF payload).
#![no_main]

use firebreak_intake::{cef, syslog};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cef::parse(text);
    let _ = cef::level_of_severity(text);
    if let Ok(msg) = syslog::parse(text, datetime!(2025-01-05 12:00 UTC)) {
        let _ = syslog::to_events(&msg, text);
    }
});
