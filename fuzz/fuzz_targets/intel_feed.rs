//! Indicator feeds (`firebreak_intel::feeds::parse_feed_with`): STIX 2.1 bundles (with their
//! patterns), MISP events and restSearch answers, CSV. The first byte picks the format (mod 3)
//! and whether only `to_ids` MISP attributes are taken.
#![no_main]

use firebreak_intel::feeds::{FeedFormat, FeedOptions, MAX_ERRORS, parse_feed_with};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let format = match sel % 3 {
        0 => FeedFormat::Stix,
        1 => FeedFormat::Misp,
        _ => FeedFormat::Csv,
    };
    let mut options = FeedOptions::new("fuzz-feed", datetime!(2025-06-01 00:00 UTC));
    options.ids_only = sel & 0x80 != 0;
    if let Ok(report) = parse_feed_with(format, rest, &options) {
        assert!(report.errors.len() <= MAX_ERRORS + 1);
        for i in &report.indicators {
            assert!(
                (0..=100).contains(&i.confidence),
                "confidence {}",
                i.confidence
            );
        }
    }
});
