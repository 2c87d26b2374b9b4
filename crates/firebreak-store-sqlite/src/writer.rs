//! The single SQLite writer: a dedicated thread with its own connection (rusqlite: no
//! per-statement hop to a worker thread, prepared statements reused) drains queued change sets,
//! applies up to `MAX_BATCH` of them in one `BEGIN IMMEDIATE` transaction (when one fails, the
//! batch is redone with a savepoint per change set, so that one failure does not fail the
//! others), appends their audit entries to the chain, signs the new head, COMMITs, then answers.
//! Job claims (`Store::claim_jobs`) come through the same queue and run between batches, each in
//! a transaction of its own: being on the one writer, no two claims can return the same job.
//! Invariant: no caller hears "ok" before the COMMIT that holds its change has returned.

use firebreak_domain::audit::AuditDraft;
use firebreak_domain::event::{Event, ObservableRef};
use firebreak_domain::ticket::Ticket;
use firebreak_store::{
    AuditSigner, ChangeSet, CommitOutcome, Ingested, JobRecord, NewEvent, Op, StoreError,
    StoreResult, UserRecord, WorkflowRecord, roles_to_text, scopes_to_text, to_millis,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Change sets per transaction at most.
pub const MAX_BATCH: usize = 512;
/// Queued change sets at most before `commit` waits (backpressure).
pub const QUEUE: usize = 4096;

pub struct Job {
    pub changes: ChangeSet,
    pub reply: oneshot::Sender<StoreResult<CommitOutcome>>,
}

/// A lease claim on due jobs (`Store::claim_jobs`), run by the writer between batches.
pub struct Claim {
    pub worker: String,
    /// Epoch milliseconds.
    pub now: i64,
    /// The lease's end, epoch milliseconds.
    pub until: i64,
    pub limit: u32,
    pub reply: oneshot::Sender<StoreResult<Vec<JobRecord>>>,
}

/// What the writer is asked to do.
pub enum Request {
    Commit(Job),
    Claim(Claim),
    /// Restore a snapshot (`Store::import_snapshot`), alone in its transaction.
    Import(
        Box<dyn firebreak_store::snapshot::SnapshotSource>,
        oneshot::Sender<StoreResult<firebreak_store::snapshot::ImportReport>>,
    ),
}

pub fn err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let msg = msg.clone().unwrap_or_else(|| f.to_string());
        // 2067 SQLITE_CONSTRAINT_UNIQUE, 1555 SQLITE_CONSTRAINT_PRIMARYKEY
        if f.code == ErrorCode::ConstraintViolation && matches!(f.extended_code, 2067 | 1555) {
            return StoreError::Conflict(format!("already exists: {msg}"));
        }
        return match f.code {
            ErrorCode::DiskFull => StoreError::Full(msg),
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied => StoreError::Unavailable(msg),
            _ => StoreError::Other(e.into()),
        };
    }
    StoreError::Other(e.into())
}

/// Opens the writer's connection with the durability settings, and checks they took effect.
pub fn open(path: &str) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "sqlite journal_mode is {mode}, expected wal"
    );
    anyhow::ensure!(sync == 2, "sqlite synchronous is {sync}, expected 2 (FULL)");
    conn.set_prepared_statement_cache_capacity(64);
    // WAL pages are copied into the database by the checkpointer thread, off the commit path
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    // savepoints keep their undo pages in a statement journal: in memory, not in a temp file
    conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
    // the writer's page cache holds the hot index pages (dedup keys, observables) between
    // batches instead of reading them back through the OS every time
    conn.execute_batch("PRAGMA cache_size = -65536;")?;
    Ok(conn)
}

pub fn run(
    path: &str,
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    signer: &AuditSigner,
    options: &crate::SqliteOptions,
    packer: &std::sync::Arc<crate::pack::Packer>,
) {
    crate::pack::set_writer_packer(packer.clone());
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut merges = MergeState::default();
    WAL_LIMIT_HERE.set(options.wal_limit);
    limit_wal_file(&conn);
    // a claim that arrived while a batch was being gathered: served right after that batch
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(r) => r,
            None => match rx.blocking_recv() {
                Some(r) => r,
                None => break,
            },
        };
        match first {
            Request::Claim(c) => {
                serve_claim(path, &mut conn, c);
                continue;
            }
            Request::Import(source, reply) => {
                let res = crate::snapshot::import(&mut conn, source);
                crate::dedup::invalidate();
                let _ = reply.send(res);
                continue;
            }
            Request::Commit(j) => batch.push(j),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Request::Commit(j)) => batch.push(j),
                Ok(claim) => {
                    next = Some(claim);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_batch(path, &mut conn, signer, &mut batch);
        merge_levels_if_due(path, &mut conn, &mut merges, options.merge_at);
    }
}

/// Rows in a second level that make the writer merge it into its table: 300,000 links (about
/// 85,000 EVE events' worth) or dedup keys.
pub(crate) const MERGE_AT: i64 = 300_000;

/// A second level (see migrations 0012, 0014 and 0016): new rows go to a small table, merged into
/// the large one in key order in one transaction between batches. A row written straight into
/// a large B-tree with random keys dirtied a page of it per row; sorted, each page is written
/// once per merge however many rows it takes. Readers look at both levels.
struct Level {
    recent: &'static str,
    table: &'static str,
    /// the merge; the recent table is emptied after it in the same transaction
    merge: &'static str,
    /// run after `merge` when it moved fewer rows than the recent table held (a key in both
    /// levels, which the writer never makes): updates the large table's rows for them
    conflicts: Conflicts,
    /// rows one new event adds, at most in practice
    per_event: i64,
    /// rows past which the level is merged whatever `merge_at` says: its own index is random
    /// too, and each commit dirties up to all of its pages
    at_most: i64,
    /// rows this writer has added to the level so far, when `per_event` is no bound (an event
    /// may name hundreds of observables; a ticket links them without any event)
    added: Option<fn() -> u64>,
    /// the writer's filter of the table's keys follows each merge (`dedup.rs`)
    filtered: bool,
}

