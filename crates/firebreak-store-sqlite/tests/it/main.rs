//! The store conformance suite on SQLite, plus SQLite-specific durability checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

use firebreak_store::conformance::TestStore;
use firebreak_store::{AuditSigner, DynStore};
use firebreak_store_sqlite::SqliteStore;
use std::sync::Arc;

async fn sqlite() -> TestStore {
    sqlite_with(firebreak_store_sqlite::SqliteOptions::default()).await
}

/// A store on a new file, tuned.
async fn sqlite_with(options: firebreak_store_sqlite::SqliteOptions) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let signer = Arc::new(AuditSigner::ephemeral());
    let store: DynStore = Arc::new(
        SqliteStore::open_with(&url, signer.clone(), options)
            .await
            .unwrap(),
    );
    TestStore {
        store,
        signer,
        guard: Box::new(dir),
    }
}

firebreak_store::store_conformance_suite!(sqlite);

/// A store with a writer of its own on the file at `url`, tuned.
async fn open_tuned(url: &str, options: firebreak_store_sqlite::SqliteOptions) -> SqliteStore {
    SqliteStore::open_with(url, Arc::new(AuditSigner::ephemeral()), options)
        .await
        .unwrap()
}

/// The whole conformance suite again, on stores opened with `options`.
macro_rules! suite_with {
    ($(#[$doc:meta])* $name:ident, $options:expr) => {
        $(#[$doc])*
        mod $name {
            use super::*;

            async fn store() -> TestStore {
                sqlite_with($options).await
            }

            firebreak_store::store_conformance_suite!(store);
        }
    };
}

suite_with!(
    /// The whole suite again with the dedup keys pending a merge merged into event_dedup after
    /// every commit (by default every 300,000 keys): every behaviour then finds keys in both
    /// levels, and snapshots carry both.
    levels_merged_at_once,
    firebreak_store_sqlite::SqliteOptions {
        merge_at: 1,
        ..Default::default()
    }
);

suite_with!(
    /// The whole suite again with events packed (`pack.rs`) from the third one on: a dictionary
    /// made from the first two, so every behaviour meets packed rows, text rows and updated ones.
    events_packed,
    firebreak_store_sqlite::SqliteOptions {
        dict_samples: 2,
        ..Default::default()
    }
);

/// Packed events are read by every store on the file: one opened before the dictionary existed
/// loads it from `event_dicts` when it meets a row packed with it, one opened after packs with
/// it too; a snapshot carries every event as text.
#[tokio::test]
async fn packed_events_are_read_by_every_store_on_the_file() {
    use firebreak_store::{ChangeSet, EventFilter, EventStore, NewEvent, Op, Store};
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let url = format!("sqlite://{}", path.display());
    let tuned = |dict_samples: usize| SqliteOptions {
        dict_samples,
        ..SqliteOptions::default()
    };
    let t0 = time::OffsetDateTime::now_utc();
    let batch = |store: &SqliteStore, from: usize| {
        let items: Vec<NewEvent> = (from..from + 5)
            .map(|i| {
                let mut event = firebreak_store::conformance::sample_event(&format!("e{i}"), t0);
                event.raw = format!("{{\"line\":{i},\"text\":\"a Suricata alert, more or less\"}}");
                let mut item = firebreak_store::conformance::new_event(event, &format!("p{i}"), t0);
                store.prepare_event(&mut item).unwrap();
                item
            })
            .collect();
        ChangeSet::new().op(Op::IngestEvents(items))
    };
    let blobs = || -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM events WHERE typeof(raw) = 'blob' AND typeof(data) = 'blob'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let reader = open_tuned(&url, tuned(1_000_000)).await;
    let writer = open_tuned(&url, tuned(2)).await;
    writer.commit(batch(&writer, 0)).await.unwrap();
    assert_eq!(blobs(), 3, "the first two made the dictionary");
    let check = |events: Vec<(i64, firebreak_domain::event::Event)>| {
        assert_eq!(events.len(), 10);
        for (_, e) in events {
            let i: usize = e.title[1..].parse().unwrap();
            assert_eq!(
                e.raw,
                format!("{{\"line\":{i},\"text\":\"a Suricata alert, more or less\"}}")
            );
            assert_eq!(e.observables.len(), 2, "details of {}", e.title);
        }
    };
    drop(writer);
    let later = open_tuned(&url, tuned(1_000_000)).await;
    later.commit(batch(&later, 5)).await.unwrap();
    assert_eq!(
        blobs(),
        8,
        "a store opened later packs with the newest dictionary"
    );
    let all = EventFilter {
        limit: 100,
        ..EventFilter::default()
    };
    check(reader.list_events(&all).await.unwrap());
    check(later.list_events(&all).await.unwrap());
    let mut snap: Vec<firebreak_store::snapshot::SnapshotItem> = Vec::new();
    reader.export_snapshot(&mut snap).await.unwrap();
    let mut in_events = false;
    let mut rows = 0;
    for item in &snap {
        use firebreak_store::snapshot::{SnapshotItem, SqlValue};
        match item {
            SnapshotItem::Table { name, .. } => in_events = name == "events",
            SnapshotItem::Row(values) if in_events => {
                rows += 1;
                assert!(
                    !values.iter().any(|v| matches!(v, SqlValue::Blob(_))),
                    "an events row went out packed"
                );
            }
            _ => {}
        }
    }
    assert_eq!(rows, 10);
    // a snapshot with a packed event (a backup an older binary took of this database) is
    // refused: it could never be read after the restore
    use firebreak_store::snapshot::{SnapshotItem, SqlValue, VecSource};
    let mut raw_col = None;
    let mut forged = false;
    for item in snap.iter_mut() {
        match item {
            SnapshotItem::Table { name, columns } => {
                raw_col = (name == "events").then(|| columns.iter().position(|c| c == "raw"));
            }
            SnapshotItem::Row(values) if !forged => {
                if let Some(Some(i)) = raw_col {
                    values[i] = SqlValue::Blob(vec![0xFB; 40]);
                    forged = true;
                }
            }
            _ => {}
        }
    }
    assert!(forged);
    let fresh = sqlite().await;
    let refused = fresh
        .store
        .import_snapshot(Box::new(VecSource(snap.into())))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("a compressed event"),
        "{refused}"
    );
}

/// Two stores with a writer each on one new file (a server and the CLI beside it).
async fn two_stores_on_one_file() -> (tempfile::TempDir, String, SqliteStore, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let a = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    let b = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    (dir, url, a, b)
}

/// A new event with this title and dedup key, seen at `at`, in a one-hour window.
fn new_event(title: &str, key: &str, at: time::OffsetDateTime) -> firebreak_store::NewEvent {
    firebreak_store::NewEvent {
        event: firebreak_store::conformance::sample_event(title, at),
        dedup_key: key.into(),
        window_start: at - time::Duration::hours(1),
        resolve: false,
        details: None,
        packed: None,
    }
}

/// Commits the events in one op and answers what became of each.
async fn ingest(
    s: &SqliteStore,
    items: Vec<firebreak_store::NewEvent>,
) -> Vec<firebreak_store::Ingested> {
    use firebreak_store::{ChangeSet, Op, Store};
    let cs = ChangeSet::new().op(Op::IngestEvents(items));
    s.commit(cs).await.unwrap().ingested
}

/// Two writers on one file, both merging their pending dedup keys into event_dedup after every
/// commit: a key the other writer merged is found although this writer's filter of
/// event_dedup's keys was built before (the filter is dropped when another connection has
/// committed), and a writer started on a file with merged keys finds them (the filter is built
/// from the table).
#[tokio::test]
async fn merged_dedup_keys_are_found_by_every_writer() {
    use firebreak_store::{EventStore, Store};
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let open = || async {
        let options = SqliteOptions {
            merge_at: 1,
            ..SqliteOptions::default()
        };
        open_tuned(&url, options).await
    };
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let item = |title: &str, key: &str, minutes: i64| {
        new_event(title, key, t0 + time::Duration::minutes(minutes))
    };
    let a = open().await;
    let b = open().await;
    // both writers have begun (and filtered the empty table) before either merges
    assert!(ingest(&a, vec![item("a0", "m-a0", 0)]).await[0].created);
    assert!(ingest(&b, vec![item("b0", "m-b0", 0)]).await[0].created);
    // b's keys, merged by b after its commits
    let mut firsts = Vec::new();
    for i in 0..5 {
        let r = ingest(&b, vec![item("b", &format!("m-b{}", i + 1), 0)]).await;
        assert!(r[0].created);
        firsts.push(r[0].event_id);
    }
    let r = ingest(&b, vec![item("b", "m-b6", 0)]).await;
    assert!(r[0].created);
    for (i, first) in firsts.iter().enumerate() {
        let r = ingest(&a, vec![item("again", &format!("m-b{}", i + 1), 1)]).await;
        assert!(!r[0].created, "a finds the key b merged");
        assert_eq!(r[0].event_id, *first);
    }
    a.close().await;
    b.close().await;
    // a writer started on the file finds every merged key
    let c = open().await;
    let r = ingest(&c, vec![item("again", "m-a0", 2), item("again", "m-b1", 2)]).await;
    assert!(!r[0].created && !r[1].created);
    assert_eq!(r[1].event_id, firsts[0]);
    assert_eq!(c.get_event(firsts[0]).await.unwrap().occurrences, 3);
    c.close().await;
}

/// A dedup key in both levels (which the writer never makes; an older process beside a newer
/// one could) is folded by the next merge as an upsert would: the key moves to the pending
/// row's event, keeping the later `last_seen`, and is left in one level.
#[tokio::test]
async fn a_merge_folds_a_key_held_in_both_levels() {
    use firebreak_store::Store;
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let url = format!("sqlite://{}", path.display());
    let options = || SqliteOptions {
        merge_at: 1,
        ..SqliteOptions::default()
    };
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let item = |key: &str| new_event(key, key, t0);
    let store = open_tuned(&url, options()).await;
    ingest(&store, vec![item("f-1")]).await;
    let second = ingest(&store, vec![item("f-2")]).await[0].event_id;
    ingest(&store, vec![item("f-3")]).await;
    store.close().await;
    let c = rusqlite::Connection::open(&path).unwrap();
    let in_pending: i64 = c
        .query_row("SELECT COUNT(*) FROM event_dedup_pending", [], |r| r.get(0))
        .unwrap();
    assert_eq!(in_pending, 0, "merged after each commit");
    let (seen,): (i64,) = c
        .query_row(
            "SELECT last_seen FROM event_dedup WHERE dedup_key = 'f-1'",
            [],
            |r| Ok((r.get(0)?,)),
        )
        .unwrap();
    c.execute(
        "INSERT INTO event_dedup_pending (dedup_key, event_id, last_seen) VALUES ('f-1', ?1, ?2)",
        rusqlite::params![second.to_string(), seen + 5_000],
    )
    .unwrap();
    drop(c);
    let store = open_tuned(&url, options()).await;
    ingest(&store, vec![item("f-4")]).await;
    ingest(&store, vec![item("f-5")]).await;
    let c = rusqlite::Connection::open(&path).unwrap();
    let row: (String, i64) = c
        .query_row(
            "SELECT event_id, last_seen FROM event_dedup WHERE dedup_key = 'f-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row, (second.to_string(), seen + 5_000));
    // five keys, each once (f-5 may still wait for the next merge)
    let (pending, merged, folded): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT COUNT(*) FROM event_dedup_pending), (SELECT COUNT(*) FROM event_dedup), \
             (SELECT COUNT(*) FROM event_dedup_pending WHERE dedup_key = 'f-1')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((pending + merged, folded), (5, 0));
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
    store.close().await;
}

#[tokio::test]
async fn database_is_in_wal_mode_and_opens_from_two_processes() {
    // the writer's own connection refuses to start unless journal_mode=wal and synchronous=FULL;
    // here: the file is in WAL mode for every other connection, and a second store (the CLI while
    // a server runs) opens the same file
    let (_dir, url, a, b) = two_stores_on_one_file().await;
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(
        firebreak_store::Store::integrity_check(&a)
            .await
            .unwrap()
            .is_empty()
    );
    firebreak_store::Store::close(&a).await;
    firebreak_store::Store::close(&b).await;
}

/// Two writers on one file (a server and `firebreak ingest`): each finds the dedup keys the
/// other appended since the last merge (the writer's in-memory index of pending keys is rebuilt
/// when another connection has committed), and a resolution from one ends the other's event.
#[tokio::test]
async fn two_writers_on_one_file_share_pending_dedup_keys() {
    use firebreak_store::{ChangeSet, EventStore, NewEvent, Op, Store};
    let (_dir, _url, a, b) = two_stores_on_one_file().await;
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let item = |title: &str, key: &str, minutes: i64, resolve: bool| {
        let at = t0 + time::Duration::minutes(minutes);
        NewEvent {
            event: firebreak_store::conformance::sample_event(title, at),
            dedup_key: key.into(),
            window_start: at - time::Duration::hours(1),
            resolve,
            details: None,
            packed: None,
        }
    };
    async fn ingest(s: &SqliteStore, items: Vec<NewEvent>) -> Vec<firebreak_store::Ingested> {
        let cs = ChangeSet::new().op(Op::IngestEvents(items));
        s.commit(cs).await.unwrap().ingested
    }
    // each writer has indexed the (empty) table before the other writes
    let first = ingest(&a, vec![item("first", "k1", 0, false)]).await;
    assert!(first[0].created);
    let other = ingest(&b, vec![item("other", "k2", 0, false)]).await;
    assert!(other[0].created);

    // b repeats a's key, a repeats b's key, then a's own key again
    let r = ingest(&b, vec![item("again", "k1", 1, false)]).await;
    assert!(!r[0].created, "b sees the key a appended");
    assert_eq!(r[0].event_id, first[0].event_id);
    let r = ingest(
        &a,
        vec![item("again", "k2", 2, false), item("again", "k1", 2, false)],
    )
    .await;
    assert!(!r[0].created, "a sees the key b appended");
    assert_eq!(r[0].event_id, other[0].event_id);
    assert!(!r[1].created);
    assert_eq!(r[1].event_id, first[0].event_id);
    let stored = a.get_event(first[0].event_id).await.unwrap();
    assert_eq!(stored.occurrences, 3);

    // a resolution through b ends the event a holds the key of; a then starts a new one
    let r = ingest(&b, vec![item("resolved", "k1", 3, true)]).await;
    assert!(r[0].resolved);
    assert_eq!(r[0].event_id, first[0].event_id);
    let r = ingest(&a, vec![item("fires again", "k1", 4, false)]).await;
    assert!(r[0].created, "the resolved key is gone for a too");
    assert_ne!(r[0].event_id, first[0].event_id);
    a.close().await;
    b.close().await;
}

/// A reader that keeps a read transaction open on the WAL (a long report, an online backup)
/// while the WAL is past its limit: the writer's own checkpoint gives up on it quickly and the
/// commits go on (they waited the connection's whole 10 s busy timeout, batch after batch).
#[tokio::test]
async fn a_long_reader_does_not_stall_commits_past_the_wal_limit() {
    use firebreak_store::{ChangeSet, EventStore, NewEvent, Op, Store};
    use firebreak_store_sqlite::SqliteOptions;
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let options = SqliteOptions {
        wal_limit: 0, // every batch is past it
        ..SqliteOptions::default()
    };
    let store = open_tuned(&url, options).await;
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let commit = |n: usize| {
        let e = firebreak_store::conformance::sample_event(&format!("event {n}"), t0);
        ChangeSet::new().op(Op::IngestEvents(vec![NewEvent {
            event: e,
            dedup_key: format!("key {n}"),
            window_start: t0 - time::Duration::hours(1),
            resolve: false,
            details: None,
            packed: None,
        }]))
    };
    store.commit(commit(0)).await.unwrap();
    let mut reader = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let started = std::time::Instant::now();
    for i in 1..=3 {
        store.commit(commit(i)).await.unwrap();
    }
    let spent = started.elapsed();
    assert!(
        spent < std::time::Duration::from_secs(5),
        "3 commits took {spent:?} while a reader held the WAL"
    );
    // the reader still sees its snapshot; once it ends, the WAL starts over
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(n, 1);
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    store.commit(commit(4)).await.unwrap();
    let counted: i64 = store
        .count_events()
        .await
        .unwrap()
        .iter()
        .map(|c| c.1)
        .sum();
    assert_eq!(counted, 5);
    store.close().await;
}

/// Both levels of observables are indexed on the id's first 8 characters (migrations 0019 and
/// 0021): the readers' lookups by id (one observable, an event's, a ticket's) reach each level
/// through that index, never by reading the whole level.
#[tokio::test]
async fn observables_are_found_through_their_short_id_index() {
    use firebreak_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = SqliteStore::open(
        &format!("sqlite://{}", path.display()),
        Arc::new(AuditSigner::ephemeral()),
    )
    .await
    .unwrap();
    store.close().await;
    let c = rusqlite::Connection::open(&path).unwrap();
    let from = "SELECT o.id, o.kind, o.value, o.first_seen, o.last_seen FROM \
                (SELECT id, kind, value, first_seen, last_seen FROM observables \
                 UNION ALL SELECT id, kind, value, first_seen, last_seen FROM observable_pending) o";
    let id = "0013674a-0a83-8aa9-a703-b939f91a2d5b";
    for (what, filter) in [
        (
            "one observable",
            format!("WHERE o.id = '{id}' AND substr(o.id, 1, 8) = substr('{id}', 1, 8)"),
        ),
        (
            "an event's observables",
            format!(
                "WHERE 1 = 1 AND o.id IN (NULL, '{id}') AND substr(o.id, 1, 8) IN (NULL, '{}') \
                 ORDER BY o.last_seen DESC, o.id DESC LIMIT 100",
                &id[..8]
            ),
        ),
        (
            "a ticket's observables",
            "WHERE 1 = 1 AND o.id IN (SELECT observable_id FROM ticket_observables WHERE ticket_id = 'x') \
             AND substr(o.id, 1, 8) IN (SELECT substr(observable_id, 1, 8) FROM ticket_observables \
             WHERE ticket_id = 'x') ORDER BY o.last_seen DESC, o.id DESC LIMIT 100"
                .to_string(),
        ),
    ] {
        let mut st = c
            .prepare(&format!("EXPLAIN QUERY PLAN {from} {filter}"))
            .unwrap();
        let plan: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (table, index) in [
            ("observable_pending", "observable_pending_id8"),
            ("observables", "observables_id8"),
        ] {
            let level: Vec<&String> = plan
                .iter()
                .filter(|l| {
                    l.starts_with(&format!("SCAN {table}"))
                        || l.starts_with(&format!("SEARCH {table}"))
                })
                .collect();
            assert!(
                !level.is_empty() && level.iter().all(|l| l.contains(index)),
                "{what}, {table}: {plan:#?}"
            );
        }
    }
}

/// New observables wait in `observable_pending` until a merge (migration 0016); an id is in one
/// level only. With some observables merged (a store that merges after every commit) and others
/// pending (the file reopened by a store that does not merge yet), readers see both levels as
/// one table, in `last_seen` order; an observable mentioned again later moves `last_seen` in
/// the level that holds it, never adding a second row; the next merge moves the pending ones
/// over, and a snapshot carries each observable once.
#[tokio::test]
async fn observables_are_one_table_across_both_levels() {
    use firebreak_domain::event::ObservableRef;
    use firebreak_store::{ChangeSet, EventStore, NewEvent, ObservableFilter, Op, Store};
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let url = format!("sqlite://{}", path.display());
    let tuned = |merge_at: i64| SqliteOptions {
        merge_at,
        ..SqliteOptions::default()
    };
    let t0 = time::OffsetDateTime::now_utc()
        .replace_millisecond(0)
        .unwrap();
    let item = |key: &str, minutes: i64, ips: &[&str]| {
        let at = t0 + time::Duration::minutes(minutes);
        let mut event = firebreak_store::conformance::sample_event(key, at);
        event.observables = ips
            .iter()
            .map(|ip| ObservableRef {
                kind: "ip".into(),
                value: (*ip).into(),
            })
            .collect();
        NewEvent {
            event,
            dedup_key: key.into(),
            window_start: at - time::Duration::hours(1),
            resolve: false,
            details: None,
            packed: None,
        }
    };
    async fn ingest(s: &SqliteStore, items: Vec<NewEvent>) {
        let cs = ChangeSet::new().op(Op::IngestEvents(items));
        s.commit(cs).await.unwrap();
    }
    let levels = |path: std::path::PathBuf| {
        let c = rusqlite::Connection::open(path).unwrap();
        let count = |t: &str| -> i64 {
            c.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        let both: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM observables o JOIN observable_pending p ON p.id = o.id",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (count("observables"), count("observable_pending"), both)
    };
    {
        let merging = open_tuned(&url, tuned(1)).await;
        ingest(&merging, vec![item("k1", 0, &["192.0.2.1", "192.0.2.2"])]).await;
        // a second commit: the first one's observables are merged after it (merges run between
        // batches, counted every few events)
        ingest(&merging, vec![item("k2", 1, &["192.0.2.3"])]).await;
        ingest(&merging, vec![item("k2b", 1, &["192.0.2.3"])]).await;
    }
    let (merged, pending, both) = levels(path.clone());
    assert_eq!(
        (merged, pending, both),
        (3, 0, 0),
        "merged after each commit"
    );
    let store = open_tuned(
        &url,
        tuned(firebreak_store_sqlite::SqliteOptions::default().merge_at),
    )
    .await;
    // new ones stay pending; 192.0.2.1 (merged) mentioned again three minutes later
    ingest(
        &store,
        vec![
            item("k3", 3, &["192.0.2.1", "198.51.100.7"]),
            item("k4", 2, &["198.51.100.8"]),
        ],
    )
    .await;
    // a pending one mentioned again two minutes later
    ingest(&store, vec![item("k5", 4, &["198.51.100.8"])]).await;
    let (merged, pending, both) = levels(path.clone());
    assert_eq!((merged, pending, both), (3, 2, 0), "new ones pending");
    let all = store
        .list_observables(&ObservableFilter {
            limit: 10,
            ..ObservableFilter::default()
        })
        .await
        .unwrap();
    let order: Vec<(&str, i64)> = all
        .iter()
        .map(|o| (o.value.as_str(), (o.last_seen - t0).whole_minutes()))
        .collect();
    assert_eq!(
        order,
        [
            ("198.51.100.8", 4),
            ("198.51.100.7", 3),
            ("192.0.2.1", 3),
            ("192.0.2.3", 1),
            ("192.0.2.2", 0),
        ],
        "one list, most recently seen first, across both levels"
    );
    let eight = all.iter().find(|o| o.value == "198.51.100.8").unwrap();
    assert_eq!((eight.first_seen - t0).whole_minutes(), 2);
    assert_eq!(eight.events, 2);
    let one = store.get_observable(all[2].id).await.unwrap();
    assert_eq!((one.value.as_str(), one.events), ("192.0.2.1", 2));
    let pending_one = store.get_observable(eight.id).await.unwrap();
    assert_eq!(pending_one.value, "198.51.100.8");
    // the cursor walks across both levels
    let page = store
        .list_observables(&ObservableFilter {
            limit: 2,
            after: Some((
                (all[1].last_seen.unix_timestamp_nanos() / 1_000_000) as i64,
                all[1].id,
            )),
            ..ObservableFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|o| o.value.as_str()).collect::<Vec<_>>(),
        ["192.0.2.1", "192.0.2.3"]
    );
    // a snapshot carries each observable once
    let mut snap: Vec<firebreak_store::snapshot::SnapshotItem> = Vec::new();
    store.export_snapshot(&mut snap).await.unwrap();
    assert_eq!(snapshot_rows(&snap, "observables"), 5);
    drop(store);
    // the next merge moves the pending ones over, keeping what they had
    let merging = open_tuned(&url, tuned(1)).await;
    ingest(&merging, vec![item("k6", 5, &["203.0.113.1"])]).await;
    ingest(&merging, vec![item("k7", 5, &["203.0.113.1"])]).await;
    let (merged, pending, both) = levels(path.clone());
    assert_eq!((merged, pending, both), (6, 0, 0), "merged");
    let after = merging
        .list_observables(&ObservableFilter {
            limit: 10,
            ..ObservableFilter::default()
        })
        .await
        .unwrap();
    let eight = after.iter().find(|o| o.value == "198.51.100.8").unwrap();
    assert_eq!(
        (
            (eight.first_seen - t0).whole_minutes(),
            (eight.last_seen - t0).whole_minutes()
        ),
        (2, 4)
    );
    assert_eq!(
        merging.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    // an id in both levels (an older process beside this one) is reported
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO observable_pending SELECT * FROM observables LIMIT 1",
            [],
        )
        .unwrap();
    let problems = merging.integrity_check().await.unwrap();
    assert_eq!(
        problems,
        ["1 rows of observable_pending are also in observables (a key belongs to one level)"]
    );
    // the next merge folds it into the merged row (the earliest first sighting, the latest
    // last one) instead of adding a second row for the id
    let c = rusqlite::Connection::open(&path).unwrap();
    let (id, first, last): (String, i64, i64) = c
        .query_row(
            "SELECT id, first_seen, last_seen FROM observable_pending",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    c.execute(
        "UPDATE observable_pending SET first_seen = ?1, last_seen = ?2",
        [first - 60_000, last + 60_000],
    )
    .unwrap();
    drop(c);
    ingest(&merging, vec![item("k8", 6, &["203.0.113.2"])]).await;
    ingest(&merging, vec![item("k9", 6, &["203.0.113.2"])]).await;
    let (merged, pending, both) = levels(path.clone());
    assert_eq!(
        (merged, pending, both),
        (7, 0, 0),
        "folded, and the new one merged"
    );
    let row: (i64, i64) = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT first_seen, last_seen FROM observables WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row, (first - 60_000, last + 60_000));
    assert_eq!(
        merging.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
}

/// Rows of one table in a snapshot stream.
fn snapshot_rows(items: &[firebreak_store::snapshot::SnapshotItem], table: &str) -> usize {
    use firebreak_store::snapshot::SnapshotItem;
    let mut current = None;
    let mut n = 0;
    for item in items {
        match item {
            SnapshotItem::Table { name, .. } => current = Some(name.as_str()),
            SnapshotItem::Row(_) if current == Some(table) => n += 1,
            _ => {}
        }
    }
    n
}

/// A level of observables fills without new events too (a ticket links them; one event may name
/// hundreds): the writer counts the rows it adds, so the level is merged once it holds
/// `merge_at` rows however few events came with them.
#[tokio::test]
async fn observables_linked_to_tickets_alone_are_merged() {
    use firebreak_domain::audit::AuditDraft;
    use firebreak_domain::event::ObservableRef;
    use firebreak_store::{ChangeSet, Op, Store};
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let url = format!("sqlite://{}", path.display());
    let options = SqliteOptions {
        merge_at: 20,
        ..SqliteOptions::default()
    };
    let store = open_tuned(&url, options).await;
    let t = firebreak_store::conformance::sample_ticket("links");
    store
        .commit(
            ChangeSet::new().op(Op::InsertTicket(t.clone())).audit(
                AuditDraft::new(&t.created_by, "ticket.created", "ticket", t.id).ticket(t.id),
            ),
        )
        .await
        .unwrap();
    let pending = || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM observable_pending", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
    };
    let at = time::OffsetDateTime::now_utc();
    for round in 0..3 {
        let observables = (0..15)
            .map(|i| ObservableRef {
                kind: "ip".into(),
                value: format!("198.51.{round}.{i}"),
            })
            .collect();
        store
            .commit(ChangeSet::new().op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables,
                at,
            }))
            .await
            .unwrap();
    }
    // 45 rows were added in three commits with no event: merged on reaching 20 (after the
    // second commit), then 15 pending
    assert_eq!(pending(), 15);
}

