//! TheHive alert bodies (`firebreak_intake::thehive::parse`) and the alert answer built from
//! one (`thehive::alert_response`).
#![no_main]

use firebreak_intake::thehive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((input, _event)) = thehive::parse(data) {
        let _ = thehive::alert_response("~123", &input, 1_700_000_000_000, "api", "New");
    }
});
