//! IBM LEEF 1.0/2.0 records (`firebreak_intake::leef::parse`), bare and behind a syslog header;
//! input with a NUL is `value\0pattern` for the Java date-format reader
//! (`leef::parse_java_format`, which `devTimeFormat` feeds).
#![no_main]

use firebreak_intake::{leef, syslog};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((value, fmt)) = text.split_once('\0') {
        let _ = leef::parse_java_format(value, fmt);
        return;
    }
    let _ = leef::parse(text);
    if let Ok(msg) = syslog::parse(text, datetime!(2025-01-05 12:00 UTC)) {
        let _ = syslog::to_events(&msg, text);
    }
});
