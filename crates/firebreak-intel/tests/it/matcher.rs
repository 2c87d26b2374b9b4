use std::time::Instant;

use firebreak_intake::observables::classify;
use firebreak_intel::matcher::IndicatorSet;

/// The i-th of a million distinct indicators of several kinds.
fn indicator(i: u32) -> (&'static str, String) {
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

#[test]
fn one_million_indicators_build_small_and_answer_hits_and_misses() {
    let started = Instant::now();
    let mut b = IndicatorSet::builder();
    b.reserve(1_000_000);
    for i in 0..1_000_000 {
        let (kind, value) = indicator(i);
        b.push(kind, &value);
    }
    let built = started.elapsed();
    let set = b.build();
    let total = started.elapsed();
    eprintln!(
        "1,000,000 indicators: pushed in {built:?}, built in {total:?}, {} bytes",
        set.memory_bytes()
    );
    assert_eq!(set.len(), 1_000_000);
    // 8 bytes a key and at most 2 of index.
    assert!(set.memory_bytes() <= 10_000_100, "{}", set.memory_bytes());
    for i in [0, 1, 2, 3, 4999, 123_457, 999_999] {
        let (kind, value) = indicator(i);
        assert!(set.contains(kind, &value), "{kind} {value}");
    }
    for i in [1_000_000, 1_000_001, 1_000_002, 1_000_003, 7_777_777] {
        let (kind, value) = indicator(i);
        assert!(!set.contains(kind, &value), "{kind} {value}");
    }
    // The kind is part of the key.
    let (_, value) = indicator(1);
    assert!(!set.contains("hostname", &value));

    let probes: Vec<(&str, String)> = (0..20_000).map(|i| indicator(i * 97)).collect();
    let started = Instant::now();
    let hits = probes.iter().filter(|(k, v)| set.contains(k, v)).count();
    let per_lookup = started.elapsed() / 20_000;
    eprintln!("lookup: {per_lookup:?} each (unoptimized build)");
    // i * 97 < 1,000,000 for i <= 10,309.
    assert_eq!(hits, 10_310);
}

#[test]
fn observables_from_intake_match_indicators_from_feeds() {
    let mut b = IndicatorSet::builder();
    b.push("domain", "evil.example.com");
    b.push("ip", "2001:db8::1");
    let set = b.build();
    let obs = classify(None, "hxxps://EVIL.example[.]com").unwrap();
    assert!(!set.contains_observable(&obs), "a url is not the domain");
    let obs = classify(None, "Evil.Example.COM").unwrap();
    assert!(set.contains_observable(&obs));
    let obs = classify(None, "2001:0DB8:0000::0001").unwrap();
    assert!(set.contains_observable(&obs));
}
