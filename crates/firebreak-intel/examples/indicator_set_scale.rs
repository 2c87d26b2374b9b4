//! Builds an `IndicatorSet` of N indicators (default 10,000,000) and measures it.
//!
//! The unit tests stop at 1,000,000 (unoptimized, about a second). For the full size, build this
//! crate optimized without touching the workspace profiles:
//!
//! ```sh
//! cargo run -p firebreak-intel --example indicator_set_scale \
//!     --config 'profile.dev.package.firebreak-intel.opt-level=3' -- 10000000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use firebreak_intel::matcher::IndicatorSet;

fn indicator(i: u64) -> (&'static str, String) {
    match i % 4 {
        0 => (
            "ip",
            format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        ),
        1 => ("domain", format!("h{i}.bad.example")),
        2 => ("sha256", format!("{i:064x}")),
        _ => ("url", format!("https://cdn{i}.example.net/p/{i}.js")),
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(10_000_000, |a| a.parse().expect("N must be a number"));
    let started = Instant::now();
    let mut b = IndicatorSet::builder();
    b.reserve(usize::try_from(n).expect("N fits in memory"));
    for i in 0..n {
        let (kind, value) = indicator(i);
        b.push(kind, &value);
    }
    let pushed = started.elapsed();
    let set = b.build();
    let built = started.elapsed();
    println!(
        "{n} indicators: pushed in {pushed:?} (formatting included), built in {built:?}, \
         {} distinct, {:.1} MiB",
        set.len(),
        set.memory_bytes() as f64 / (1024.0 * 1024.0)
    );
    // Probes: spread over the set (hits) and beyond it (misses), prepared in advance.
    let probes: Vec<(&str, String)> = (0..1_000_000u64)
        .map(|i| indicator(i.wrapping_mul(2_654_435_761) % (2 * n)))
        .collect();
    let started = Instant::now();
    let mut hits = 0usize;
    for (kind, value) in &probes {
        hits += usize::from(black_box(set.contains(kind, value)));
    }
    let per = started.elapsed() / 1_000_000;
    println!("1,000,000 lookups: {per:?} each, {hits} hits");
}
