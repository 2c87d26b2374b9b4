//! [`IndicatorSet`]: the in-memory set every observable at intake is checked against.
//!
//! It holds a 64-bit keyed hash of each (kind, value), not the strings: 8 bytes per indicator
//! plus an index of at most 2 bytes per indicator, so 10,000,000 indicators take about 97 MB.
//! The hashes are sorted and deduplicated; the top bits of a hash pick a bucket of the index,
//! which gives the 2-4 neighbouring hashes to compare, so a lookup is one hash of the strings
//! and one or two cache misses.
//!
//! **A hit means "maybe".** Two different (kind, value) pairs can have the same hash. With `n`
//! indicators a lookup of something that is not one is a false hit with probability about
//! `n / 2^64` (5 × 10⁻¹³ at 10,000,000), so the caller confirms a hit against the database
//! (`IndicatorStore::find_indicators`) before acting on it. A miss is certain.
//!
//! The hash is keyed with a random seed drawn when the [`Builder`] is made
//! ([`IndicatorSet::builder`]), so nobody can compute values that collide with an indicator of
//! ours in advance; [`IndicatorSet::builder_with_seed`] gives reproducible sets for tests.
//! Values must be canonical (as `firebreak_intake::observables::classify` gives them, which is
//! how indicators are stored and how intake extracts observables): the set compares exact
//! bytes.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;

use firebreak_intake::Observable;

/// A set of (kind, value) pairs, stored as keyed 64-bit hashes. See the module documentation.
#[derive(Clone)]
pub struct IndicatorSet {
    seed: u64,
    /// Sorted, unique.
    keys: Vec<u64>,
    /// `index[b]..index[b + 1]` are the keys whose top bits are `b`; empty when the set is small
    /// (or beyond `u32::MAX` keys), then lookups binary-search `keys`.
    index: Vec<u32>,
    /// `64 - bits` of the index.
    shift: u32,
}

/// Gathers (kind, value) pairs for an [`IndicatorSet`].
#[derive(Clone)]
pub struct Builder {
    seed: u64,
    keys: Vec<u64>,
}

impl IndicatorSet {
    /// A builder with a random hash key.
    pub fn builder() -> Builder {
        Builder::new(RandomState::new().hash_one(0x5eed_u64))
    }

    /// A builder with a fixed hash key: the same pushes give the same set.
    pub fn builder_with_seed(seed: u64) -> Builder {
        Builder::new(seed)
    }

    /// Whether (`kind`, `value`) may be an indicator: `false` is certain, `true` is to be
    /// confirmed (see the module documentation).
    pub fn contains(&self, kind: &str, value: &str) -> bool {
        let h = key(self.seed, kind, value);
        if self.index.is_empty() {
            return self.keys.binary_search(&h).is_ok();
        }
        let b = (h >> self.shift) as usize;
        let (Some(&lo), Some(&hi)) = (self.index.get(b), self.index.get(b + 1)) else {
            return false;
        };
        self.keys
            .get(lo as usize..hi as usize)
            .is_some_and(|bucket| bucket.contains(&h))
    }

    /// [`contains`](Self::contains) for an observable from intake.
    pub fn contains_observable(&self, observable: &Observable) -> bool {
        self.contains(observable.kind.as_str(), &observable.value)
    }

    /// Distinct (kind, value) pairs (up to hash collisions).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Heap and inline bytes held.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.keys.capacity() * size_of::<u64>()
            + self.index.capacity() * size_of::<u32>()
    }
}

impl Default for IndicatorSet {
    /// The empty set.
    fn default() -> Self {
        Builder::new(0).build()
    }
}

