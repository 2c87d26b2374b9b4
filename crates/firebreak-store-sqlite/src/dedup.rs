//! The writer's memory of what it wrote, so that the intake's hot path reads the database
//! less.
//!
//! - An index of `event_dedup_pending` (migration 0014): the dedup keys first seen since the
//!   last merge, kept in a heap table in arrival order. The table is only ever appended to
//!   between merges, so a commit writes the pages of its new rows and nothing else; a key is
//!   found through this index (a hash of the key to the rowids that hold a key with that hash,
//!   each checked against the row's key in SQL).
//! - A filter of `event_dedup`'s keys (a Bloom filter of their hashes): a key it lacks is in no
//!   row there, so a new key costs no B-tree descent into a table of a million random keys.
//!   It may only answer "maybe" wrongly (then SQL answers), never "no": it is built from the
//!   whole table and extended by each merge, and dropped whenever it may miss a key.
//! - The observables recorded lately (id -> a `last_seen` their row has at least), in a
//!   fixed-size set-associative table of a million slots: an observable mentioned again within
//!   the minute needs no upsert at all.
//!
//! All three are the writer thread's (one per store). The index is rebuilt and the observables
//! forgotten:
//! - when the writer begins its first transaction;
//! - when another connection has committed since (`PRAGMA data_version`: another process
//!   writing the same database, such as `firebreak ingest` beside a server);
//! - after a transaction that did not commit whole (a rolled-back batch, a failed change set in
//!   its savepoint), an import, a failed merge or a reopened connection.
//!
//! The filter is dropped on a foreign commit, an import, a failed merge or a reopened
//! connection; a rollback keeps it (only merges add keys to `event_dedup`).
//!
//! The filter is built again by scanning `event_dedup` when the writer starts and at its next
//! merge after it was dropped (never per batch: with two processes writing, it is mostly
//! absent, and every key is looked up in SQL as before).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use firebreak_store::StoreResult;
use rusqlite::{Connection, OptionalExtension, params};

use crate::writer::err;

/// The rowids holding keys with one hash (almost always one).
enum Rows {
    One(i64),
    Many(Vec<i64>),
}

impl Rows {
    fn list(&self) -> Vec<i64> {
        match self {
            Rows::One(r) => vec![*r],
            Rows::Many(v) => v.clone(),
        }
    }
}

/// A Bloom filter of key hashes: `contains` is false only for a hash never added.
struct Bloom {
    bits: Vec<u64>,
    /// hashes added, and how many it holds before its false positives pass ~1%
    len: usize,
    capacity: usize,
}

/// Probes per key: with 10 bits per key, about 1% false positives at capacity.
const PROBES: u64 = 7;
const BITS_PER_KEY: usize = 10;
/// Observables remembered: 2^20 slots of 24 bytes (24 MiB, allocated at the first one and all
/// resident soon after: ids fall in random sets), in sets of [`WAYS`]; a full set forgets its
/// oldest.
const OBSERVABLE_SLOTS: usize = 1 << 20;
const WAYS: usize = 4;
/// The observables table moves `last_seen` at most once a minute (see `upsert_observable`).
pub(crate) const OBSERVABLE_TOUCH_MS: i64 = 60_000;

impl Bloom {
    fn with_capacity(keys: usize) -> Self {
        let capacity = keys.max(1 << 16);
        Self {
            bits: vec![0; (capacity * BITS_PER_KEY).div_ceil(64)],
            len: 0,
            capacity,
        }
    }

