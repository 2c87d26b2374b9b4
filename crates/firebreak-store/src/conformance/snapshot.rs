//! Conformance of whole-database snapshots (`firebreak backup`, `restore`, `migrate-store`).

use super::{
    TestStore, commit_op, create, ingest, new_event, now, sample_event, sample_ticket, sample_user,
};
use crate::snapshot::{SnapshotItem, SqlValue, TABLES, VecSource};
use crate::{Op, StoreError};
use firebreak_domain::ticket::EventStatus;
use std::collections::BTreeMap;

async fn export(ts: &TestStore) -> Vec<SnapshotItem> {
    let mut out = Vec::new();
    ts.store.export_snapshot(&mut out).await.expect("export");
    out
}

/// Rows per table, each table's rows sorted (row order is not part of the contract).
fn by_table(items: &[SnapshotItem]) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<String>, Vec<String>)> = None;
    for i in items {
        match i {
            SnapshotItem::Table { name, columns } => {
                assert!(current.is_none(), "table {name} inside another");
                current = Some((name.clone(), columns.clone(), Vec::new()));
            }
            SnapshotItem::Row(v) => current
                .as_mut()
                .expect("row in a table")
                .2
                .push(format!("{v:?}")),
            SnapshotItem::EndTable => {
                let (name, cols, mut rows) = current.take().expect("end of a table");
                rows.sort();
                out.insert(name, (cols, rows));
            }
            SnapshotItem::Sequence { .. } => {}
        }
    }
    out
}