/// How a merge updates the rows of keys the large table already held (see [`Level`]).
#[derive(Clone, Copy)]
enum Conflicts {
    /// `?1` is the large table's largest rowid before the merge (its rows after it are new)
    UpToRowid(&'static str),
    /// leaves rows alone that it would not change
    Plain(&'static str),
}

// The merges are `INSERT OR IGNORE`: a plain `INSERT ... SELECT` or an upsert may fail after
// writing some rows, so inside a transaction SQLite keeps a statement journal for it, a copy of
// every page of the large table it touches (a sixth of a merge's time in `perf`). Nothing in
// these tables can fail but a key the large table already holds, which `OR IGNORE` skips and
// `Level::conflicts` then updates.
const LEVELS: [Level; 2] = [
    // a key is in one level only: a key found in event_dedup is updated there
    Level {
        recent: "event_dedup_pending",
        table: "event_dedup",
        merge: "INSERT OR IGNORE INTO event_dedup (dedup_key, event_id, last_seen) \
                SELECT dedup_key, event_id, last_seen FROM event_dedup_pending ORDER BY dedup_key",
        // the key moves to the pending row's event, as an upsert would have moved it
        conflicts: Conflicts::Plain(
            "UPDATE event_dedup SET event_id = p.event_id, \
             last_seen = max(event_dedup.last_seen, p.last_seen) \
             FROM event_dedup_pending AS p WHERE event_dedup.dedup_key = p.dedup_key \
             AND (event_dedup.event_id <> p.event_id OR event_dedup.last_seen < p.last_seen)",
        ),
        per_event: 1,
        at_most: i64::MAX,
        added: None,
        filtered: true,
    },
    // an id is in one level only: an observable found in `observables` is updated there
    // (migration 0016). Both levels are indexed on the id's first 8 characters (migrations
    // 0019 and 0021), so the merge moves the ids the large table lacks, in id order (each page
    // of its short index written once), and updates the rows of any it holds.
    Level {
        recent: "observable_pending",
        table: "observables",
        merge: "INSERT OR IGNORE INTO observables (id, kind, value, first_seen, last_seen) \
                SELECT id, kind, value, first_seen, last_seen FROM observable_pending p \
                WHERE NOT EXISTS (SELECT 1 FROM observables o \
                    WHERE substr(o.id, 1, 8) = substr(p.id, 1, 8) AND o.id = p.id) \
                ORDER BY id",
        conflicts: Conflicts::UpToRowid(
            "UPDATE observables SET \
             first_seen = min(first_seen, (SELECT p.first_seen FROM observable_pending p \
                 WHERE substr(p.id, 1, 8) = substr(observables.id, 1, 8) AND p.id = observables.id)), \
             last_seen = max(last_seen, (SELECT p.last_seen FROM observable_pending p \
                 WHERE substr(p.id, 1, 8) = substr(observables.id, 1, 8) AND p.id = observables.id)) \
             WHERE rowid IN (SELECT o.rowid FROM observable_pending p CROSS JOIN observables o \
                 WHERE substr(o.id, 1, 8) = substr(p.id, 1, 8) AND o.id = p.id AND o.rowid <= ?1)",
        ),
        per_event: 8,
        at_most: 40_000,
        added: Some(crate::dedup::observables_pending_added),
        filtered: false,
    },
];

/// Merges each second level that holds `at` rows or more. A level is counted only when it may
/// be due: each new row comes with a new event, and an event brings about
/// [`Level::per_event`] rows at most, so after counting `n` rows at event `seq` the level is
/// counted again at event `seq + (at - n) / per_event`, or (a level whose rows this writer
/// counts, [`Level::added`]) once this writer has added `at - n` rows to it.
fn merge_levels_if_due(path: &str, conn: &mut Connection, state: &mut MergeState, at: i64) {
    let seq: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .unwrap_or(0);
    for (i, level) in LEVELS.iter().enumerate() {
        let at = at.min(level.at_most).max(1);
        let added = level.added.map_or(0, |f| f());
        let filled = level
            .added
            .is_some_and(|_| added.saturating_sub(state.added_at_count[i]) >= state.room[i]);
        if !filled && state.next_check[i].is_some_and(|next| seq < next) {
            continue;
        }
        state.added_at_count[i] = added;
        let pending: i64 = conn
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT ?1)",
                    level.recent
                ),
                [at],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if pending < at {
            state.next_check[i] = Some(seq + ((at - pending) / level.per_event).max(1));
            state.room[i] = (at - pending).max(1) as u64;
            continue;
        }
        let started = std::time::Instant::now();
        // The merge sorts the level's rows (300,000 dedup keys) and, should it need one, keeps
        // a statement journal of the large table's pages it touches: in memory that was the
        // table's size at every merge (200 MiB at 3 million keys). In a temporary file it is in
        // the OS's cache, not the process's. (The batches' savepoints keep theirs in memory:
        // small, and on the hot path.)
        let _ = conn.execute_batch("PRAGMA temp_store = FILE;");
        let res = (|| -> StoreResult<usize> {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            // the pending keys as the table holds them (another process may have added some)
            crate::dedup::begin(&tx)?;
            let recent: i64 = tx
                .query_row(&format!("SELECT COUNT(*) FROM {}", level.recent), [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            let last: i64 = match level.conflicts {
                Conflicts::UpToRowid(_) => tx
                    .query_row(
                        &format!("SELECT COALESCE(MAX(rowid), 0) FROM {}", level.table),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?,
                Conflicts::Plain(_) => 0,
            };
            let moved = tx.execute(level.merge, []).map_err(err)?;
            if (moved as i64) < recent {
                match level.conflicts {
                    Conflicts::UpToRowid(sql) => tx.execute(sql, [last]),
                    Conflicts::Plain(sql) => tx.execute(sql, []),
                }
                .map_err(err)?;
            }
            tx.execute(&format!("DELETE FROM {}", level.recent), [])
                .map_err(err)?;
            if level.filtered {
                crate::dedup::merged_filter(&tx)?;
            }
            tx.commit().map_err(err)?;
            crate::dedup::committed();
            Ok(moved)
        })();
        if let Err(e) = conn.execute_batch("PRAGMA temp_store = MEMORY;") {
            tracing::warn!(error = %e, "sqlite temp_store not set back to memory");
        }
        match res {
            Ok(moved) => {
                if level.filtered {
                    crate::dedup::merged();
                }
                state.next_check[i] = Some(seq + (at / level.per_event).max(1));
                state.room[i] = at as u64;
                tracing::debug!(
                    table = level.table,
                    rows = moved,
                    ms = started.elapsed().as_millis() as u64,
                    "sqlite second level merged"
                );
                restart_wal_if_large(path, conn);
            }
            // rolled back: the rows stay where readers find them; retried after a later batch
            Err(e) => {
                crate::dedup::invalidate();
                tracing::warn!(table = level.table, error = %e, "merging a second level failed")
            }
        }
    }
}

/// When each level is next counted (an event `seq`); unknown until the first batch.
#[derive(Default)]
struct MergeState {
    next_check: [Option<i64>; LEVELS.len()],
    /// [`Level::added`] when the level was last counted, and the rows it had room for then
    added_at_count: [u64; LEVELS.len()],
    room: [u64; LEVELS.len()],
}

/// Commits a gathered batch and answers each of its change sets.
fn commit_batch(path: &str, conn: &mut Connection, signer: &AuditSigner, batch: &mut Vec<Job>) {
    let started = std::time::Instant::now();
    let outcome = write_batch(conn, signer, batch);
    tracing::debug!(
        batch = batch.len(),
        duration_us = started.elapsed().as_micros() as u64,
        "sqlite batch committed"
    );
    // the background checkpointer copies pages passively; under a steady stream of
    // batches it never catches up and the WAL would grow without bound, so the writer
    // (which is between transactions here) restarts it once it passes WAL_LIMIT
    if outcome.is_ok() {
        restart_wal_if_large(path, conn);
    }
    let results = match outcome {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(error = %e, "sqlite batch commit failed; its change sets are refused, not retried");
            reopen(path, conn);
            let msg = e.to_string();
            let full = matches!(e, StoreError::Full(_));
            batch
                .iter()
                .map(|_| {
                    Err(if full {
                        StoreError::Full(msg.clone())
                    } else {
                        StoreError::Unavailable(msg.clone())
                    })
                })
                .collect()
        }
    };
    let mut spent = Vec::with_capacity(batch.len());
    for (job, res) in batch.drain(..).zip(results) {
        let _ = job.reply.send(res);
        spent.push(job.changes);
    }
    dispose(spent);
}

/// Frees committed change sets on a thread of their own: an intake change set holds thousands
/// of events, and freeing them took a measurable share of the writer's time (`perf`: glibc's
/// `_int_free`, `malloc_consolidate`), time in which the next batch waited.
fn dispose(spent: Vec<ChangeSet>) {
    use std::sync::{OnceLock, mpsc as std_mpsc};
    static BIN: OnceLock<Option<std_mpsc::SyncSender<Vec<ChangeSet>>>> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        // bounded: should freeing fall behind, the writer frees the next ones itself
        let (tx, rx) = std_mpsc::sync_channel::<Vec<ChangeSet>>(4);
        std::thread::Builder::new()
            .name("sqlite-free".into())
            .spawn(move || {
                for spent in rx {
                    drop(spent);
                }
            })
            .ok()
            .map(|_| tx)
    });
    match bin {
        Some(tx) => {
            if let Err(
                std_mpsc::TrySendError::Full(back) | std_mpsc::TrySendError::Disconnected(back),
            ) = tx.try_send(spent)
            {
                drop(back);
            }
        }
        None => drop(spent),
    }
}

