//! Conformance of durable jobs (enqueue, optimistic update, lease claims, listings) and threat
//! indicators (upsert, lookups, listings, key pages, generation).

use super::{MINUTE, TestStore, at, commit_op, create, sample_ticket};
use crate::{
    ChangeSet, IndicatorFilter, IndicatorRecord, JobFilter, JobRecord, JobStatus, Op, StoreError,
};
use firebreak_domain::audit::AuditDraft;
use std::collections::{BTreeMap, BTreeSet};

const HOUR: i64 = 60 * MINUTE;

/// A queued job with a fixed id, due `run_at` ms after [`at`], created `created` ms after it.
fn job(id: u128, run_at: i64, created: i64) -> JobRecord {
    JobRecord {
        id: uuid::Uuid::from_u128(id),
        kind: "playbook_run".into(),
        idempotency_key: None,
        status: JobStatus::Queued,
        ticket_id: None,
        payload: format!(r#"{{"playbook":"contain-host","n":{id}}}"#),
        state: "{}".into(),
        attempts: 0,
        max_attempts: 3,
        run_at: at(run_at),
        locked_by: None,
        locked_until: None,
        last_error: None,
        version: 1,
        created_at: at(created),
        updated_at: at(created),
    }
}

async fn enqueue(ts: &TestStore, jobs: &[JobRecord]) {
    let mut cs = ChangeSet::new();
    for j in jobs {
        cs = cs.op(Op::EnqueueJob(j.clone()));
    }
    ts.store.commit(cs).await.unwrap();
}

/// What a claim by `worker` at `now` under `lease` makes of `j`.
fn claimed(j: &JobRecord, worker: &str, now: i64, lease: i64, version: i64) -> JobRecord {
    JobRecord {
        status: JobStatus::Running,
        locked_by: Some(worker.into()),
        locked_until: Some(at(now + lease)),
        updated_at: at(now),
        version,
        ..j.clone()
    }
}

async fn claim(ts: &TestStore, worker: &str, now: i64, lease: i64, limit: u32) -> Vec<JobRecord> {
    ts.store
        .claim_jobs(worker, at(now), time::Duration::milliseconds(lease), limit)
        .await
        .unwrap()
}

fn ids(jobs: &[JobRecord]) -> Vec<uuid::Uuid> {
    jobs.iter().map(|j| j.id).collect()
}

async fn counts(ts: &TestStore) -> BTreeMap<&'static str, i64> {
    ts.store
        .count_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, n)| (s.as_str(), n))
        .collect()
}

