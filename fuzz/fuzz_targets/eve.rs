//! Suricata EVE JSON lines (`firebreak_intake::eve::parse_line`), with the default and the
//! all-types filter, and the `event_types` list parser.
#![no_main]

use firebreak_intake::eve::{self, EveTypes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let _ = eve::parse_line(line, &EveTypes::default());
        let _ = eve::parse_line(line, &EveTypes::all());
    }
    // The first line doubles as an `event_types` list (`alert,dns`, `*`).
    if let Some(first) = text.lines().next()
        && let Ok(types) = EveTypes::parse(first)
    {
        let _ = types.names();
        let _ = types.contains("alert");
    }
});