/// Runs a claim in a transaction of its own and answers it.
fn serve_claim(path: &str, conn: &mut Connection, c: Claim) {
    let res = crate::jobs::claim(conn, &c.worker, c.now, c.until, c.limit);
    match &res {
        Ok(_) => restart_wal_if_large(path, conn),
        Err(e) if is_fatal(e) => {
            tracing::error!(error = %e, "sqlite job claim failed");
            reopen(path, conn);
        }
        Err(_) => {}
    }
    let _ = c.reply.send(res);
}

/// After an I/O error the connection's cache may not match the file: the next transaction
/// starts from a fresh connection that re-reads what is on disk.
fn reopen(path: &str, conn: &mut Connection) {
    crate::dedup::invalidate();
    match open(path) {
        Ok(fresh) => {
            limit_wal_file(&fresh);
            *conn = fresh;
        }
        Err(open_err) => {
            tracing::error!(error = %format!("{open_err:#}"), "sqlite writer could not reopen the database")
        }
    }
}

/// WAL size that makes the writer checkpoint it itself and start it over.
pub(crate) const WAL_LIMIT: u64 = 512 * 1024 * 1024;

thread_local! {
    /// This writer's [`WAL_LIMIT`] (`SqliteOptions::wal_limit`).
    static WAL_LIMIT_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(WAL_LIMIT) };
}

/// When the WAL starts over from its first frame, its file is cut back to this writer's limit,
/// not to nothing: the next commits overwrite pages the OS still caches instead of extending
/// the file (new page-cache pages to zero and blocks to allocate for every frame).
fn limit_wal_file(conn: &Connection) {
    let limit = WAL_LIMIT_HERE.get();
    if let Err(e) = conn.execute_batch(&format!("PRAGMA journal_size_limit = {limit};")) {
        tracing::warn!(error = %e, "sqlite journal_size_limit not set");
    }
}

fn restart_wal_if_large(path: &str, conn: &Connection) {
    let wal = format!("{path}-wal");
    let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_LIMIT_HERE.get());
    if !big {
        return;
    }
    let started = std::time::Instant::now();
    // RESTART waits for readers still using the WAL (a long report, an online backup): at
    // most 100 ms here, not the connection's 10 s per batch; it is tried again after the next
    // batch, the WAL growing meanwhile
    let _ = conn.busy_timeout(Duration::from_millis(100));
    let res: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    let _ = conn.busy_timeout(Duration::from_secs(10));
    match res {
        Ok((0, log, done)) => tracing::debug!(
            log,
            done,
            ms = started.elapsed().as_millis() as u64,
            "sqlite WAL checkpointed by the writer; the next commit starts it over"
        ),
        Ok((_, log, done)) => {
            // a reader still uses the WAL: it grows until the reader ends (said once a minute)
            thread_local! {
                static SAID: std::cell::Cell<Option<std::time::Instant>> =
                    const { std::cell::Cell::new(None) };
            }
            if SAID
                .get()
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                SAID.set(Some(std::time::Instant::now()));
                tracing::info!(
                    wal_frames = log,
                    checkpointed = done,
                    "sqlite WAL past its limit is still in use by a reader (a long report or backup?); it grows until that read ends"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "sqlite WAL checkpoint failed; retried after the next batch")
        }
    }
}

struct Head {
    seq: i64,
    hash: String,
    next_number: i64,
}

fn is_fatal(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Full(_))
}

fn write_batch(
    conn: &mut Connection,
    signer: &AuditSigner,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
    // Common case first: every change set applies, so none needs a savepoint of its own (a
    // savepoint makes SQLite copy every page it touches into a sub-journal: costly for big
    // change sets such as intake batches). If one fails, the transaction is rolled back; a
    // lone change set fails with its error, a batch is redone with a savepoint per change set.
    match write_together(conn, signer, batch, false)? {
        Some(results) => Ok(results),
        None if batch.len() == 1 => write_alone(conn, signer, &batch[0]),
        None => write_together(conn, signer, batch, true).map(|r| r.unwrap_or_default()),
    }
}

/// One change set that failed together with nothing else: redone to get its error (the first
/// attempt was rolled back, so this one fails the same way, or succeeds if the cause is gone).
fn write_alone(
    conn: &mut Connection,
    signer: &AuditSigner,
    job: &Job,
) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
    write_together(conn, signer, std::slice::from_ref(job), true).map(|r| r.unwrap_or_default())
}

/// One transaction for the batch. Without `isolate`, the first failing change set aborts the
/// attempt (`None`, rolled back); with it, each change set runs in a savepoint and fails alone.
fn write_together(
    conn: &mut Connection,
    signer: &AuditSigner,
    batch: &[Job],
    isolate: bool,
) -> StoreResult<Option<Vec<StoreResult<CommitOutcome>>>> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    crate::dedup::begin(&tx)?;
    let (seq, hash, max_number): (i64, String, i64) = tx
        .query_row(
            "SELECT seq, hash, (SELECT COALESCE(MAX(number), 0) FROM tickets) FROM audit_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(err)?;
    let start_seq = seq;
    let mut head = Head {
        seq,
        hash,
        next_number: max_number + 1,
    };
    let now = to_millis(OffsetDateTime::now_utc());
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if !isolate {
            match apply(&tx, &job.changes, &mut head, now) {
                Ok(out) => results.push(Ok(out)),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(_) => {
                    // dropping `tx` rolls back: a dictionary it stored is not stored after all
                    crate::pack::forget_stored();
                    return Ok(None);
                }
            }
            continue;
        }
        let saved = (head.seq, head.hash.clone(), head.next_number);
        let dedup_mark = crate::dedup::changes();
        let sp = tx.savepoint().map_err(err)?;
        match apply(&sp, &job.changes, &mut head, now) {
            Ok(out) => {
                sp.commit().map_err(err)?;
                results.push(Ok(out));
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                drop(sp); // rolls the savepoint back
                (head.seq, head.hash, head.next_number) = saved;
                // the pending dedup keys as the rollback left them, for the next change sets
                // (only if this change set added or removed one)
                if crate::dedup::changes() != dedup_mark {
                    crate::dedup::rebuild(&tx)?;
                }
                crate::dedup::rolled_back();
                results.push(Err(e));
            }
        }
    }
    let checkpoint = if head.seq > start_seq {
        let cp = signer.sign(head.seq, &head.hash);
        tx.prepare_cached(
            "INSERT INTO audit_checkpoints (seq, hash, key_id, signature) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![cp.seq, cp.hash, cp.key_id, cp.signature]))
        .map_err(err)?;
        tx.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
            .and_then(|mut s| s.execute(params![head.seq, head.hash]))
            .map_err(err)?;
        Some(cp)
    } else {
        None
    };
    tx.commit().map_err(err)?;
    // the index matches what committed: a change set rolled back in its savepoint had the
    // index rebuilt right after
    crate::dedup::committed();
    if let Some(cp) = checkpoint {
        signer.publish(&cp);
    }
    Ok(Some(results))
}