pub async fn snapshots_round_trip_every_table(ts: &TestStore) {
    let t0 = now();
    commit_op(ts, Op::InsertUser(sample_user("snap-olga")))
        .await
        .unwrap();
    let first = create(&ts.store, sample_ticket("snapshot one")).await;
    let second = create(&ts.store, sample_ticket("snapshot two")).await;
    let rule = uuid::Uuid::now_v7();
    let mut s = sample_event("snap suppressed", t0);
    s.status = EventStatus::Suppressed;
    s.suppressed_by = Some(rule);
    ingest(
        ts,
        vec![
            new_event(sample_event("snap a", t0), "snap-a", t0),
            new_event(s, "snap-s", t0),
        ],
    )
    .await;
    // a repeat moves the key's last_seen as the snapshot carries it, on every backend (the
    // SQLite writer writes only the event's row for a repeat)
    let t1 = t0 + time::Duration::minutes(1);
    let r = ingest(
        ts,
        vec![new_event(sample_event("snap a again", t1), "snap-a", t0)],
    )
    .await;
    assert!(!r[0].created, "a repeat inside the window");
    let counts_before = ts.store.count_events().await.unwrap();
    let hits_before = ts.store.suppression_hits().await.unwrap();

    let a = export(ts).await;
    // every table, in the restore order, each once
    let names: Vec<&str> = a
        .iter()
        .filter_map(|i| match i {
            SnapshotItem::Table { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, TABLES);
    let tables = by_table(&a);
    for (t, min) in [
        ("users", 1),
        ("tickets", 2),
        ("events", 2),
        ("audit_log", 2),
        ("audit_checkpoints", 1),
    ] {
        assert!(tables[t].1.len() >= min, "{t}: {} rows", tables[t].1.len());
    }
    {
        let mut items = a.iter().skip_while(
            |i| !matches!(i, SnapshotItem::Table { name, .. } if name == "event_dedup"),
        );
        let Some(SnapshotItem::Table { columns, .. }) = items.next() else {
            panic!("no event_dedup table")
        };
        let at = |c: &str| columns.iter().position(|x| x == c).unwrap();
        let row = items
            .map_while(|i| match i {
                SnapshotItem::Row(v) => Some(v),
                _ => None,
            })
            .find(|v| v[at("dedup_key")] == SqlValue::Text("snap-a".into()))
            .expect("the key snap-a exported");
        let t1_ms = (t1.unix_timestamp_nanos() / 1_000_000) as i64;
        assert_eq!(row[at("last_seen")], SqlValue::Int(t1_ms), "{row:?}");
    }
    // the shared form: timestamps in epoch milliseconds, booleans as 0/1, tags as JSON text
    let (cols, _) = &tables["tickets"];
    let row = a
        .iter()
        .skip_while(|i| !matches!(i, SnapshotItem::Table { name, .. } if name == "tickets"))
        .find_map(|i| match i {
            SnapshotItem::Row(v) => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    let col = |c: &str| row[cols.iter().position(|x| x == c).unwrap()].clone();
    assert!(matches!(col("created_at"), SqlValue::Int(ms) if ms > 1_600_000_000_000));
    assert_eq!(col("restricted"), SqlValue::Int(0));
    assert!(matches!(col("tags"), SqlValue::Text(ref t) if t.starts_with('[')));
    assert!(matches!(col("id"), SqlValue::Text(ref t) if t.len() == 36));

    // restored over itself: the same rows, the derived counters rebuilt
    let report = ts
        .store
        .import_snapshot(Box::new(VecSource(a.clone().into())))
        .await
        .expect("import");
    assert_eq!(report.tables.len(), TABLES.len());
    let b = export(ts).await;
    assert_eq!(
        by_table(&b),
        tables,
        "a restored snapshot exports the same rows"
    );
    {
        let p = ts.store.integrity_check().await.unwrap();
        assert!(p.is_empty(), "{p:?}");
    }
    assert_eq!(ts.store.count_events().await.unwrap(), counts_before);
    assert_eq!(
        ts.store.suppression_hits().await.unwrap().len(),
        hits_before.len()
    );
    assert!(ts.store.holds_data().await.unwrap());
    assert_eq!(
        ts.store
            .get_ticket_by_number(second.number)
            .await
            .unwrap()
            .id,
        second.id
    );
    // numbering continues after the restored tickets
    let third = create(&ts.store, sample_ticket("after restore")).await;
    assert!(third.number > second.number && second.number > first.number);

    // a snapshot this version cannot read changes nothing
    let mut bad = a.clone();
    for i in bad.iter_mut() {
        if let SnapshotItem::Table { name, columns } = i
            && name == "events"
        {
            columns.push("from_the_future".into());
        }
    }
    let err = ts
        .store
        .import_snapshot(Box::new(VecSource(bad.into())))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("from_the_future"), "{err:#}");
    assert_eq!(
        ts.store
            .get_ticket_by_number(third.number)
            .await
            .unwrap()
            .id,
        third.id
    );
    // a snapshot cut short changes nothing either
    let cut: Vec<SnapshotItem> = a[..a.len() / 2].to_vec();
    let err = ts
        .store
        .import_snapshot(Box::new(VecSource(cut.into())))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:#}");
    assert_eq!(
        ts.store
            .get_ticket_by_number(third.number)
            .await
            .unwrap()
            .id,
        third.id
    );
}

/// Links restored from a snapshot and links of events ingested after the restore are found
/// together, counted together and exported together (SQLite keeps new links in an inverted
/// index and restored ones in `event_observables`).
pub async fn restored_and_new_links_are_found_together(ts: &TestStore) {
    use firebreak_domain::event::ObservableRef;
    let t0 = now();
    let a = sample_event("before the backup", t0);
    ingest(ts, vec![new_event(a.clone(), "links-a", t0)]).await;
    let snapshot = export(ts).await;
    ts.store
        .import_snapshot(Box::new(VecSource(snapshot.into())))
        .await
        .expect("import");
    let b = sample_event("after the restore", t0 + time::Duration::seconds(1));
    ingest(ts, vec![new_event(b.clone(), "links-b", t0)]).await;
    let ip = ObservableRef {
        kind: "ip".into(),
        value: "10.0.0.1".into(),
    }
    .id();
    assert_eq!(ts.store.get_observable(ip).await.unwrap().events, 2);
    assert_eq!(
        ts.store.observable_events(ip, 10).await.unwrap(),
        vec![b.id, a.id],
        "newest first, from both places"
    );
    let tables = by_table(&export(ts).await);
    let (cols, rows) = &tables["event_observables"];
    assert_eq!(cols, &["observable_id", "event_id"]);
    // two events with two observables each, each link once
    assert_eq!(rows.len(), 4, "{rows:?}");
    let ip = ip.to_string();
    assert_eq!(rows.iter().filter(|r| r.contains(&ip)).count(), 2);
}

/// A restore takes the store back to the backup: an observable and a dedup key first seen
/// after the backup are gone, and when they come again they are new (a writer that remembers
/// what it recorded lately must forget it on a restore).
pub async fn a_restore_forgets_what_came_after_the_backup(ts: &TestStore) {
    use firebreak_domain::event::ObservableRef;
    let t0 = now();
    let snapshot = export(ts).await;
    let later = || {
        let mut e = sample_event("after the backup", t0);
        e.observables.push(ObservableRef {
            kind: "domain".into(),
            value: "after-the-backup.example".into(),
        });
        e
    };
    let first = ingest(ts, vec![new_event(later(), "after-backup", t0)]).await;
    assert!(first[0].created);
    ts.store
        .import_snapshot(Box::new(VecSource(snapshot.into())))
        .await
        .expect("import");
    let o = ObservableRef {
        kind: "domain".into(),
        value: "after-the-backup.example".into(),
    }
    .id();
    assert!(
        matches!(ts.store.get_observable(o).await, Err(StoreError::NotFound)),
        "gone with the restore"
    );
    let again = ingest(ts, vec![new_event(later(), "after-backup", t0)]).await;
    assert!(again[0].created, "the key is new again");
    assert_ne!(again[0].event_id, first[0].event_id);
    let found = ts.store.get_observable(o).await.expect("recorded again");
    assert_eq!(found.events, 1);
    assert_eq!(
        ts.store.observable_events(o, 10).await.unwrap(),
        vec![again[0].event_id]
    );
}