pub async fn jobs_enqueue_once_per_idempotency_key(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("job owner")).await;
    let first = JobRecord {
        idempotency_key: Some(format!("playbook:contain-host:{}", t.id)),
        ticket_id: Some(t.id),
        payload: r#"{"host":"FS-01","note":"Zürich \"quoted\" 日本"}"#.into(),
        ..job(1, 0, 0)
    };
    // the stored version is 1 whatever the record says
    enqueue(
        ts,
        &[JobRecord {
            version: 42,
            ..first.clone()
        }],
    )
    .await;
    assert_eq!(ts.store.get_job(first.id).await.unwrap(), first);
    // the same key again: a no-op, and the change set (its audit entry included) still commits
    let before = ts.store.audit_entries(0, 1000).await.unwrap().len();
    let again = JobRecord {
        payload: r#"{"host":"other"}"#.into(),
        ..job(2, 0, MINUTE)
    };
    let again = JobRecord {
        idempotency_key: first.idempotency_key.clone(),
        ..again
    };
    let fresh = job(3, 0, MINUTE);
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::EnqueueJob(again.clone()))
                .op(Op::EnqueueJob(fresh.clone()))
                .audit(AuditDraft::new(
                    "system",
                    "job.enqueued",
                    "job",
                    again.id.to_string(),
                )),
        )
        .await
        .unwrap();
    assert_eq!(
        ts.store.audit_entries(0, 1000).await.unwrap().len(),
        before + 1
    );
    assert!(matches!(
        ts.store.get_job(again.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ts.store.get_job(first.id).await.unwrap(), first);
    assert_eq!(ts.store.get_job(fresh.id).await.unwrap(), fresh);
    // twice in one change set: the first one stays
    let keyed = |id: u128| JobRecord {
        idempotency_key: Some("daily-report:2026-03-01".into()),
        kind: "report".into(),
        ..job(id, 0, 2 * MINUTE)
    };
    enqueue(ts, &[keyed(4), keyed(5)]).await;
    assert_eq!(ts.store.get_job(keyed(4).id).await.unwrap(), keyed(4));
    assert!(matches!(
        ts.store.get_job(keyed(5).id).await,
        Err(StoreError::NotFound)
    ));
    // jobs without a key never collide with each other
    enqueue(ts, &[job(6, 0, 3 * MINUTE), job(7, 0, 3 * MINUTE)]).await;
    // an id already stored is a conflict (only the key makes enqueuing a no-op)
    let res = commit_op(ts, Op::EnqueueJob(job(6, 0, 4 * MINUTE))).await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    let all = ts.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(
        ids(&all),
        ids(&[job(7, 0, 0), job(6, 0, 0), keyed(4), fresh, first])
    );
    assert_eq!(counts(ts).await, BTreeMap::from([("queued", 5)]));
}

pub async fn job_updates_check_the_version(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("job update")).await;
    let j = JobRecord {
        idempotency_key: Some("k-update".into()),
        ticket_id: Some(t.id),
        ..job(1, 0, 0)
    };
    let sibling = job(2, 0, 0);
    enqueue(ts, &[j.clone(), sibling.clone()]).await;
    let waiting = JobRecord {
        status: JobStatus::Waiting,
        state: r#"{"done":["isolate"],"outputs":{"isolate":{"ok":true}}}"#.into(),
        attempts: 1,
        run_at: at(HOUR),
        locked_by: Some("node-a/1".into()),
        locked_until: Some(at(2 * MINUTE)),
        last_error: Some("approval pending — «ops»".into()),
        updated_at: at(MINUTE),
        ..j.clone()
    };
    commit_op(
        ts,
        Op::UpdateJob {
            job: waiting.clone(),
            expected_version: 1,
        },
    )
    .await
    .unwrap();
    let stored = ts.store.get_job(j.id).await.unwrap();
    assert_eq!(
        stored,
        JobRecord {
            version: 2,
            ..waiting.clone()
        }
    );
    // only status, state, attempts, run_at, the lock, the error, the ticket and updated_at
    // change
    let done = JobRecord {
        status: JobStatus::Succeeded,
        state: r#"{"done":["isolate","notify"]}"#.into(),
        attempts: 2,
        locked_by: None,
        locked_until: None,
        last_error: None,
        updated_at: at(3 * MINUTE),
        kind: "other".into(),
        idempotency_key: Some("k-other".into()),
        ticket_id: None,
        payload: "{}".into(),
        max_attempts: 9,
        created_at: at(5 * MINUTE),
        version: 99,
        ..waiting.clone()
    };
    commit_op(
        ts,
        Op::UpdateJob {
            job: done,
            expected_version: 2,
        },
    )
    .await
    .unwrap();
    let stored = ts.store.get_job(j.id).await.unwrap();
    assert_eq!(
        stored,
        JobRecord {
            status: JobStatus::Succeeded,
            state: r#"{"done":["isolate","notify"]}"#.into(),
            attempts: 2,
            run_at: at(HOUR),
            locked_by: None,
            locked_until: None,
            last_error: None,
            updated_at: at(3 * MINUTE),
            version: 3,
            ticket_id: None,
            ..j.clone()
        }
    );
    // a stale version is a conflict and changes nothing
    for stale in [1, 2, 4] {
        let res = commit_op(
            ts,
            Op::UpdateJob {
                job: waiting.clone(),
                expected_version: stale,
            },
        )
        .await;
        assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    }
    assert_eq!(ts.store.get_job(j.id).await.unwrap(), stored);
    // an unknown job is not found
    let res = commit_op(
        ts,
        Op::UpdateJob {
            job: job(9, 0, 0),
            expected_version: 1,
        },
    )
    .await;
    assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    assert!(matches!(
        ts.store.get_job(job(9, 0, 0).id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ts.store.get_job(sibling.id).await.unwrap(), sibling);
}

pub async fn concurrent_claims_return_each_due_job_once(ts: &TestStore) {
    let jobs: Vec<JobRecord> = (1..=50).map(|i| job(i, i as i64 * 1000, 0)).collect();
    enqueue(ts, &jobs).await;
    let (now, lease) = (HOUR, 10 * MINUTE);
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = ts.store.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_jobs(&worker, at(now), time::Duration::milliseconds(lease), 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                assert!(batch.len() <= 3, "{} claimed at once", batch.len());
                got.extend(batch.into_iter().map(|j| (worker.clone(), j)));
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in futures::future::join_all(handles).await {
        all.extend(h.unwrap());
    }
    let unique: BTreeSet<uuid::Uuid> = all.iter().map(|(_, j)| j.id).collect();
    assert_eq!(all.len(), 50, "every due job is claimed exactly once");
    assert_eq!(unique, jobs.iter().map(|j| j.id).collect());
    for (worker, got) in &all {
        let original = jobs.iter().find(|j| j.id == got.id).unwrap();
        assert_eq!(*got, claimed(original, worker, now, lease, 2));
        assert_eq!(ts.store.get_job(got.id).await.unwrap(), *got);
    }
    assert!(claim(ts, "late", now, lease, 100).await.is_empty());
    assert_eq!(counts(ts).await, BTreeMap::from([("running", 50)]));
}

pub async fn claims_take_due_jobs_oldest_first_and_expired_leases_again(ts: &TestStore) {
    let lease = 5 * MINUTE;
    let a = job(1, 0, 0);
    let b = job(2, 2 * MINUTE, 0);
    // waiting for a decision until its deadline
    let c = JobRecord {
        status: JobStatus::Waiting,
        ..job(3, MINUTE, 0)
    };
    let d = JobRecord {
        status: JobStatus::Waiting,
        ..job(4, 10 * MINUTE, 0)
    };
    // finished jobs are never claimed, however old
    let finals: Vec<JobRecord> = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .zip(10..)
    .map(|(status, id)| JobRecord {
        status,
        ..job(id, -HOUR, 0)
    })
    .collect();
    // run_at far ahead: not due
    let later = job(5, 2 * HOUR, 0);
    enqueue(
        ts,
        &[a.clone(), b.clone(), c.clone(), d.clone(), later.clone()],
    )
    .await;
    enqueue(ts, &finals).await;
    assert!(claim(ts, "w1", 90_000, lease, 0).await.is_empty());
    // at 1m30s: a (due at 0) then c (its deadline at 1m passed); b is due at 2m, d at 10m
    let first = claim(ts, "w1", 90_000, lease, 10).await;
    assert_eq!(
        first,
        [
            claimed(&a, "w1", 90_000, lease, 2),
            claimed(&c, "w1", 90_000, lease, 2)
        ]
    );
    // claimed jobs are held until their lease runs out
    assert!(claim(ts, "w2", 90_000, lease, 10).await.is_empty());
    // due exactly now counts as due
    let second = claim(ts, "w2", 2 * MINUTE, lease, 10).await;
    assert_eq!(second, [claimed(&b, "w2", 2 * MINUTE, lease, 2)]);
    // w1's leases ran out at 6m30s (its worker died): claimable again, one at a time if asked;
    // w2's lasts until 7m
    let t3 = 6 * MINUTE + 50_000;
    let third = claim(ts, "w3", t3, lease, 1).await;
    assert_eq!(third, [claimed(&a, "w3", t3, lease, 3)]);
    let fourth = claim(ts, "w3", t3, lease, 10).await;
    assert_eq!(fourth, [claimed(&c, "w3", t3, lease, 3)]);
    // the first worker's late update is refused: it lost the job
    let res = commit_op(
        ts,
        Op::UpdateJob {
            job: JobRecord {
                status: JobStatus::Succeeded,
                ..first[0].clone()
            },
            expected_version: first[0].version,
        },
    )
    .await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    // at 11m: b's lease (until 7m) ran out and d's deadline passed; a and c are held until
    // 11m50s
    let t4 = 11 * MINUTE;
    let fifth = claim(ts, "w4", t4, lease, 10).await;
    assert_eq!(
        fifth,
        [
            claimed(&b, "w4", t4, lease, 3),
            claimed(&d, "w4", t4, lease, 2)
        ]
    );
    assert!(claim(ts, "w4", t4, lease, 10).await.is_empty());
    assert_eq!(ts.store.get_job(later.id).await.unwrap(), later);
    for f in &finals {
        assert_eq!(ts.store.get_job(f.id).await.unwrap(), *f);
    }
    // a job put back in the queue by its worker is claimable again once due
    let retry = JobRecord {
        status: JobStatus::Queued,
        attempts: 1,
        run_at: at(t4 + 30_000),
        locked_by: None,
        locked_until: None,
        last_error: Some("connector timed out".into()),
        updated_at: at(t4),
        ..fifth[1].clone()
    };
    commit_op(
        ts,
        Op::UpdateJob {
            job: retry.clone(),
            expected_version: 2,
        },
    )
    .await
    .unwrap();
    assert!(claim(ts, "w5", t4, lease, 10).await.is_empty());
    let sixth = claim(ts, "w5", t4 + 30_000, lease, 10).await;
    assert_eq!(
        sixth,
        [claimed(
            &JobRecord {
                version: 3,
                ..retry
            },
            "w5",
            t4 + 30_000,
            lease,
            4
        )]
    );
    // claims write no audit entries
    assert!(ts.store.audit_entries(0, 10).await.unwrap().is_empty());
}

pub async fn jobs_list_newest_first_filter_and_count(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("jobs of a ticket")).await;
    let other = create(&ts.store, sample_ticket("other ticket")).await;
    let on = |j: JobRecord, ticket: &firebreak_domain::ticket::Ticket| JobRecord {
        ticket_id: Some(ticket.id),
        ..j
    };
    let j1 = on(job(1, 0, 0), &t);
    let j2 = JobRecord {
        kind: "report".into(),
        ..job(2, 0, MINUTE)
    };
    // j3 and j4 were created at the same time: the higher id (j4's) comes first
    let j3 = on(job(3, 0, 2 * MINUTE), &other);
    let j4 = on(job(4, 0, 2 * MINUTE), &t);
    let j5 = on(job(5, 0, 3 * MINUTE), &t);
    enqueue(
        ts,
        &[j1.clone(), j2.clone(), j3.clone(), j4.clone(), j5.clone()],
    )
    .await;
    // j5 succeeds, j1 is cancelled
    for (j, status) in [(&j5, JobStatus::Succeeded), (&j1, JobStatus::Cancelled)] {
        commit_op(
            ts,
            Op::UpdateJob {
                job: JobRecord {
                    status,
                    ..j.clone()
                },
                expected_version: 1,
            },
        )
        .await
        .unwrap();
    }
    let list = |f: JobFilter| {
        let store = ts.store.clone();
        async move { ids(&store.list_jobs(&f).await.unwrap()) }
    };
    assert_eq!(
        list(JobFilter::default()).await,
        ids(&[j5.clone(), j4.clone(), j3.clone(), j2.clone(), j1.clone()])
    );
    let by_ticket = JobFilter {
        ticket_id: Some(t.id),
        ..Default::default()
    };
    assert_eq!(
        list(by_ticket.clone()).await,
        ids(&[j5.clone(), j4.clone(), j1.clone()])
    );
    assert_eq!(
        list(JobFilter {
            kind: Some("report".into()),
            ..Default::default()
        })
        .await,
        ids(std::slice::from_ref(&j2))
    );
    assert_eq!(
        list(JobFilter {
            status: Some(JobStatus::Queued),
            ..Default::default()
        })
        .await,
        ids(&[j4.clone(), j3.clone(), j2.clone()])
    );
    assert_eq!(
        list(JobFilter {
            status: Some(JobStatus::Queued),
            kind: Some("playbook_run".into()),
            ticket_id: Some(t.id),
            ..Default::default()
        })
        .await,
        ids(std::slice::from_ref(&j4))
    );
    assert!(
        list(JobFilter {
            status: Some(JobStatus::Dead),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // pages of two, following the cursor, give the whole list once
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = ts
            .store
            .list_jobs(&JobFilter {
                before,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id));
        paged.extend(ids(&page));
    }
    assert_eq!(paged, list(JobFilter::default()).await);
    // the cursor is strict, and combines with the filters
    assert_eq!(
        list(JobFilter {
            before: Some((j4.created_at, j4.id)),
            ..by_ticket
        })
        .await,
        ids(std::slice::from_ref(&j1))
    );
    assert_eq!(
        counts(ts).await,
        BTreeMap::from([("cancelled", 1), ("queued", 3), ("succeeded", 1)])
    );
}

/// An indicator created `created` ms after [`at`], valid for ever.
fn indicator(
    kind: &str,
    value: &str,
    source: &str,
    confidence: i32,
    created: i64,
) -> IndicatorRecord {
    IndicatorRecord {
        id: uuid::Uuid::now_v7(),
        kind: kind.into(),
        value: value.into(),
        confidence,
        source: source.into(),
        description: None,
        valid_until: None,
        created_at: at(created),
        updated_at: at(created),
    }
}

async fn upsert(ts: &TestStore, items: Vec<IndicatorRecord>) {
    commit_op(ts, Op::UpsertIndicators(items)).await.unwrap();
}

async fn find(ts: &TestStore, kind: &str, value: &str) -> Vec<IndicatorRecord> {
    let mut found = ts.store.find_indicators(kind, value).await.unwrap();
    found.sort_by(|a, b| a.source.cmp(&b.source));
    found
}

pub async fn indicators_upsert_by_kind_value_and_source(ts: &TestStore) {
    let a = IndicatorRecord {
        description: Some("C2 «beacon» \"x\"".into()),
        ..indicator("ip", "203.0.113.7", "feed-a", 50, 0)
    };
    let b = indicator("ip", "203.0.113.7", "feed-b", 80, 0);
    let c = IndicatorRecord {
        valid_until: Some(at(HOUR)),
        ..indicator("domain", "evil.example", "feed-a", 60, 0)
    };
    upsert(ts, vec![a.clone(), b.clone(), c.clone()]).await;
    assert_eq!(find(ts, "ip", "203.0.113.7").await, [a.clone(), b.clone()]);
    assert_eq!(
        find(ts, "domain", "evil.example").await,
        std::slice::from_ref(&c)
    );
    assert!(find(ts, "ip", "203.0.113.8").await.is_empty());
    assert!(find(ts, "domain", "203.0.113.7").await.is_empty());
    assert_eq!(ts.store.count_indicators().await.unwrap(), 3);
    // the same (kind, value, source) again: confidence, description, validity and updated_at
    // are replaced; the id and created_at stay
    let a2 = IndicatorRecord {
        description: None,
        valid_until: Some(at(2 * HOUR)),
        ..indicator("ip", "203.0.113.7", "feed-a", 90, MINUTE)
    };
    upsert(ts, vec![a2.clone()]).await;
    let a_now = IndicatorRecord {
        id: a.id,
        created_at: a.created_at,
        ..a2.clone()
    };
    assert_eq!(
        find(ts, "ip", "203.0.113.7").await,
        [a_now.clone(), b.clone()]
    );
    assert_eq!(ts.store.count_indicators().await.unwrap(), 3);
    // repeated within one op: as if applied one after the other
    let x1 = indicator("sha256", &"ab".repeat(32), "feed-c", 10, 0);
    let x2 = IndicatorRecord {
        description: Some("second".into()),
        ..indicator("sha256", &"ab".repeat(32), "feed-c", 20, MINUTE)
    };
    upsert(ts, vec![x1.clone(), b.clone(), x2.clone()]).await;
    assert_eq!(
        find(ts, "sha256", &"ab".repeat(32)).await,
        [IndicatorRecord {
            id: x1.id,
            created_at: x1.created_at,
            ..x2.clone()
        }]
    );
    assert_eq!(ts.store.count_indicators().await.unwrap(), 4);
    // an id held by another indicator is a conflict, and the op changes nothing
    let stolen = IndicatorRecord {
        id: b.id,
        ..indicator("url", "http://evil.example/x", "feed-a", 5, 0)
    };
    let res = commit_op(
        ts,
        Op::UpsertIndicators(vec![
            indicator("ip", "198.51.100.1", "feed-a", 5, 0),
            stolen,
        ]),
    )
    .await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert!(find(ts, "ip", "198.51.100.1").await.is_empty());
    assert_eq!(ts.store.count_indicators().await.unwrap(), 4);
    // an empty op is fine
    upsert(ts, vec![]).await;
}

pub async fn indicators_list_in_key_order_with_filters_and_cursor(ts: &TestStore) {
    let expired = |i: IndicatorRecord| IndicatorRecord {
        valid_until: Some(at(MINUTE)),
        ..i
    };
    let items = vec![
        indicator("domain", "evil.example", "feed-a", 60, 0),
        indicator("domain", "evil.example", "feed-b", 60, 0),
        expired(indicator("domain", "old.example", "feed-a", 60, 0)),
        // byte order on both backends: upper case before lower case
        indicator("filename", "Invoice.exe", "analyst", 40, 0),
        indicator("filename", "invoice.exe", "analyst", 40, 0),
        indicator("ip", "10.0.0.1", "feed-b", 30, 0),
        IndicatorRecord {
            valid_until: Some(at(2 * MINUTE)),
            ..indicator("ip", "10.0.0.2", "feed-a", 30, 0)
        },
    ];
    upsert(ts, items.clone()).await;
    let mut sorted = items.clone();
    sorted.sort_by(|a, b| (&a.kind, &a.value, &a.source).cmp(&(&b.kind, &b.value, &b.source)));
    let list = |f: IndicatorFilter| {
        let store = ts.store.clone();
        async move { store.list_indicators(&f).await.unwrap() }
    };
    assert_eq!(list(IndicatorFilter::default()).await, sorted);
    let pick = |idx: &[usize]| idx.iter().map(|&i| sorted[i].clone()).collect::<Vec<_>>();
    assert_eq!(
        list(IndicatorFilter {
            kind: Some("domain".into()),
            ..Default::default()
        })
        .await,
        pick(&[0, 1, 2])
    );
    assert_eq!(
        list(IndicatorFilter {
            source: Some("feed-a".into()),
            ..Default::default()
        })
        .await,
        pick(&[0, 2, 6])
    );
    // valid at 1m: valid_until must be after it
    assert_eq!(
        list(IndicatorFilter {
            valid_at: Some(at(MINUTE)),
            ..Default::default()
        })
        .await,
        pick(&[0, 1, 3, 4, 5, 6])
    );
    assert_eq!(
        list(IndicatorFilter {
            valid_at: Some(at(2 * MINUTE)),
            source: Some("feed-a".into()),
            ..Default::default()
        })
        .await,
        pick(&[0])
    );
    // pages of three, following the cursor, give the whole list once
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(IndicatorFilter {
            after: after.clone(),
            limit: 3,
            ..Default::default()
        })
        .await;
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some((last.kind.clone(), last.value.clone(), last.source.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, sorted);
    // strictly after, and combined with the filters
    assert_eq!(
        list(IndicatorFilter {
            after: Some(("domain".into(), "evil.example".into(), "feed-a".into())),
            kind: Some("domain".into()),
            valid_at: Some(at(MINUTE)),
            ..Default::default()
        })
        .await,
        pick(&[1])
    );
}

pub async fn indicator_keys_page_through_the_valid_indicators(ts: &TestStore) {
    let valid_at = at(HOUR);
    let mut items = Vec::new();
    let mut expected = BTreeSet::new();
    for i in 0..2_800 {
        let value = format!("10.0.{}.{}", i / 256, i % 256);
        let mut item = indicator("ip", &value, "feed-a", 50, 0);
        match i % 28 {
            // expired: valid until exactly the time asked about, or long before it
            3 => item.valid_until = Some(valid_at),
            13 | 23 => item.valid_until = Some(at(0)),
            // valid for ever, or until just after the time asked about
            r => {
                if r % 5 == 0 {
                    item.valid_until = Some(valid_at + time::Duration::milliseconds(1));
                }
                expected.insert(("ip".to_string(), value));
            }
        }
        items.push(item);
    }
    assert_eq!(expected.len(), 2_500);
    let head: Vec<IndicatorRecord> = items[..3].to_vec();
    upsert(ts, items).await;
    let mut seen = Vec::new();
    let mut pos = 0;
    let mut sizes = Vec::new();
    loop {
        let (page, last) = ts.store.indicator_keys(valid_at, pos, 1_000).await.unwrap();
        if page.is_empty() {
            assert_eq!(last, pos, "an empty page stays where it was");
            break;
        }
        assert!(last > pos, "the position moves forward");
        sizes.push(page.len());
        seen.extend(page);
        pos = last;
    }
    assert_eq!(sizes, [1_000, 1_000, 500]);
    let unique: BTreeSet<(String, String)> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no key is returned twice");
    assert_eq!(unique, expected);
    // positions stay where they were when indicators are updated
    let first = ts.store.indicator_keys(valid_at, 0, 3).await.unwrap();
    upsert(
        ts,
        head.into_iter()
            .map(|i| IndicatorRecord {
                confidence: 99,
                updated_at: at(MINUTE),
                ..i
            })
            .collect(),
    )
    .await;
    assert_eq!(
        ts.store.indicator_keys(valid_at, 0, 3).await.unwrap(),
        first
    );
}

pub async fn indicator_generation_moves_with_every_change(ts: &TestStore) {
    let generation = || {
        let store = ts.store.clone();
        async move { store.indicator_generation().await.unwrap() }
    };
    let g0 = generation().await;
    let a = indicator("domain", "evil.example", "feed-a", 60, 0);
    let b = indicator("domain", "evil.example", "feed-b", 60, 0);
    let c = indicator("ip", "192.0.2.1", "feed-a", 60, 0);
    upsert(ts, vec![a.clone(), b.clone(), c.clone()]).await;
    let g1 = generation().await;
    assert_ne!(g1, g0, "an insert moves the generation");
    upsert(
        ts,
        vec![IndicatorRecord {
            confidence: 99,
            ..a.clone()
        }],
    )
    .await;
    let g2 = generation().await;
    assert_ne!(g2, g1, "an update moves the generation");
    // a change set that fails changes neither the indicators nor the generation
    let res = ts
        .store
        .commit(
            ChangeSet::new()
                .op(Op::UpsertIndicators(vec![indicator(
                    "ip",
                    "192.0.2.99",
                    "feed-a",
                    1,
                    0,
                )]))
                .op(Op::UpdateJob {
                    job: job(1, 0, 0),
                    expected_version: 1,
                }),
        )
        .await;
    assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    assert_eq!(generation().await, g2);
    assert!(find(ts, "ip", "192.0.2.99").await.is_empty());
    // a feed replaced wholesale: its indicators go, the others stay
    commit_op(
        ts,
        Op::DeleteIndicators {
            source: "feed-a".into(),
        },
    )
    .await
    .unwrap();
    let g3 = generation().await;
    assert_ne!(g3, g2, "a delete moves the generation");
    assert_eq!(
        find(ts, "domain", "evil.example").await,
        std::slice::from_ref(&b)
    );
    assert!(find(ts, "ip", "192.0.2.1").await.is_empty());
    assert_eq!(ts.store.count_indicators().await.unwrap(), 1);
    // deleting a source with nothing left is not an error
    commit_op(
        ts,
        Op::DeleteIndicators {
            source: "feed-a".into(),
        },
    )
    .await
    .unwrap();
    // a feed of 10,000 in one op
    let feed: Vec<IndicatorRecord> = (0..10_000)
        .map(|i| indicator("sha1", &format!("{i:040x}"), "feed-big", 70, 0))
        .collect();
    let g4 = generation().await;
    upsert(ts, feed.clone()).await;
    let g5 = generation().await;
    assert_ne!(g5, g4);
    assert_eq!(ts.store.count_indicators().await.unwrap(), 10_001);
    upsert(ts, feed).await;
    assert_ne!(generation().await, g5);
    assert_eq!(ts.store.count_indicators().await.unwrap(), 10_001);
}
