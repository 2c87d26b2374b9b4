//! Integration tests of firebreak-intel: golden samples (`tests/samples/`) and behaviour.
//!
//! A sample's expected output sits next to it as `<name>.golden.json`.
//! `FIREBREAK_BLESS=1 cargo nextest run -p firebreak-intel` rewrites the goldens from the
//! current output: read the diff before committing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connectors;
mod feeds;
mod matcher;
mod outbound;

use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

/// The "now" of every test.
pub const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

pub fn sample(path: &str) -> Vec<u8> {
    let p = samples_dir().join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Compares `actual` with the golden file `path` (relative to the samples), or rewrites it
/// with `FIREBREAK_BLESS=1`.
pub fn check_golden(path: &str, actual: &Value) {
    let p = samples_dir().join(path);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var("FIREBREAK_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&p, pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run with FIREBREAK_BLESS=1)", p.display()));
    assert!(
        expected == pretty,
        "{} differs from the output (FIREBREAK_BLESS=1 rewrites it):\n{pretty}",
        p.display()
    );
}