/// The change set that carries the first row packed with a new dictionary fails (its other op
/// conflicts) and rolls back, the dictionary's row with it; a later change set packed with the
/// same dictionary commits, and must store the dictionary itself: a store opened afterwards,
/// which knows no dictionary but the database's, reads every committed row.
#[tokio::test]
async fn a_rolled_back_first_packed_row_takes_its_dictionary_along() {
    use firebreak_store::{ChangeSet, EventFilter, EventStore, Op, Store};
    use firebreak_store_sqlite::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let options = SqliteOptions {
        dict_samples: 2,
        ..SqliteOptions::default()
    };
    let store = open_tuned(&url, options).await;
    let t0 = time::OffsetDateTime::now_utc();
    let item = |i: usize| {
        let mut event = firebreak_store::conformance::sample_event(&format!("r{i}"), t0);
        event.raw = format!("{{\"line\":{i}}}");
        let mut item = firebreak_store::conformance::new_event(event, &format!("r{i}"), t0);
        store.prepare_event(&mut item).unwrap();
        item
    };
    // two samples make the dictionary; the third row is the first packed
    let (a, b, first) = (item(0), item(1), item(2));
    assert!(a.packed.is_none() && b.packed.is_none() && first.packed.is_some());
    let mut stale = firebreak_store::conformance::sample_event("not stored", t0);
    stale.version = 7;
    let failing = ChangeSet::new()
        .op(Op::IngestEvents(vec![first]))
        .op(Op::UpdateEvent {
            event: Box::new(stale),
            expected_version: 7,
        });
    assert!(store.commit(failing).await.is_err());
    let later = item(3);
    assert!(later.packed.is_some());
    store
        .commit(ChangeSet::new().op(Op::IngestEvents(vec![a, b, later])))
        .await
        .unwrap();
    drop(store);
    let reopened = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    let events = reopened
        .list_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let mut raws: Vec<String> = events.into_iter().map(|(_, e)| e.raw).collect();
    raws.sort();
    assert_eq!(raws, ["{\"line\":0}", "{\"line\":1}", "{\"line\":3}"]);
}