    /// The bits of one hash (double hashing: `h + i * h'`).
    fn probes(words: usize, h: u64) -> impl Iterator<Item = (usize, u64)> {
        let m = (words * 64) as u64;
        let (a, b) = (h, h.rotate_left(32) | 1);
        (0..PROBES).map(move |i| {
            let bit = a.wrapping_add(i.wrapping_mul(b)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn add(&mut self, h: u64) {
        for (w, mask) in Self::probes(self.bits.len(), h) {
            self.bits[w] |= mask;
        }
        self.len += 1;
    }

    fn contains(&self, h: u64) -> bool {
        Self::probes(self.bits.len(), h).all(|(w, mask)| self.bits[w] & mask != 0)
    }
}

/// A fixed-size, set-associative memory of observable ids and the `last_seen` their rows have
/// at least. A slot holds the whole id (never a hash of it): it can forget an observable, never
/// mistake one for another. Forgetting everything bumps a generation instead of touching the
/// table (with two writers on one file it happens at every batch).
#[derive(Default)]
struct Observables {
    /// `[id high, id low, generation << 48 | last_seen]`; a slot of another generation is free
    slots: Vec<[u64; 3]>,
    /// the current generation (never 0: a zeroed slot is of no generation)
    generation: u64,
}

/// `last_seen` is epoch milliseconds: 48 bits last until the year 10889.
const SEEN_BITS: u32 = 48;
const SEEN_MASK: u64 = (1 << SEEN_BITS) - 1;

impl Observables {
    fn set(&self, id: u128) -> std::ops::Range<usize> {
        // ids are SHA-256 based (UUID v8, `observable_id`): their bits are already mixed
        let sets = OBSERVABLE_SLOTS / WAYS;
        let s = ((id as u64) ^ ((id >> 64) as u64)) as usize % sets;
        s * WAYS..(s + 1) * WAYS
    }

    /// A slot's `last_seen`, 0 when it is free.
    fn seen(&self, slot: &[u64; 3]) -> u64 {
        if slot[2] >> SEEN_BITS == self.generation {
            slot[2] & SEEN_MASK
        } else {
            0
        }
    }

    fn get(&self, id: u128) -> Option<i64> {
        if self.slots.is_empty() {
            return None;
        }
        let (hi, lo) = ((id >> 64) as u64, id as u64);
        self.slots[self.set(id)]
            .iter()
            .find(|s| s[0] == hi && s[1] == lo && self.seen(s) != 0)
            .map(|s| self.seen(s) as i64)
    }

    /// Remembers that the row has `last_seen` at least `least`.
    fn put(&mut self, id: u128, least: i64) {
        let Ok(least) = u64::try_from(least) else {
            return;
        };
        if least == 0 || least > SEEN_MASK {
            return;
        }
        if self.slots.is_empty() {
            self.slots = vec![[0; 3]; OBSERVABLE_SLOTS];
            self.generation = 1;
        }
        let (hi, lo) = ((id >> 64) as u64, id as u64);
        let range = self.set(id);
        let mut seen = [0u64; WAYS];
        for (t, s) in seen.iter_mut().zip(&self.slots[range.clone()]) {
            *t = self.seen(s);
        }
        let set = &mut self.slots[range];
        let i = set
            .iter()
            .zip(&seen)
            .position(|(s, &t)| s[0] == hi && s[1] == lo && t != 0)
            // else the oldest slot (a free one is the oldest of all)
            .unwrap_or_else(|| (0..WAYS).min_by_key(|&i| seen[i]).unwrap_or(0));
        let at_least = if set[i][0] == hi && set[i][1] == lo {
            seen[i].max(least)
        } else {
            least
        };
        set[i] = [hi, lo, self.generation << SEEN_BITS | at_least];
    }

    /// Forgets every observable.
    fn clear(&mut self) {
        if self.generation >= (1 << (64 - SEEN_BITS)) - 1 {
            // the generations wrapped: the slots are zeroed once
            self.slots.iter_mut().for_each(|s| *s = [0; 3]);
            self.generation = 1;
        } else if !self.slots.is_empty() {
            self.generation += 1;
        }
    }
}

#[derive(Default)]
struct Index {
    rows: HashMap<u64, Rows>,
    hasher: RandomState,
    /// every key of `event_dedup`, when known (`None`: look every key up in SQL)
    merged: Option<Bloom>,
    /// observable id -> a `last_seen` its row has at least
    observables: Observables,
    /// rows this writer has written to `observable_pending` (inserted or moved on), ever
    observables_pending_added: u64,
    /// `PRAGMA data_version` when `rows` last matched the table; `None`: rebuild first
    version: Option<i64>,
    /// a transaction that may change the table is under way, or did not commit whole
    unsure: bool,
    /// keys added or removed so far (a savepoint that rolls back none needs no rebuild)
    changes: u64,
    /// the filter a merge under way leaves once it commits
    next_merged: Option<Bloom>,
    /// the first transaction began (the filter was built once by a scan)
    started: bool,
}

thread_local! {
    static INDEX: RefCell<Index> = RefCell::new(Index::default());
}

impl Index {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn add(&mut self, key: &str, rowid: i64) {
        let h = self.hash(key);
        match self.rows.get_mut(&h) {
            None => {
                self.rows.insert(h, Rows::One(rowid));
            }
            Some(Rows::One(first)) => {
                let first = *first;
                self.rows.insert(h, Rows::Many(vec![first, rowid]));
            }
            Some(Rows::Many(v)) => v.push(rowid),
        }
    }

    fn remove(&mut self, key: &str, rowid: i64) {
        let h = self.hash(key);
        let empty = match self.rows.get_mut(&h) {
            Some(Rows::Many(v)) => {
                v.retain(|r| *r != rowid);
                v.is_empty()
            }
            Some(Rows::One(r)) => *r == rowid,
            None => false,
        };
        if empty {
            self.rows.remove(&h);
        }
    }

    fn candidates(&self, key: &str) -> Vec<i64> {
        self.rows
            .get(&self.hash(key))
            .map(Rows::list)
            .unwrap_or_default()
    }

    /// A filter of every key in `event_dedup` as this transaction sees it.
    fn scan_merged(&self, conn: &Connection) -> StoreResult<Bloom> {
        let started = std::time::Instant::now();
        // one pass over the table: the hashes first, then a filter sized for them
        let mut hashes = Vec::new();
        let mut stmt = conn
            .prepare("SELECT dedup_key FROM event_dedup")
            .map_err(err)?;
        let mut q = stmt.query([]).map_err(err)?;
        while let Some(r) = q.next().map_err(err)? {
            // a key stored as anything but text never equals a text key: no need to filter it
            if let Ok(key) = r.get_ref(0).map_err(err)?.as_str() {
                hashes.push(self.hash(key));
            }
        }
        // room to grow: merges add to it until the next scan
        let mut bloom = Bloom::with_capacity(hashes.len() * 2);
        for h in hashes {
            bloom.add(h);
        }
        tracing::debug!(
            keys = bloom.len,
            ms = started.elapsed().as_millis() as u64,
            "sqlite dedup keys filtered"
        );
        Ok(bloom)
    }

    fn rebuild(&mut self, conn: &Connection) -> StoreResult<()> {
        let started = std::time::Instant::now();
        self.rows.clear();
        self.observables.clear();
        crate::pack::forget_stored();
        let mut stmt = conn
            .prepare("SELECT rowid, dedup_key FROM event_dedup_pending")
            .map_err(err)?;
        let mut q = stmt.query([]).map_err(err)?;
        let mut n = 0u64;
        while let Some(r) = q.next().map_err(err)? {
            let rowid: i64 = r.get(0).map_err(err)?;
            let key: String = r.get(1).map_err(err)?;
            self.add(&key, rowid);
            n += 1;
        }
        tracing::debug!(
            keys = n,
            ms = started.elapsed().as_millis() as u64,
            "sqlite pending dedup keys indexed"
        );
        Ok(())
    }
}

/// At the start of a write transaction (the write lock held): rebuilds the index if the table
/// may have changed behind it.
pub(crate) fn begin(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn
        .query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(err)?;
    INDEX.with_borrow_mut(|ix| {
        if ix.unsure || ix.version != Some(version) {
            let first = ix.version.is_none() && !ix.started;
            if ix.version != Some(version) {
                // another connection may have merged keys of its own into event_dedup (only
                // merges add keys there: a rolled-back transaction of this writer added none)
                ix.merged = None;
            }
            ix.version = None;
            ix.rebuild(conn)?;
            if first {
                ix.merged = Some(ix.scan_merged(conn)?);
                ix.started = true;
            }
            ix.version = Some(version);
        }
        ix.unsure = true;
        Ok(())
    })
}

/// Whether `key` may be in `event_dedup` (false: it is certainly not there).
pub(crate) fn may_be_merged(key: &str) -> bool {
    INDEX.with_borrow(|ix| ix.merged.as_ref().is_none_or(|b| b.contains(ix.hash(key))))
}

/// Inside a merge's transaction, after [`begin`] and the merge: the filter of `event_dedup`
/// once the merge commits (the pending keys added to it, or the table scanned when there is
/// no filter or it is full).
pub(crate) fn merged_filter(conn: &Connection) -> StoreResult<()> {
    INDEX.with_borrow_mut(|ix| {
        let pending: Vec<u64> = ix.rows.keys().copied().collect();
        let next = match ix.merged.take() {
            Some(mut b) if b.len + pending.len() <= b.capacity => {
                for h in pending {
                    b.add(h);
                }
                b
            }
            _ => ix.scan_merged(conn)?,
        };
        ix.next_merged = Some(next);
        Ok(())
    })
}

/// Whether an observable's row is known to have `last_seen` at `at` or later than
/// `at - OBSERVABLE_TOUCH_MS`: its upsert would change nothing.
pub(crate) fn observable_fresh(id: u128, at: i64) -> bool {
    INDEX.with_borrow(|ix| {
        ix.observables
            .get(id)
            .is_some_and(|seen| at <= seen + OBSERVABLE_TOUCH_MS)
    })
}

/// An observable's upsert ran: its row's `last_seen` is `at` (it changed) or at least
/// `at - OBSERVABLE_TOUCH_MS` (it did not).
pub(crate) fn observable_written(id: u128, at: i64, changed: bool) {
    INDEX.with_borrow_mut(|ix| {
        let least = if changed {
            at
        } else {
            at - OBSERVABLE_TOUCH_MS
        };
        ix.observables.put(id, least);
    });
}

/// A row of `observable_pending` was inserted or updated (the merge counts it again soon).
pub(crate) fn observable_pending_added() {
    INDEX.with_borrow_mut(|ix| ix.observables_pending_added += 1);
}

/// Rows this writer has written to `observable_pending` so far.
pub(crate) fn observables_pending_added() -> u64 {
    INDEX.with_borrow(|ix| ix.observables_pending_added)
}

/// How many keys this writer has added or removed so far.
pub(crate) fn changes() -> u64 {
    INDEX.with_borrow(|ix| ix.changes)
}

/// Re-reads the table inside the current transaction (after a savepoint rolled back).
pub(crate) fn rebuild(conn: &Connection) -> StoreResult<()> {
    INDEX.with_borrow_mut(|ix| ix.rebuild(conn))
}

/// A savepoint rolled back: the observables it recorded are not recorded after all.
pub(crate) fn rolled_back() {
    INDEX.with_borrow_mut(|ix| ix.observables.clear());
    crate::pack::forget_stored();
}

/// The transaction begun with [`begin`] committed, every change in it.
pub(crate) fn committed() {
    INDEX.with_borrow_mut(|ix| ix.unsure = false);
}

/// The table may not match the index (an import, a failed merge, a reopened connection).
pub(crate) fn invalidate() {
    INDEX.with_borrow_mut(|ix| {
        ix.version = None;
        ix.rows.clear();
        ix.merged = None;
        ix.next_merged = None;
        ix.observables.clear();
        crate::pack::forget_stored();
    });
}

/// A merge moved every pending key into `event_dedup` and committed (after
/// [`merged_filter`] in its transaction).
pub(crate) fn merged() {
    INDEX.with_borrow_mut(|ix| {
        ix.rows.clear();
        ix.merged = ix.next_merged.take();
    });
}

/// The event that holds a pending key, and the key's row (`None`: the key is not pending).
pub(crate) fn find(
    hot: &mut crate::writer::Hot<'_>,
    key: &str,
) -> StoreResult<Option<(String, Option<i64>)>> {
    let rows = INDEX.with_borrow(|ix| ix.candidates(key));
    for rowid in rows {
        let holder: Option<String> = hot
            .get(crate::writer::Q::DedupPendingGet)?
            .query_row(params![key, rowid], |r| r.get(0))
            .optional()
            .map_err(err)?;
        if let Some(holder) = holder {
            return Ok(Some((holder, Some(rowid))));
        }
    }
    Ok(None)
}

/// A key first seen since the last merge (found in neither level).
pub(crate) fn insert(
    hot: &mut crate::writer::Hot<'_>,
    key: &str,
    event_id: &str,
    now: i64,
) -> StoreResult<()> {
    hot.get(crate::writer::Q::DedupPendingInsert)?
        .execute(params![key, event_id, now])
        .map_err(err)?;
    let rowid = hot.conn.last_insert_rowid();
    INDEX.with_borrow_mut(|ix| {
        ix.add(key, rowid);
        ix.changes += 1;
    });
    Ok(())
}

/// Removes a pending key (a resolution), answering the event that held it.
pub(crate) fn take(conn: &Connection, key: &str) -> StoreResult<Option<String>> {
    let rows = INDEX.with_borrow(|ix| ix.candidates(key));
    for rowid in rows {
        let found: Option<String> = conn
            .prepare_cached(
                "DELETE FROM event_dedup_pending WHERE rowid = ?1 AND dedup_key = ?2 RETURNING event_id",
            )
            .and_then(|mut s| s.query_row(params![rowid, key], |r| r.get(0)).optional())
            .map_err(err)?;
        if found.is_some() {
            INDEX.with_borrow_mut(|ix| {
                ix.remove(key, rowid);
                ix.changes += 1;
            });
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never a false "no" (a duplicate would become a new event); about 1% false "maybe" at
    /// capacity (each one costs a lookup in SQL, nothing else).
    #[test]
    fn the_filter_never_misses_a_key_and_rarely_claims_one() {
        let hasher = RandomState::new();
        let n = 200_000;
        let mut b = Bloom::with_capacity(n);
        for i in 0..n {
            b.add(hasher.hash_one(format!("key-{i}")));
        }
        assert!((0..n).all(|i| b.contains(hasher.hash_one(format!("key-{i}")))));
        let false_positives = (0..n)
            .filter(|i| b.contains(hasher.hash_one(format!("other-{i}"))))
            .count();
        assert!(
            false_positives < n / 50,
            "{false_positives} false positives in {n}"
        );
    }

    /// The memory of observables forgets (the oldest of a full set first), and never answers
    /// for an id it was not told about, even one that falls in the same set.
    #[test]
    fn the_observable_memory_forgets_but_never_confuses() {
        let mut m = Observables::default();
        assert_eq!(m.get(7), None);
        m.put(7, 1_000);
        m.put(7, 900);
        assert_eq!(m.get(7), Some(1_000), "last_seen only moves forward");
        // ids of one set: the set is chosen by hi ^ lo
        let same_set = |i: u128| (i << 64) | (i ^ 7);
        assert_eq!(m.set(same_set(3)), m.set(7));
        for i in 1..WAYS as u128 {
            m.put(same_set(i), 2_000 + i as i64);
        }
        assert_eq!(m.get(7), Some(1_000));
        // a fifth id of the set replaces the oldest (id 7)
        m.put(same_set(9), 5_000);
        assert_eq!(m.get(7), None);
        assert_eq!(m.get(same_set(9)), Some(5_000));
        for i in 1..WAYS as u128 {
            assert_eq!(m.get(same_set(i)), Some(2_000 + i as i64));
        }
        assert_eq!(m.get(same_set(10)), None, "an id of the set never put");
        let many = 3 * OBSERVABLE_SLOTS as u128;
        for i in 0..many {
            m.put(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                10_000,
            );
        }
        let remembered = (0..many)
            .filter(|i| {
                m.get(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
                    .is_some()
            })
            .count();
        assert!(remembered <= OBSERVABLE_SLOTS);
        assert!(remembered > OBSERVABLE_SLOTS / 2, "{remembered} remembered");
        let first_generation = (0..many)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .find(|&id| m.get(id).is_some())
            .unwrap();
        m.clear();
        assert_eq!(m.get(same_set(9)), None);
        assert_eq!(m.get(7), None);
        m.put(same_set(9), 6_000);
        assert_eq!(
            m.get(same_set(9)),
            Some(6_000),
            "remembered again after a clear"
        );
        // the generations wrap: nothing of an old generation comes back
        m.generation = (1 << (64 - SEEN_BITS)) - 2;
        m.put(11, 7_000);
        m.clear();
        m.clear();
        assert_eq!(m.generation, 1);
        assert_eq!(m.get(11), None);
        assert_eq!(m.get(same_set(9)), None);
        assert_eq!(
            m.get(first_generation),
            None,
            "a slot of generation 1 before the wrap"
        );
    }
}
