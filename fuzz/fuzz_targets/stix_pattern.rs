//! STIX 2.1 patterns (the patterning-language parser behind STIX feeds): the input is the
//! `pattern` of one indicator in a bundle read by `firebreak_intel::feeds::parse_feed`.
#![no_main]

use firebreak_intel::feeds::{FeedFormat, parse_feed};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Ok(pattern) = std::str::from_utf8(data) else {
        return;
    };
    let bundle = json!({
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [{
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2024-01-01T00:00:00Z",
            "modified": "2024-01-01T00:00:00Z",
            "pattern_type": "stix",
            "pattern": pattern,
            "valid_from": "2024-01-01T00:00:00Z",
        }],
    });
    let bytes = bundle.to_string().into_bytes();
    let report = parse_feed(
        FeedFormat::Stix,
        &bytes,
        "fuzz",
        datetime!(2025-01-01 00:00 UTC),
    );
    assert!(
        report.is_ok(),
        "one bad indicator must not fail the bundle: {report:?}"
    );
});