fn apply(
    conn: &Connection,
    changes: &ChangeSet,
    head: &mut Head,
    now: i64,
) -> StoreResult<CommitOutcome> {
    let mut out = CommitOutcome::default();
    for op in &changes.ops {
        apply_op(conn, op, head, &mut out)?;
    }
    for draft in &changes.audit {
        append_audit(conn, draft, head, now, &mut out)?;
    }
    Ok(out)
}

fn append_audit(
    conn: &Connection,
    draft: &AuditDraft,
    head: &mut Head,
    now: i64,
    out: &mut CommitOutcome,
) -> StoreResult<()> {
    let rec = draft.clone().seal(head.seq + 1, &head.hash, now);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, id, occurred_at, actor, action, object_type, object_id, ticket_id, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            rec.seq,
            rec.id.to_string(),
            rec.occurred_at_ms,
            rec.actor,
            rec.action,
            rec.object_type,
            rec.object_id,
            rec.ticket_id.map(|t| t.to_string()),
            rec.details,
            rec.prev_hash,
            rec.hash,
        ])
    })
    .map_err(err)?;
    head.seq = rec.seq;
    head.hash = rec.hash;
    out.audit_seqs.push(rec.seq);
    Ok(())
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn write_tags(conn: &Connection, id: &str, tags: &[String], replace: bool) -> StoreResult<()> {
    if replace {
        conn.prepare_cached("DELETE FROM ticket_tags WHERE ticket_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err)?;
    }
    let mut stmt = conn
        .prepare_cached("INSERT OR IGNORE INTO ticket_tags (tag, ticket_id) VALUES (?1, ?2)")
        .map_err(err)?;
    for tag in tags {
        stmt.execute(params![tag, id]).map_err(err)?;
    }
    Ok(())
}

fn insert_ticket(conn: &Connection, t: &Ticket, number: i64) -> StoreResult<()> {
    let id = t.id.to_string();
    conn.prepare_cached(
        "INSERT INTO tickets (id, number, title, description, source_kind, source_name, source_contact, severity, \
         priority, criticality, tier, status, owner, assignee, restricted, tags, resolution, problem_category, \
         false_positive, incident, created_by, created_at, updated_at, version, escalation_reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, 1, ?24)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            number,
            t.title,
            t.description,
            t.source.kind.as_str(),
            t.source.name,
            t.source.contact,
            t.severity.as_str(),
            t.priority.as_str(),
            t.criticality.as_str(),
            i64::from(t.tier),
            t.status.as_str(),
            t.owner,
            t.assignee,
            t.restricted,
            tags_json(&t.tags),
            t.resolution,
            t.problem_category,
            t.false_positive,
            t.incident,
            t.created_by,
            to_millis(t.created_at),
            to_millis(t.updated_at),
            t.escalation_reason,
        ])
    })
    .map_err(err)?;
    write_tags(conn, &id, &t.tags, false)
}

fn update_ticket(conn: &Connection, t: &Ticket, expected_version: i64) -> StoreResult<()> {
    let id = t.id.to_string();
    let changed = conn
        .prepare_cached(
            "UPDATE tickets SET title = ?1, description = ?2, source_kind = ?3, source_name = ?4, source_contact = ?5, \
             severity = ?6, priority = ?7, criticality = ?8, tier = ?9, status = ?10, owner = ?11, assignee = ?12, \
             restricted = ?13, tags = ?14, resolution = ?15, problem_category = ?16, false_positive = ?17, incident = ?18, \
             updated_at = ?19, escalation_reason = ?22, version = version + 1 WHERE id = ?20 AND version = ?21",
        )
        .and_then(|mut s| {
            s.execute(params![
                t.title,
                t.description,
                t.source.kind.as_str(),
                t.source.name,
                t.source.contact,
                t.severity.as_str(),
                t.priority.as_str(),
                t.criticality.as_str(),
                i64::from(t.tier),
                t.status.as_str(),
                t.owner,
                t.assignee,
                t.restricted,
                tags_json(&t.tags),
                t.resolution,
                t.problem_category,
                t.false_positive,
                t.incident,
                to_millis(t.updated_at),
                id,
                expected_version,
                t.escalation_reason,
            ])
        })
        .map_err(err)?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM tickets WHERE id = ?1")
            .and_then(|mut s| s.exists([&id]))
            .map_err(err)?;
        return Err(if exists {
            StoreError::Conflict("the ticket was changed concurrently; retry".into())
        } else {
            StoreError::NotFound
        });
    }
    write_tags(conn, &id, &t.tags, true)
}