impl fmt::Debug for IndicatorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndicatorSet")
            .field("len", &self.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            keys: Vec::new(),
        }
    }

    /// Room for `additional` more pushes (avoids regrowing when the count is known).
    pub fn reserve(&mut self, additional: usize) {
        self.keys.reserve(additional);
    }

    /// Adds one (kind, value); its value must be canonical.
    pub fn push(&mut self, kind: &str, value: &str) {
        self.keys.push(key(self.seed, kind, value));
    }

    /// Pushes so far, duplicates included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn build(self) -> IndicatorSet {
        let mut keys = self.keys;
        // `_by_key`: a local instantiation, optimized with this crate (plain `sort_unstable` of
        // `u64` may link a shared unoptimized one in dev builds, 20 times slower).
        keys.sort_unstable_by_key(|k| *k);
        keys.dedup();
        keys.shrink_to_fit();
        let n = keys.len();
        // About 2-4 keys per bucket; no index for tiny sets or beyond u32 positions.
        let bits = if n < 16 || u32::try_from(n).is_err() {
            0
        } else {
            (n / 2).ilog2()
        };
        let mut index = Vec::new();
        let shift = 64 - bits;
        if bits > 0 {
            let buckets = 1u64 << bits;
            index.reserve_exact(buckets as usize + 1);
            let mut pos = 0usize;
            for b in 0..=buckets {
                while pos < n && keys[pos] >> shift < b {
                    pos += 1;
                }
                // n fits in u32 (checked above).
                index.push(pos as u32);
            }
        }
        IndicatorSet {
            seed: self.seed,
            keys,
            index,
            shift,
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Builder {
    fn extend<T: IntoIterator<Item = (K, V)>>(&mut self, iter: T) {
        for (k, v) in iter {
            self.push(k.as_ref(), v.as_ref());
        }
    }
}

// A wyhash-style keyed hash (folded 64×64→128-bit multiplies), in safe Rust. Fast enough that
// building 10,000,000 keys is dominated by the sort, and well distributed, which the index's
// bucket sizes rely on.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// The 64-bit key of (kind, value): the value hashed with the kind's hash as seed, each with
/// its length mixed in, so no two different pairs frame to the same input.
fn key(seed: u64, kind: &str, value: &str) -> u64 {
    hash_bytes(hash_bytes(seed, kind.as_bytes()), value.as_bytes())
}

fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Little-endian `u64` of up to 8 bytes, zero-padded.
fn le(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut s = mum(seed ^ P0, len ^ P1);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        s = mum(le(&c[..8]) ^ P1, le(&c[8..]) ^ s);
    }
    let rest = chunks.remainder();
    let (a, b) = if rest.len() > 8 {
        (le(&rest[..8]), le(&rest[8..]))
    } else {
        (le(rest), 0)
    };
    mum(P2 ^ len, mum(a ^ P3, b ^ s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_answer_exactly() {
        let mut b = IndicatorSet::builder();
        b.push("ip", "192.0.2.1");
        b.push("domain", "evil.example");
        b.push("ip", "192.0.2.1");
        let set = b.build();
        assert_eq!(set.len(), 2);
        assert!(set.contains("ip", "192.0.2.1"));
        assert!(set.contains("domain", "evil.example"));
        assert!(
            !set.contains("domain", "192.0.2.1"),
            "the kind is part of the key"
        );
        assert!(!set.contains("ip", "192.0.2.2"));
        assert!(!set.contains("", ""));
    }

    #[test]
    fn empty_set() {
        let set = IndicatorSet::default();
        assert!(set.is_empty());
        assert!(!set.contains("ip", "192.0.2.1"));
        assert!(set.memory_bytes() < 100);
    }

    #[test]
    fn framing_keeps_kind_and_value_apart() {
        let s = 7;
        assert_ne!(key(s, "ab", "c"), key(s, "a", "bc"));
        assert_ne!(key(s, "a\0", "b"), key(s, "a", "\0b"));
        assert_ne!(key(s, "", ""), key(s, "", "\0"));
        assert_ne!(hash_bytes(s, &[0; 8]), hash_bytes(s, &[0; 9]));
        assert_ne!(hash_bytes(s, &[0; 16]), hash_bytes(s, &[0; 17]));
    }

    #[test]
    fn seeds_change_the_keys_and_fixed_seeds_repeat() {
        assert_ne!(key(1, "ip", "192.0.2.1"), key(2, "ip", "192.0.2.1"));
        let build = || {
            let mut b = IndicatorSet::builder_with_seed(42);
            b.extend([
                ("ip", "192.0.2.1"),
                ("md5", "d41d8cd98f00b204e9800998ecf8427e"),
            ]);
            b.build()
        };
        assert_eq!(build().keys, build().keys);
    }

    #[test]
    fn the_index_finds_every_key_of_a_mid_sized_set() {
        let mut b = IndicatorSet::builder();
        for i in 0..5000 {
            b.push("domain", &format!("host{i}.example"));
        }
        let set = b.build();
        assert!(!set.index.is_empty());
        assert_eq!(set.index.len(), (1 << (5000 / 2usize).ilog2()) + 1);
        assert!((0..5000).all(|i| set.contains("domain", &format!("host{i}.example"))));
        assert!((5000..10000).all(|i| !set.contains("domain", &format!("host{i}.example"))));
    }

    #[test]
    fn hashes_spread_evenly_over_buckets() {
        // Sequential, near-identical inputs: the worst case for a weak hash.
        let mut b = IndicatorSet::builder_with_seed(0);
        for i in 0..65_536u32 {
            b.push(
                "ip",
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            );
        }
        let set = b.build();
        assert_eq!(set.len(), 65_536);
        let biggest = set.index.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        // 32,768 buckets, 2 keys each on average: with a uniform hash the fullest holds about 10.
        assert!(biggest < 16, "fullest bucket has {biggest} keys");
    }
}
