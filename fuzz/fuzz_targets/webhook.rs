//! Generic JSON webhooks (`firebreak_intake::webhook::parse`). First byte even: the body is read
//! with the generic mapping. Odd: the rest is `MAPPING\0BODY`, a mapping as configured (JSON;
//! JSONPath expressions, RFC 9535) that is compiled (`Mapping::compile`) and used on the body.
#![no_main]

use firebreak_intake::webhook::{self, CompiledMapping, Mapping};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static GENERIC: LazyLock<CompiledMapping> = LazyLock::new(CompiledMapping::generic);

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    if sel % 2 == 0 {
        let _ = webhook::parse(rest, "fuzz", &GENERIC);
        return;
    }
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (mapping, body) = rest.split_at(split);
    let body = body.get(1..).unwrap_or(&[]);
    let Ok(mapping) = serde_json::from_slice::<Mapping>(mapping) else {
        return;
    };
    if let Ok(compiled) = mapping.compile() {
        let _ = webhook::parse(body, "fuzz", &compiled);
    }
});