fn apply_op(
    conn: &Connection,
    op: &Op,
    head: &mut Head,
    out: &mut CommitOutcome,
) -> StoreResult<()> {
    let expect_one = |n: usize| {
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    };
    match op {
        Op::InsertTicket(t) => {
            let number = head.next_number;
            head.next_number += 1;
            insert_ticket(conn, t, number)?;
            out.ticket_numbers.push(number);
        }
        Op::UpdateTicket {
            ticket,
            expected_version,
        } => update_ticket(conn, ticket, *expected_version)?,
        Op::InsertUser(u) => insert_user(conn, u)?,
        Op::InsertFirstUser(u) => {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
                .map_err(err)?;
            if n > 0 {
                return Err(StoreError::Conflict("users already exist".into()));
            }
            insert_user(conn, u)?;
        }
        Op::UpdateUser(u) => {
            let n = conn
                .prepare_cached(
                    "UPDATE users SET roles = ?1, title = ?2, seniority = ?3, on_duty = ?4, email = ?5, disabled = ?6, clearances = ?7 WHERE id = ?8",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        roles_to_text(&u.roles),
                        u.title,
                        i64::from(u.seniority),
                        u.on_duty,
                        u.email,
                        u.disabled,
                        u.clearances.join(","),
                        u.id.to_string(),
                    ])
                })
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::SetPassword {
            user_id,
            password_hash,
        } => {
            let n = conn
                .prepare_cached("UPDATE users SET password_hash = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![password_hash, user_id.to_string()]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::SetUserDisabled { user_id, disabled } => {
            let n = conn
                .prepare_cached("UPDATE users SET disabled = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![disabled, user_id.to_string()]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::SetUserRoles { user_id, roles } => {
            let n = conn
                .prepare_cached("UPDATE users SET roles = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![roles_to_text(roles), user_id.to_string()]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::GrantTicketAccess {
            ticket_id,
            username,
            granted_by,
            at,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO ticket_access (ticket_id, username, granted_by, granted_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![ticket_id.to_string(), username, granted_by, to_millis(*at)]))
            .map_err(err)?;
        }
        Op::RevokeTicketAccess {
            ticket_id,
            username,
        } => {
            let n = conn
                .prepare_cached("DELETE FROM ticket_access WHERE ticket_id = ?1 AND username = ?2")
                .and_then(|mut s| s.execute(params![ticket_id.to_string(), username]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::InsertToken(t) => {
            conn.prepare_cached(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at, expires_at, revoked_at, last_used_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    t.id.to_string(),
                    t.user_id.to_string(),
                    t.name,
                    t.token_hash,
                    scopes_to_text(&t.scopes),
                    to_millis(t.created_at),
                    t.expires_at.map(to_millis),
                    t.revoked_at.map(to_millis),
                    t.last_used_at.map(to_millis),
                ])
            })
            .map_err(err)?;
        }
        Op::RevokeTokens {
            user_id,
            token_id,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL AND (?3 IS NULL OR id = ?3)",
            )
            .and_then(|mut s| s.execute(params![to_millis(*at), user_id.to_string(), token_id.map(|t| t.to_string())]))
            .map_err(err)?;
        }
        Op::TouchToken { token_id, at } => {
            conn.prepare_cached("UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![to_millis(*at), token_id.to_string()]))
                .map_err(err)?;
        }
        Op::InsertSession(s) => {
            conn.prepare_cached(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, mfa_pending, client_addr, user_agent, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    s.id_hash,
                    s.user_id.to_string(),
                    s.csrf_token,
                    to_millis(s.created_at),
                    to_millis(s.last_seen_at),
                    to_millis(s.expires_at),
                    s.mfa_pending,
                    s.client_addr,
                    s.user_agent,
                    s.revoked_at.map(to_millis),
                ])
            })
            .map_err(err)?;
        }
        Op::TouchSession { id_hash, at } => {
            conn.prepare_cached("UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2")
                .and_then(|mut s| s.execute(params![to_millis(*at), id_hash]))
                .map_err(err)?;
        }
        Op::RevokeSessions {
            user_id,
            only,
            except,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL \
                 AND (?3 IS NULL OR id_hash = ?3) AND (?4 IS NULL OR id_hash <> ?4)",
            )
            .and_then(|mut s| s.execute(params![to_millis(*at), user_id.to_string(), only, except]))
            .map_err(err)?;
        }
        Op::LoginFailure {
            key,
            at,
            window,
            limit,
            lock,
        } => {
            // ?2 = at, ?3 = start of the current window (a row whose window began at or before it
            // starts over), ?4 = limit, ?5 = lock end. SET expressions see the old row.
            conn.prepare_cached(
                "INSERT INTO login_throttle (key, failures, window_start, locked_until) \
                 VALUES (?1, 1, ?2, CASE WHEN 1 >= ?4 THEN ?5 END) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN window_start <= ?3 THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start <= ?3 THEN ?2 ELSE window_start END, \
                 locked_until = CASE \
                   WHEN (CASE WHEN window_start <= ?3 THEN 1 ELSE failures + 1 END) >= ?4 THEN ?5 \
                   WHEN window_start <= ?3 THEN NULL \
                   ELSE locked_until END",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key,
                    to_millis(*at),
                    to_millis(*at - *window),
                    limit,
                    to_millis(*at + *lock),
                ])
            })
            .map_err(err)?;
        }
        Op::ClearLoginFailures { keys } => {
            let mut stmt = conn
                .prepare_cached("DELETE FROM login_throttle WHERE key = ?1")
                .map_err(err)?;
            for key in keys {
                stmt.execute([key]).map_err(err)?;
            }
        }
        Op::SetTotp {
            user_id,
            secret: Some(secret),
        } => {
            conn.prepare_cached(
                "INSERT INTO user_totp (user_id, secret, enabled, last_step) VALUES (?1, ?2, 0, 0) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, enabled = 0, last_step = 0",
            )
            .and_then(|mut s| s.execute(params![user_id.to_string(), secret]))
            .map_err(err)?;
        }
        Op::SetTotp {
            user_id,
            secret: None,
        } => {
            conn.prepare_cached("DELETE FROM user_totp WHERE user_id = ?1")
                .and_then(|mut s| s.execute([user_id.to_string()]))
                .map_err(err)?;
        }
        Op::EnableTotp { user_id } => {
            let n = conn
                .prepare_cached("UPDATE user_totp SET enabled = 1 WHERE user_id = ?1")
                .and_then(|mut s| s.execute([user_id.to_string()]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::UseTotpStep { user_id, step } => {
            let user_id = user_id.to_string();
            let n = conn
                .prepare_cached(
                    "UPDATE user_totp SET last_step = ?1 WHERE user_id = ?2 AND last_step < ?1",
                )
                .and_then(|mut s| s.execute(params![step, user_id]))
                .map_err(err)?;
            if n == 0 {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM user_totp WHERE user_id = ?1")
                    .and_then(|mut s| s.exists([&user_id]))
                    .map_err(err)?;
                return Err(if exists {
                    StoreError::Conflict("code already used".into())
                } else {
                    StoreError::NotFound
                });
            }
        }
        Op::SetRecoveryCodes {
            user_id,
            code_hashes,
        } => {
            let user_id = user_id.to_string();
            conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")
                .and_then(|mut s| s.execute([&user_id]))
                .map_err(err)?;
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES (?1, ?2, NULL)",
                )
                .map_err(err)?;
            for hash in code_hashes {
                stmt.execute(params![user_id, hash]).map_err(err)?;
            }
        }
        Op::UseRecoveryCode {
            user_id,
            code_hash,
            at,
        } => {
            let n = conn
                .prepare_cached(
                    "UPDATE recovery_codes SET used_at = ?1 WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
                )
                .and_then(|mut s| s.execute(params![to_millis(*at), user_id.to_string(), code_hash]))
                .map_err(err)?;
            expect_one(n)?;
        }
        Op::InsertDocument(d) => {
            conn.prepare_cached(
                "INSERT INTO documents (id, ticket_id, sha256, size, filename, content_type, description, source, \
                 collection_notes, added_by, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.id.to_string(),
                    d.ticket_id.to_string(),
                    d.sha256,
                    d.size,
                    d.filename,
                    d.content_type,
                    d.description,
                    d.source,
                    d.collection_notes,
                    d.added_by,
                    to_millis(d.added_at),
                ])
            })
            .map_err(err)?;
        }
        Op::PutBlob { sha256, data } => {
            conn.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![sha256, data]))
                .map_err(err)?;
        }
        Op::InsertRecord(r) => {
            conn.prepare_cached(
                "INSERT INTO workflow_records (id, kind, ticket_id, parent_id, status, principal, data, version, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.id.to_string(),
                    r.kind,
                    r.ticket_id.map(|t| t.to_string()),
                    r.parent_id.map(|p| p.to_string()),
                    r.status,
                    r.principal,
                    r.data,
                    to_millis(r.created_at),
                    to_millis(r.updated_at),
                ])
            })
            .map_err(err)?;
        }
        Op::UpdateRecord {
            record,
            expected_version,
        } => update_record(conn, record, *expected_version)?,
        Op::EnqueueJob(j) => crate::jobs::enqueue(conn, j)?,
        Op::UpdateJob {
            job,
            expected_version,
        } => crate::jobs::update(conn, job, *expected_version)?,
        Op::UpsertIndicators(items) => crate::jobs::upsert_indicators(conn, items)?,
        Op::DeleteIndicators { source } => crate::jobs::delete_indicators(conn, source)?,
        Op::IngestEvents(items) => {
            // each observable is written once per op, however many events mention it, and
            // the observables and links go in sorted by key after the events (each index
            // page is visited once, in order)
            let mut pending = PendingIngest::default();
            let mut hot = Hot::new(conn);
            for item in items {
                let r = ingest_event(&mut hot, item, &mut pending)?;
                out.ingested.push(r);
            }
            pending.write(&mut hot)?;
        }
        Op::UpdateEvent {
            event,
            expected_version,
        } => update_event(conn, event, *expected_version)?,
        Op::LinkTicketObservables {
            ticket_id,
            observables,
            at,
        } => {
            let at = to_millis(*at);
            let tid = ticket_id.to_string();
            let mut hot = Hot::new(conn);
            for o in observables {
                let oid = upsert_observable(&mut hot, o.id(), o, at)?;
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO ticket_observables (ticket_id, observable_id, added_at) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![tid, oid, at]))
                .map_err(err)?;
            }
        }
        Op::LinkEventObservables {
            event_id,
            observables,
            at,
        } => link_event(conn, *event_id, observables, to_millis(*at))?,
    }
    Ok(())
}

