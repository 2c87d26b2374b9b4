//! The writer's in-memory index of `event_dedup_pending` (migration 0014): the dedup keys first
//! seen since the last merge, kept in a heap table in arrival order.
//!
//! The table is only ever appended to between merges, so a commit writes the pages of its new
//! rows and nothing else; a key is found through this index (a hash of the key to the rowids
//! that hold a key with that hash, each checked against the row's key in SQL). The index is the
//! writer thread's (one per store), rebuilt from the table:
//! - when the writer begins its first transaction;
//! - when another connection has committed since (`PRAGMA data_version`: another process
//!   writing the same database, such as `firebreak ingest` beside a server);
//! - after a transaction that did not commit whole (a rolled-back batch, a failed change set in
//!   its savepoint), an import or a failed merge.

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

#[derive(Default)]
struct Index {
    rows: HashMap<u64, Rows>,
    hasher: RandomState,
    /// `PRAGMA data_version` when `rows` last matched the table; `None`: rebuild first
    version: Option<i64>,
    /// a transaction that may change the table is under way, or did not commit whole
    unsure: bool,
    /// keys added or removed so far (a savepoint that rolls back none needs no rebuild)
    changes: u64,
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

    fn rebuild(&mut self, conn: &Connection) -> StoreResult<()> {
        let started = std::time::Instant::now();
        self.rows.clear();
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
            ix.version = None;
            ix.rebuild(conn)?;
            ix.version = Some(version);
        }
        ix.unsure = true;
        Ok(())
    })
}

/// How many keys this writer has added or removed so far.
pub(crate) fn changes() -> u64 {
    INDEX.with_borrow(|ix| ix.changes)
}

/// Re-reads the table inside the current transaction (after a savepoint rolled back).
pub(crate) fn rebuild(conn: &Connection) -> StoreResult<()> {
    INDEX.with_borrow_mut(|ix| ix.rebuild(conn))
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
    });
}

/// A merge moved every pending key into `event_dedup` and committed.
pub(crate) fn merged() {
    INDEX.with_borrow_mut(|ix| ix.rows.clear());
}

/// A repeat of a pending key: its row updated as the keyed level's upsert did (a new event
/// once the window has passed), answering the event that holds the key now.
pub(crate) fn update(
    conn: &Connection,
    key: &str,
    candidate: &str,
    window_start: i64,
    now: i64,
) -> StoreResult<Option<String>> {
    let rows = INDEX.with_borrow(|ix| ix.candidates(key));
    for rowid in rows {
        let winner: Option<String> = conn
            .prepare_cached(
                "UPDATE event_dedup_pending SET \
                 event_id = CASE WHEN last_seen < ?3 THEN ?2 ELSE event_id END, \
                 last_seen = max(last_seen, ?4) WHERE rowid = ?5 AND dedup_key = ?1 RETURNING event_id",
            )
            .and_then(|mut s| {
                s.query_row(params![key, candidate, window_start, now, rowid], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map_err(err)?;
        if winner.is_some() {
            return Ok(winner);
        }
    }
    Ok(None)
}

/// A key first seen since the last merge (found in neither level).
pub(crate) fn insert(conn: &Connection, key: &str, event_id: &str, now: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO event_dedup_pending (dedup_key, event_id, last_seen) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![key, event_id, now]))
    .map_err(err)?;
    let rowid = conn.last_insert_rowid();
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