/// Links observables to a stored event (`Op::LinkEventObservables`). The links go into
/// `event_observables`, which readers read beside the inverted index: the index is written
/// only by intake (one row per event, at its insert). A link the index already holds is not
/// written again (counts read both).
fn link_event(
    conn: &Connection,
    event_id: uuid::Uuid,
    observables: &[ObservableRef],
    at: i64,
) -> StoreResult<()> {
    let eid = event_id.to_string();
    let seq: i64 = conn
        .prepare_cached("SELECT seq FROM events WHERE id = ?1")
        .and_then(|mut s| s.query_row([&eid], |r| r.get(0)).optional())
        .map_err(err)?
        .ok_or(StoreError::NotFound)?;
    let mut hot = Hot::new(conn);
    for o in observables {
        let oid = o.id();
        let id = upsert_observable(&mut hot, oid, o, at)?;
        let indexed = conn
            .prepare_cached(
                "SELECT 1 FROM event_observable_index WHERE event_observable_index MATCH ?1 AND rowid = ?2",
            )
            .and_then(|mut s| s.exists(params![format!("\"{}\"", oid.simple()), seq]))
            .map_err(err)?;
        if !indexed {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO event_observables (observable_id, event_id) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![id, eid]))
            .map_err(err)?;
        }
    }
    Ok(())
}

/// Records an observable (its `last_seen` moves at most once a minute: the index on it is not
/// rewritten for every mention).
/// The writer remembers what it recorded lately (dedup.rs): an observable mentioned again
/// within the minute costs no statement.
fn upsert_observable(
    hot: &mut Hot<'_>,
    oid: uuid::Uuid,
    o: &ObservableRef,
    at: i64,
) -> StoreResult<String> {
    let id = oid.to_string();
    if crate::dedup::observable_fresh(oid.as_u128(), at) {
        return Ok(id);
    }
    // an id is in one level only (migration 0016): the merged table first, then the pending
    // level, which the writer alone writes and looks in before it inserts, so an id is in it
    // once (its index is on a prefix, migration 0019)
    let row = |hot: &mut Hot<'_>, q: Q| -> StoreResult<Option<(i64, i64)>> {
        hot.get(q)?
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)
    };
    let found = match row(hot, Q::ObservableMerged)? {
        Some((rowid, seen)) => Some((Q::ObservableTouch, rowid, seen)),
        None => row(hot, Q::ObservablePendingGet)?
            .map(|(rowid, seen)| (Q::ObservablePendingTouch, rowid, seen)),
    };
    let pending = !matches!(found, Some((Q::ObservableTouch, ..)));
    let changed = match found {
        Some((_, _, seen)) if at <= seen + crate::dedup::OBSERVABLE_TOUCH_MS => false,
        Some((touch, rowid, _)) => {
            hot.get(touch)?.execute(params![rowid, at]).map_err(err)?;
            true
        }
        None => {
            hot.get(Q::ObservablePendingInsert)?
                .execute(params![id, o.kind, o.value, at])
                .map_err(err)?;
            true
        }
    };
    if changed && pending {
        crate::dedup::observable_pending_added();
    }
    crate::dedup::observable_written(oid.as_u128(), at, changed);
    Ok(id)
}

/// What an op's new events add besides their rows, written after all of them: their
/// observables, their rows of the inverted index, and the queue's counters.
///
/// The index rows go last on purpose. FTS5 flushes its in-memory terms to a new segment of
/// its B-tree whenever a statement of the transaction opens a statement journal (an insert
/// with a trigger, an update with `RETURNING`...): index rows interleaved with such
/// statements made one tiny segment per event, and merging them took a fifth of the writer.
/// The counters are kept here and not by an insert trigger for the same reason, and because
/// a trigger makes every events insert open a statement journal of its own (migration 0015).
/// The events' update triggers still adjust the counters; an op never updates an event it
/// inserted itself (its dedup keys are distinct), so those find them counted.
#[derive(Default)]
struct PendingIngest<'a> {
    /// observable id -> (observable, latest receipt)
    observables: std::collections::BTreeMap<uuid::Uuid, (&'a ObservableRef, i64)>,
    /// (events.seq, the event's observable ids in 32 hex digits, space-separated)
    index_rows: Vec<(i64, String)>,
    /// status -> new events with it
    statuses: std::collections::BTreeMap<&'static str, i64>,
    /// suppression rule -> (new events, their occurrences, latest last_seen)
    suppressed: std::collections::BTreeMap<String, (i64, i64, i64)>,
}

impl PendingIngest<'_> {
    fn write(mut self, hot: &mut Hot<'_>) -> StoreResult<()> {
        for (oid, (o, at)) in &self.observables {
            upsert_observable(hot, *oid, o, *at)?;
        }
        self.write_counters(hot.conn)?;
        // last in the op: a statement of this op after them would flush them to a segment of
        // their own (later ops, change sets and the audit row flush at most once each)
        for (seq, terms) in &self.index_rows {
            hot.get(Q::IndexRow)?
                .execute(params![seq, terms])
                .map_err(err)?;
        }
        Ok(())
    }

    fn write_counters(&mut self, conn: &Connection) -> StoreResult<()> {
        for (status, n) in std::mem::take(&mut self.statuses) {
            conn.prepare_cached(
                "INSERT INTO event_status_counts (status, n) VALUES (?1, ?2) \
                 ON CONFLICT (status) DO UPDATE SET n = n + excluded.n",
            )
            .and_then(|mut s| s.execute(params![status, n]))
            .map_err(err)?;
        }
        for (rule, (events, occurrences, last_hit)) in std::mem::take(&mut self.suppressed) {
            conn.prepare_cached(
                "INSERT INTO suppression_stats (rule_id, events, occurrences, last_hit) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (rule_id) DO UPDATE SET events = events + excluded.events, \
                 occurrences = occurrences + excluded.occurrences, last_hit = max(last_hit, excluded.last_hit)",
            )
            .and_then(|mut s| s.execute(params![rule, events, occurrences, last_hit]))
            .map_err(err)?;
        }
        Ok(())
    }
}

fn insert_event<'a>(
    hot: &mut Hot<'_>,
    item: &'a NewEvent,
    pending: &mut PendingIngest<'a>,
) -> StoreResult<()> {
    let e = &item.event;
    let id = e.id.to_string();
    let data = item.details()?;
    use rusqlite::types::{ToSqlOutput, ValueRef};
    // packed on the intake's thread (`pack.rs`), or text
    let (raw, data) = match crate::pack::stored_form(hot.conn, item, to_millis(e.received_at))? {
        Some(packed) => (ValueRef::Blob(packed), ValueRef::Blob(&[])),
        None => (
            ValueRef::Text(e.raw.as_bytes()),
            ValueRef::Text(data.as_bytes()),
        ),
    };
    let (raw, data) = (ToSqlOutput::Borrowed(raw), ToSqlOutput::Borrowed(data));
    hot.get(Q::InsertEvent)?
        .execute(params![
            id,
            e.status.as_str(),
            e.source,
            e.source_kind.as_str(),
            e.source_ref,
            e.rule_id,
            e.fingerprint,
            e.title,
            e.severity.as_str(),
            e.host,
            to_millis(e.occurred_at),
            to_millis(e.received_at),
            to_millis(e.last_seen),
            e.occurrences,
            e.reported_by,
            e.ticket_id.map(|t| t.to_string()),
            e.suppressed_by.map(|r| r.to_string()),
            e.resolved_at.map(to_millis),
            data,
            raw,
        ])
        .map_err(err)?;
    // the events row's rowid (its `seq`), whatever the insert triggers inserted
    let seq = hot.conn.last_insert_rowid();
    // its links: one row of the inverted index (migration 0013), rowid = seq, one token per
    // observable id in 32 hex digits
    let at = to_millis(e.received_at);
    let mut terms = String::with_capacity(33 * e.observables.len());
    let mut buf = uuid::Uuid::encode_buffer();
    for o in &e.observables {
        let oid = o.id();
        if !terms.is_empty() {
            terms.push(' ');
        }
        terms.push_str(oid.simple().encode_lower(&mut buf));
        pending
            .observables
            .entry(oid)
            .and_modify(|v| v.1 = v.1.max(at))
            .or_insert((o, at));
    }
    if !terms.is_empty() {
        pending.index_rows.push((seq, terms));
    }
    *pending.statuses.entry(e.status.as_str()).or_default() += 1;
    if let Some(rule) = e.suppressed_by {
        let s = pending.suppressed.entry(rule.to_string()).or_default();
        s.0 += 1;
        s.1 += e.occurrences;
        s.2 = s.2.max(to_millis(e.last_seen));
    }
    Ok(())
}

fn ingest_event<'a>(
    hot: &mut Hot<'_>,
    item: &'a NewEvent,
    pending: &mut PendingIngest<'a>,
) -> StoreResult<Ingested> {
    let conn = hot.conn;
    let e = &item.event;
    let now = to_millis(e.last_seen);
    if item.resolve {
        // the key is in one level at most: the pending one first
        let found: Option<String> = match crate::dedup::take(conn, &item.dedup_key)? {
            Some(id) => Some(id),
            None if crate::dedup::may_be_merged(&item.dedup_key) => conn
                .prepare_cached("DELETE FROM event_dedup WHERE dedup_key = ?1 RETURNING event_id")
                .and_then(|mut s| s.query_row([&item.dedup_key], |r| r.get(0)).optional())
                .map_err(err)?,
            None => None,
        };
        if let Some(id) = found {
            let ended = e.resolved_at.map_or(now, to_millis);
            let changed = conn
                .prepare_cached(
                    "UPDATE events SET resolved_at = ?3, last_seen = max(last_seen, ?1), \
                     status = CASE WHEN status = 'new' THEN 'resolved' ELSE status END, version = version + 1 WHERE id = ?2",
                )
                .and_then(|mut s| s.execute(params![now, id, ended]))
                .map_err(err)?;
            if changed == 1 {
                return Ok(Ingested {
                    event_id: parse_uuid(&id)?,
                    created: false,
                    resolved: true,
                });
            }
        }
        insert_event(hot, item, pending)?;
        return Ok(Ingested {
            event_id: e.id,
            created: true,
            resolved: false,
        });
    }
    let candidate = e.id.to_string();
    let window_start = to_millis(item.window_start);
    // A key first seen since the last merge is in event_dedup_pending, found through the
    // writer's index of it (dedup.rs); one seen before is in event_dedup; a new key is
    // appended to event_dedup_pending, which the writer merges into event_dedup in key order
    // (migration 0014): a new key dirties no random page of a B-tree.
    //
    // A repeat writes its event's row and nothing else: the window is judged on the event's
    // own `last_seen` (which every repeat moves, as it moved the key's), so the key's row is
    // only read. It is written when the key moves to a new event (the old one's window has
    // passed, or the event is gone). Writing both rows dirtied two random pages per repeat.
    // So a key's `last_seen` is when it moved to its event, or later: the snapshot export
    // gives it as the event's (`snapshot.rs`).
    let holder = match crate::dedup::find(hot, &item.dedup_key)? {
        Some(found) => Some(found),
        None if crate::dedup::may_be_merged(&item.dedup_key) => hot
            .get(Q::DedupMergedGet)?
            .query_row([&item.dedup_key], |r| r.get::<_, String>(0))
            .optional()
            .map_err(err)?
            .map(|id| (id, None)),
        None => None,
    };
    match holder {
        None => crate::dedup::insert(hot, &item.dedup_key, &candidate, now)?,
        Some((holder, pending_row)) => {
            let counted = hot
                .get(Q::EventRepeat)?
                .execute(params![e.occurrences, now, holder, window_start])
                .map_err(err)?;
            if counted == 1 {
                return Ok(Ingested {
                    event_id: parse_uuid(&holder)?,
                    created: false,
                    resolved: false,
                });
            }
            // the holder's window has passed (or it is gone): the key moves to this new event
            match pending_row {
                Some(rowid) => hot.get(Q::DedupPendingMove)?.execute(params![
                    item.dedup_key,
                    candidate,
                    now,
                    rowid
                ]),
                None => {
                    hot.get(Q::DedupMergedMove)?
                        .execute(params![item.dedup_key, candidate, now])
                }
            }
            .map_err(err)?;
        }
    }
    insert_event(hot, item, pending)?;
    Ok(Ingested {
        event_id: e.id,
        created: true,
        resolved: false,
    })
}

/// The statements of the intake's hot path, prepared once per op and held for its events
/// (rusqlite's cache hashes the SQL at every `prepare_cached` and moves the statement out of
/// its LRU and back).
pub(crate) struct Hot<'c> {
    pub(crate) conn: &'c Connection,
    stmts: [Option<rusqlite::CachedStatement<'c>>; Q::COUNT],
}

/// A statement of [`Hot`].
#[derive(Clone, Copy)]
pub(crate) enum Q {
    InsertEvent,
    EventRepeat,
    DedupMergedGet,
    DedupMergedMove,
    DedupPendingGet,
    DedupPendingMove,
    DedupPendingInsert,
    ObservableMerged,
    ObservableTouch,
    ObservablePendingGet,
    ObservablePendingTouch,
    ObservablePendingInsert,
    IndexRow,
}

impl Q {
    /// How many there are (`IndexRow` is the last).
    const COUNT: usize = Q::IndexRow as usize + 1;

    fn sql(self) -> &'static str {
        match self {
            Q::InsertEvent => {
                "INSERT INTO events (id, status, source, source_kind, source_ref, rule_id, fingerprint, title, severity, host, \
                 occurred_at, received_at, last_seen, occurrences, reported_by, ticket_id, suppressed_by, resolved_at, data, raw, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, 1)"
            }
            Q::EventRepeat => {
                "UPDATE events SET occurrences = occurrences + ?1, last_seen = max(last_seen, ?2) \
                 WHERE id = ?3 AND last_seen >= ?4"
            }
            Q::DedupMergedGet => "SELECT event_id FROM event_dedup WHERE dedup_key = ?1",
            Q::DedupMergedMove => {
                "UPDATE event_dedup SET event_id = ?2, last_seen = max(last_seen, ?3) WHERE dedup_key = ?1"
            }
            Q::DedupPendingGet => {
                "SELECT event_id FROM event_dedup_pending WHERE rowid = ?2 AND dedup_key = ?1"
            }
            Q::DedupPendingMove => {
                "UPDATE event_dedup_pending SET event_id = ?2, last_seen = max(last_seen, ?3) \
                 WHERE rowid = ?4 AND dedup_key = ?1"
            }
            Q::DedupPendingInsert => {
                "INSERT INTO event_dedup_pending (dedup_key, event_id, last_seen) VALUES (?1, ?2, ?3)"
            }
            // by the id's first 8 characters, then the id (migration 0021)
            Q::ObservableMerged => {
                "SELECT rowid, last_seen FROM observables \
                 WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1"
            }
            Q::ObservableTouch => "UPDATE observables SET last_seen = ?2 WHERE rowid = ?1",
            // by the id's first 8 characters, then the id (migration 0019)
            Q::ObservablePendingGet => {
                "SELECT rowid, last_seen FROM observable_pending \
                 WHERE substr(id, 1, 8) = substr(?1, 1, 8) AND id = ?1"
            }
            Q::ObservablePendingTouch => {
                "UPDATE observable_pending SET last_seen = ?2 WHERE rowid = ?1"
            }
            Q::ObservablePendingInsert => {
                "INSERT INTO observable_pending (id, kind, value, first_seen, last_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?4)"
            }
            Q::IndexRow => {
                "INSERT INTO event_observable_index (rowid, observables) VALUES (?1, ?2)"
            }
        }
    }
}

impl<'c> Hot<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            stmts: Default::default(),
        }
    }

    /// The statement, prepared at its first use in this op.
    pub(crate) fn get(&mut self, q: Q) -> StoreResult<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.stmts[q as usize];
        if slot.is_none() {
            *slot = Some(self.conn.prepare_cached(q.sql()).map_err(err)?);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("statement not prepared")))
    }
}

fn parse_uuid(s: &str) -> StoreResult<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| StoreError::Other(anyhow::anyhow!("stored id {s:?}: {e}")))
}

fn update_event(conn: &Connection, e: &Event, expected_version: i64) -> StoreResult<()> {
    let id = e.id.to_string();
    let data = e.details_json().map_err(|x| StoreError::Other(x.into()))?;
    let changed = conn
        .prepare_cached(
            "UPDATE events SET status = ?1, ticket_id = ?2, suppressed_by = ?3, resolved_at = ?4, data = ?5, \
             severity = ?6, title = ?7, version = version + 1 WHERE id = ?8 AND version = ?9",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.status.as_str(),
                e.ticket_id.map(|t| t.to_string()),
                e.suppressed_by.map(|r| r.to_string()),
                e.resolved_at.map(to_millis),
                data,
                e.severity.as_str(),
                e.title,
                id,
                expected_version,
            ])
        })
        .map_err(err)?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
            .and_then(|mut s| s.exists([&id]))
            .map_err(err)?;
        return Err(if exists {
            StoreError::Conflict("the event was changed concurrently; retry".into())
        } else {
            StoreError::NotFound
        });
    }
    Ok(())
}

fn update_record(conn: &Connection, r: &WorkflowRecord, expected_version: i64) -> StoreResult<()> {
    let id = r.id.to_string();
    let changed = conn
        .prepare_cached(
            "UPDATE workflow_records SET status = ?1, principal = ?2, data = ?3, updated_at = ?4, \
             version = version + 1 WHERE id = ?5 AND version = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.status,
                r.principal,
                r.data,
                to_millis(r.updated_at),
                id,
                expected_version,
            ])
        })
        .map_err(err)?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM workflow_records WHERE id = ?1")
            .and_then(|mut s| s.exists([&id]))
            .map_err(err)?;
        return Err(if exists {
            StoreError::Conflict("the record was changed concurrently; retry".into())
        } else {
            StoreError::NotFound
        });
    }
    Ok(())
}

fn insert_user(conn: &Connection, u: &UserRecord) -> StoreResult<()> {
    let user = &u.user;
    conn.prepare_cached(
        "INSERT INTO users (id, username, roles, title, seniority, on_duty, email, disabled, clearances, password_hash, created_at, external_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user.id.to_string(),
            user.username,
            roles_to_text(&user.roles),
            user.title,
            i64::from(user.seniority),
            user.on_duty,
            user.email,
            user.disabled,
            user.clearances.join(","),
            u.password_hash,
            to_millis(user.created_at),
            u.external_id,
        ])
    })
    .map_err(|e| match err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a user named {} already exists", user.username)),
        other => other,
    })?;
    Ok(())
}

/// Copies committed WAL pages into the database file in the background (PASSIVE: never blocks
/// the writer or readers), so that commits only append to the WAL. Stops when `stop` is set.
pub fn checkpoint_loop(path: &str, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sqlite checkpointer cannot open the database");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let _ = conn.execute_batch("PRAGMA synchronous = FULL;");
    let checkpoint = || {
        let res: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        if let Err(e) = res {
            tracing::warn!(error = %e, "sqlite checkpoint failed");
        }
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(250));
        checkpoint();
    }
    checkpoint();
}
