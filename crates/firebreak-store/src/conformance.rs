//! The conformance suite: the same behaviour asserted against every backend. A backend's test
//! binary instantiates it with `store_conformance_suite!(factory)`, where `factory()` returns a
//! fresh, migrated, empty [`TestStore`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a failure is a panic"
)]

use crate::{
    AuditSigner, ChangeSet, DocumentRecord, DynStore, Op, RecordFilter, SessionRecord, StoreError,
    ThrottleRecord, TicketFilter, TokenRecord, TotpRecord, UserRecord, Visibility, WorkflowRecord,
};
use firebreak_domain::audit::{AuditDraft, ChainVerifier};
use firebreak_domain::ids::{DocumentId, TicketId, TokenId, UserId};
use firebreak_domain::role::{Role, Scope};
use firebreak_domain::ticket::*;
use firebreak_domain::user::User;
use std::sync::Arc;
use time::OffsetDateTime;

mod jobs;
mod search;
mod snapshot;
pub use jobs::*;
pub use search::*;
pub use snapshot::{
    a_restore_forgets_what_came_after_the_backup, restored_and_new_links_are_found_together,
    snapshots_round_trip_every_table,
};

/// A fresh store for one test, with the signer it was opened with.
pub struct TestStore {
    pub store: DynStore,
    pub signer: Arc<AuditSigner>,
    /// Keeps the temporary directory or schema alive for the test's duration.
    pub guard: Box<dyn std::any::Any + Send>,
}

#[macro_export]
macro_rules! store_conformance_suite {
    ($factory:path) => {
        $crate::store_conformance_suite!(@tests $factory;
            ticket_round_trips_by_id_and_number,
            ticket_numbers_are_unique_under_concurrent_creation,
            stale_update_is_a_conflict_and_changes_nothing,
            change_set_is_all_or_nothing,
            list_filters_and_paginates_newest_first,
            list_respects_visibility,
            audit_chain_verifies_after_concurrent_commits,
            ticket_timeline_holds_only_its_entries,
            users_are_unique_and_updatable,
            first_user_is_created_once,
            tokens_are_found_by_hash_and_revoked,
            one_failing_change_set_does_not_fail_the_others,
            access_list_grants_and_revokes_visibility,
            token_last_use_is_recorded,
            sessions_are_found_touched_and_revoked,
            login_failures_count_lock_and_reset,
            totp_is_enrolled_enabled_and_steps_used_once,
            recovery_codes_are_spent_once,
            documents_list_oldest_first_and_blobs_are_stored_once,
            workflow_records_filter_and_list_oldest_first,
            workflow_record_updates_check_the_version,
            workflow_records_marker_moves_with_every_change,
            events_dedup_inside_the_window_and_split_after_it,
            events_resolve_and_release_their_key,
            events_list_filter_paginate_and_count,
            event_updates_check_the_version,
            observables_link_events_and_tickets,
            observables_added_to_a_stored_event_are_linked_once,
            suppression_hits_are_counted_from_events,
            event_counters_follow_every_change,
            event_counters_hold_when_one_change_set_repeats_and_resolves_its_own_events,
            ticket_facts_list_the_tickets_opened_since,
            jobs_enqueue_once_per_idempotency_key,
            job_updates_check_the_version,
            concurrent_claims_return_each_due_job_once,
            claims_take_due_jobs_oldest_first_and_expired_leases_again,
            jobs_list_newest_first_filter_and_count,
            indicators_upsert_by_kind_value_and_source,
            indicators_list_in_key_order_with_filters_and_cursor,
            indicator_keys_page_through_the_valid_indicators,
            indicator_generation_moves_with_every_change,
            snapshots_round_trip_every_table,
            restored_and_new_links_are_found_together,
            a_restore_forgets_what_came_after_the_backup,
            search_matches_every_field_literally_in_order,
            search_respects_visibility_and_pages_each_hit_once,
        );
    };
    (@tests $factory:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ts = $factory().await;
                $crate::conformance::$name(&ts).await;
                ts.store.close().await;
            }
        )+
    };
}

fn now() -> OffsetDateTime {
    crate::truncate_millis(OffsetDateTime::now_utc())
}

pub fn sample_ticket(title: &str) -> Ticket {
    let now = now();
    Ticket {
        id: TicketId::new(),
        number: 0,
        title: title.to_string(),
        description: format!("description of {title}"),
        source: Source {
            kind: SourceKind::Employee,
            name: Some("Eve".into()),
            contact: Some("eve@example.org".into()),
        },
        severity: Severity::High,
        priority: Priority::P2,
        criticality: Criticality::Normal,
        tier: 1,
        status: TicketStatus::Open,
        owner: "olga".into(),
        assignee: None,
        restricted: false,
        tags: vec!["phishing".into(), "mail".into()],
        resolution: None,
        problem_category: None,
        false_positive: false,
        incident: false,
        created_by: "olga".into(),
        created_at: now,
        updated_at: now,
        escalation_reason: None,
        version: 1,
    }
}

async fn create(store: &DynStore, t: Ticket) -> Ticket {
    let mut t = t;
    let out =
        store
            .commit(ChangeSet::new().op(Op::InsertTicket(t.clone())).audit(
                AuditDraft::new(&t.created_by, "ticket.created", "ticket", t.id).ticket(t.id),
            ))
            .await
            .expect("insert ticket");
    t.number = out.ticket_numbers[0];
    t
}

fn sample_user(name: &str) -> UserRecord {
    UserRecord {
        user: User {
            id: UserId::new(),
            username: name.to_string(),
            roles: vec![Role::Responder, Role::Manager],
            title: Some("CSO".into()),
            seniority: 5,
            on_duty: true,
            email: Some(format!("{name}@example.org")),
            disabled: false,
            clearances: vec![],
            created_at: now(),
        },
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        external_id: None,
    }
}

pub async fn ticket_round_trips_by_id_and_number(ts: &TestStore) {
    let mut sample = sample_ticket("Phishing mail <b>reported</b> 'quoted' \"x\"");
    sample.escalation_reason = Some("affects the critical production asset db-1".into());
    let t = create(&ts.store, sample).await;
    assert_eq!(t.number, 1);
    let by_id = ts.store.get_ticket(t.id).await.unwrap();
    let by_number = ts.store.get_ticket_by_number(t.number).await.unwrap();
    assert_eq!(by_id, by_number);
    assert_eq!(by_id, Ticket { version: 1, ..t });
    assert!(matches!(
        ts.store.get_ticket(TicketId::new()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        ts.store.get_ticket_by_number(999).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn ticket_numbers_are_unique_under_concurrent_creation(ts: &TestStore) {
    let mut handles = Vec::new();
    for i in 0..64 {
        let store = ts.store.clone();
        handles.push(tokio::spawn(async move {
            create(&store, sample_ticket(&format!("t{i}"))).await.number
        }));
    }
    let mut numbers: Vec<i64> = futures::future::join_all(handles)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 64, "numbers must be unique");
    assert!(numbers.iter().all(|n| *n >= 1));
}

pub async fn stale_update_is_a_conflict_and_changes_nothing(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("a")).await;
    let mut changed = t.clone();
    changed.status = TicketStatus::InProgress;
    changed.tags = vec!["new".into()];
    ts.store
        .commit(ChangeSet::new().op(Op::UpdateTicket {
            ticket: changed.clone(),
            expected_version: 1,
        }))
        .await
        .unwrap();
    let stored = ts.store.get_ticket(t.id).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.tags, ["new"]);
    changed.title = "lost update".into();
    let err = ts
        .store
        .commit(ChangeSet::new().op(Op::UpdateTicket {
            ticket: changed,
            expected_version: 1,
        }))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(ts.store.get_ticket(t.id).await.unwrap().title, "a");
}

pub async fn change_set_is_all_or_nothing(ts: &TestStore) {
    let before = ts.store.audit_entries(0, 1000).await.unwrap().len();
    let good = sample_ticket("should not exist");
    let mut missing = sample_ticket("missing");
    missing.number = 77;
    let err = ts
        .store
        .commit(
            ChangeSet::new()
                .op(Op::InsertTicket(good.clone()))
                .op(Op::UpdateTicket {
                    ticket: missing,
                    expected_version: 1,
                })
                .audit(AuditDraft::new("x", "ticket.created", "ticket", good.id).ticket(good.id)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_) | StoreError::NotFound),
        "{err:?}"
    );
    assert!(matches!(
        ts.store.get_ticket(good.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ts.store.audit_entries(0, 1000).await.unwrap().len(), before);
    // the store keeps working and the chain stays intact after a failed change set
    create(&ts.store, sample_ticket("after")).await;
    verify_chain(ts).await;
}

pub async fn list_filters_and_paginates_newest_first(ts: &TestStore) {
    for i in 0..25 {
        let mut t = sample_ticket(&format!("ticket {i}"));
        if i % 5 == 0 {
            t.severity = Severity::Critical;
            t.tags = vec!["ransomware".into()];
            t.description = "Encrypted FILES on share".into();
        }
        if i % 2 == 0 {
            t.assignee = Some("rita".into());
        }
        create(&ts.store, t).await;
    }
    let base = TicketFilter {
        limit: 10,
        ..Default::default()
    };
    let page1 = ts.store.list_tickets(&base).await.unwrap();
    assert_eq!(
        page1.iter().map(|t| t.number).collect::<Vec<_>>(),
        (16..=25).rev().collect::<Vec<_>>()
    );
    let page3 = ts
        .store
        .list_tickets(&TicketFilter {
            before_number: Some(6),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(page3.len(), 5);
    let crit = ts
        .store
        .list_tickets(&TicketFilter {
            severity: Some(Severity::Critical),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(crit.len(), 5);
    let tagged = ts
        .store
        .list_tickets(&TicketFilter {
            tag: Some("ransomware".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 5);
    let text = ts
        .store
        .list_tickets(&TicketFilter {
            text: Some("encrypted files".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(text.len(), 5, "text search is case-insensitive");
    let pct = ts
        .store
        .list_tickets(&TicketFilter {
            text: Some("%".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert!(pct.is_empty(), "LIKE wildcards in the query are literal");
    let assigned = ts
        .store
        .list_tickets(&TicketFilter {
            assignee: Some("rita".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(assigned.len(), 13);
    let open = ts
        .store
        .list_tickets(&TicketFilter {
            status: Some(TicketStatus::Closed),
            ..base.clone()
        })
        .await
        .unwrap();
    assert!(open.is_empty());
    let combined = ts
        .store
        .list_tickets(&TicketFilter {
            severity: Some(Severity::Critical),
            assignee: Some("rita".into()),
            ..base
        })
        .await
        .unwrap();
    assert_eq!(combined.len(), 3);
}

pub async fn list_respects_visibility(ts: &TestStore) {
    let mut secret = sample_ticket("secret");
    secret.restricted = true;
    create(&ts.store, secret).await;
    let mut mine = sample_ticket("mine");
    mine.created_by = "rep".into();
    mine.owner = "rep".into();
    create(&ts.store, mine).await;
    create(&ts.store, sample_ticket("public")).await;
    let list = |v: Visibility| {
        let store = ts.store.clone();
        async move {
            store
                .list_tickets(&TicketFilter {
                    limit: 50,
                    visible_to: Some(v),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(Visibility {
            username: "x".into(),
            restricted_ok: false,
            only_own: false
        })
        .await,
        ["public", "mine"]
    );
    assert_eq!(
        list(Visibility {
            username: "x".into(),
            restricted_ok: true,
            only_own: false
        })
        .await,
        ["public", "mine", "secret"]
    );
    assert_eq!(
        list(Visibility {
            username: "rep".into(),
            restricted_ok: false,
            only_own: true
        })
        .await,
        ["mine"]
    );
}

async fn verify_chain(ts: &TestStore) -> i64 {
    let cps = ts.store.checkpoints_after(0).await.unwrap();
    assert_eq!(
        ts.store.last_checkpoint().await.unwrap(),
        cps.last().cloned()
    );
    let mut v = ChainVerifier::new(ts.signer.verifying_key(), cps, None);
    let mut after = 0;
    loop {
        let batch = ts.store.audit_entries(after, 500).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            v.push(r).unwrap();
        }
        after = batch.last().unwrap().seq;
    }
    v.finish().unwrap().entries
}

pub async fn audit_chain_verifies_after_concurrent_commits(ts: &TestStore) {
    let mut handles = Vec::new();
    for i in 0..40 {
        let store = ts.store.clone();
        handles.push(tokio::spawn(async move {
            let t = create(&store, sample_ticket(&format!("c{i}"))).await;
            store
                .commit(ChangeSet::new().audit(
                    AuditDraft::new("rita", "log.note", "ticket", t.id)
                        .ticket(t.id)
                        .details(serde_json::json!({"text": format!("note {i} ünïcödé \u{1F512}"), "n": 1.5})),
                ))
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(verify_chain(ts).await, 80);
    let entries = ts.store.audit_entries(0, 1000).await.unwrap();
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
}

pub async fn ticket_timeline_holds_only_its_entries(ts: &TestStore) {
    let a = create(&ts.store, sample_ticket("a")).await;
    let b = create(&ts.store, sample_ticket("b")).await;
    for (t, text) in [(&a, "first"), (&b, "other"), (&a, "second")] {
        ts.store
            .commit(
                ChangeSet::new().audit(
                    AuditDraft::new("rita", "log.note", "ticket", t.id)
                        .ticket(t.id)
                        .details(serde_json::json!({"text": text})),
                ),
            )
            .await
            .unwrap();
    }
    let tl = ts.store.ticket_audit(a.id, 0, 100).await.unwrap();
    let actions: Vec<_> = tl
        .iter()
        .map(|e| (e.action.as_str(), e.details.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("ticket.created", "{}"),
            ("log.note", r#"{"text":"first"}"#),
            ("log.note", r#"{"text":"second"}"#)
        ]
    );
    let after = ts.store.ticket_audit(a.id, tl[1].seq, 100).await.unwrap();
    assert_eq!(after.len(), 1);
}

pub async fn users_are_unique_and_updatable(ts: &TestStore) {
    let u = sample_user("alice");
    ts.store
        .commit(ChangeSet::new().op(Op::InsertUser(u.clone())))
        .await
        .unwrap();
    let mut dup = sample_user("alice");
    dup.user.id = UserId::new();
    let err = ts
        .store
        .commit(ChangeSet::new().op(Op::InsertUser(dup)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let got = ts.store.get_user_by_name("alice").await.unwrap();
    assert_eq!(got.user, u.user);
    assert_eq!(got.password_hash, u.password_hash);
    assert_eq!(got.external_id, None);
    // users of an identity provider are found by their subject; a subject is unique
    let mut sso = sample_user("carol");
    sso.password_hash = None;
    sso.external_id = Some("https://idp sub-1".into());
    ts.store
        .commit(ChangeSet::new().op(Op::InsertUser(sso.clone())))
        .await
        .unwrap();
    let found = ts
        .store
        .get_user_by_external_id("https://idp sub-1")
        .await
        .unwrap();
    assert_eq!(found.user, sso.user);
    assert!(matches!(
        ts.store.get_user_by_external_id("https://idp sub-2").await,
        Err(StoreError::NotFound)
    ));
    let mut twin = sample_user("carol2");
    twin.external_id = Some("https://idp sub-1".into());
    assert!(matches!(
        ts.store
            .commit(ChangeSet::new().op(Op::InsertUser(twin)))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = u.user.clone();
    changed.roles = vec![Role::Auditor];
    changed.disabled = true;
    changed.clearances = vec!["restricted".into()];
    ts.store
        .commit(ChangeSet::new().op(Op::UpdateUser(changed.clone())))
        .await
        .unwrap();
    assert_eq!(ts.store.get_user(u.user.id).await.unwrap().user, changed);
    ts.store
        .commit(ChangeSet::new().op(Op::SetPassword {
            user_id: u.user.id,
            password_hash: "new".into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        ts.store
            .get_user(u.user.id)
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("new")
    );
    // alice and carol
    assert_eq!(ts.store.count_users().await.unwrap(), 2);
    assert_eq!(ts.store.list_users().await.unwrap().len(), 2);
    assert!(matches!(
        ts.store.get_user_by_name("bob").await,
        Err(StoreError::NotFound)
    ));
}

pub async fn first_user_is_created_once(ts: &TestStore) {
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = ts.store.clone();
        handles.push(tokio::spawn(async move {
            store
                .commit(ChangeSet::new().op(Op::InsertFirstUser(sample_user(&format!("admin{i}")))))
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(ts.store.count_users().await.unwrap(), 1);
}

pub async fn tokens_are_found_by_hash_and_revoked(ts: &TestStore) {
    let u = sample_user("svc");
    ts.store
        .commit(ChangeSet::new().op(Op::InsertUser(u.clone())))
        .await
        .unwrap();
    let tok = |hash: &str| TokenRecord {
        id: TokenId::new(),
        user_id: u.user.id,
        name: "sensor".into(),
        token_hash: hash.into(),
        scopes: vec![Scope::Intake, Scope::Read],
        created_at: now(),
        expires_at: Some(now() + time::Duration::days(1)),
        revoked_at: None,
        last_used_at: None,
    };
    let (t1, t2) = (tok("h1"), tok("h2"));
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::InsertToken(t1.clone()))
                .op(Op::InsertToken(t2.clone())),
        )
        .await
        .unwrap();
    assert_eq!(ts.store.get_token_by_hash("h1").await.unwrap(), t1);
    let (tok, user) = ts.store.get_token_with_user("h2").await.unwrap();
    assert_eq!((tok, user.user), (t2.clone(), u.user.clone()));
    assert!(matches!(
        ts.store.get_token_with_user("nope").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        ts.store.get_token_by_hash("nope").await,
        Err(StoreError::NotFound)
    ));
    let at = now();
    ts.store
        .commit(ChangeSet::new().op(Op::RevokeTokens {
            user_id: u.user.id,
            token_id: Some(t1.id),
            at,
        }))
        .await
        .unwrap();
    assert_eq!(
        ts.store.get_token_by_hash("h1").await.unwrap().revoked_at,
        Some(at)
    );
    assert_eq!(
        ts.store.get_token_by_hash("h2").await.unwrap().revoked_at,
        None
    );
    ts.store
        .commit(ChangeSet::new().op(Op::RevokeTokens {
            user_id: u.user.id,
            token_id: None,
            at,
        }))
        .await
        .unwrap();
    assert!(
        ts.store
            .list_tokens(u.user.id)
            .await
            .unwrap()
            .iter()
            .all(|t| t.revoked_at.is_some())
    );
}

pub async fn one_failing_change_set_does_not_fail_the_others(ts: &TestStore) {
    let target = create(&ts.store, sample_ticket("target")).await;
    let mut handles = Vec::new();
    for i in 0..60 {
        let store = ts.store.clone();
        let target = target.clone();
        handles.push(tokio::spawn(async move {
            if i % 10 == 0 {
                // stale: version 0 never matches, so this change set fails inside a batch
                let mut t = target.clone();
                t.title = format!("stale {i}");
                let res = store
                    .commit(
                        ChangeSet::new()
                            .op(Op::UpdateTicket {
                                ticket: t,
                                expected_version: 0,
                            })
                            .audit(
                                AuditDraft::new("x", "ticket.updated", "ticket", target.id)
                                    .ticket(target.id),
                            ),
                    )
                    .await;
                assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
                None
            } else {
                Some(
                    create(&store, sample_ticket(&format!("ok {i}")))
                        .await
                        .number,
                )
            }
        }));
    }
    let mut numbers: Vec<i64> = futures::future::join_all(handles)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(numbers.len(), 54);
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 54);
    for n in numbers {
        assert!(
            ts.store
                .get_ticket_by_number(n)
                .await
                .unwrap()
                .title
                .starts_with("ok ")
        );
    }
    assert_eq!(
        ts.store.get_ticket(target.id).await.unwrap().title,
        "target"
    );
    // 1 + 54 creations audited; the failed updates left no entry
    assert_eq!(verify_chain(ts).await, 55);
}

pub async fn access_list_grants_and_revokes_visibility(ts: &TestStore) {
    let mut secret = sample_ticket("secret");
    secret.restricted = true;
    let secret = create(&ts.store, secret).await;
    let vis = |who: &str| Visibility {
        username: who.into(),
        restricted_ok: false,
        only_own: false,
    };
    let count = |who: &'static str| {
        let store = ts.store.clone();
        async move {
            store
                .list_tickets(&TicketFilter {
                    limit: 10,
                    visible_to: Some(vis(who)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(count("sam").await, 0);
    assert!(!ts.store.has_ticket_access(secret.id, "sam").await.unwrap());
    let grant = Op::GrantTicketAccess {
        ticket_id: secret.id,
        username: "sam".into(),
        granted_by: "olga".into(),
        at: now(),
    };
    ts.store
        .commit(ChangeSet::new().op(grant.clone()))
        .await
        .unwrap();
    ts.store.commit(ChangeSet::new().op(grant)).await.unwrap(); // idempotent
    assert!(ts.store.has_ticket_access(secret.id, "sam").await.unwrap());
    let list = ts.store.ticket_access(secret.id).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|g| (g.username.as_str(), g.granted_by.as_str()))
            .collect::<Vec<_>>(),
        [("sam", "olga")]
    );
    assert_eq!(count("sam").await, 1);
    let revoke = Op::RevokeTicketAccess {
        ticket_id: secret.id,
        username: "sam".into(),
    };
    ts.store
        .commit(ChangeSet::new().op(revoke.clone()))
        .await
        .unwrap();
    assert!(matches!(
        ts.store.commit(ChangeSet::new().op(revoke)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(count("sam").await, 0);
}

/// A fixed instant with millisecond resolution, `offset_ms` after a base date.
fn at(offset_ms: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-03-01 12:00:00.123 UTC) + time::Duration::milliseconds(offset_ms)
}

const MINUTE: i64 = 60_000;

async fn commit_op(ts: &TestStore, op: Op) -> Result<(), StoreError> {
    ts.store.commit(ChangeSet::new().op(op)).await.map(|_| ())
}

async fn insert_user(ts: &TestStore, name: &str) -> UserRecord {
    let u = sample_user(name);
    commit_op(ts, Op::InsertUser(u.clone())).await.unwrap();
    u
}

pub async fn token_last_use_is_recorded(ts: &TestStore) {
    let u = insert_user(ts, "svc").await;
    let tok = |hash: &str, last_used_at| TokenRecord {
        id: TokenId::new(),
        user_id: u.user.id,
        name: "sensor".into(),
        token_hash: hash.into(),
        scopes: vec![],
        created_at: at(0),
        expires_at: None,
        revoked_at: None,
        last_used_at,
    };
    let (fresh, used) = (tok("fresh", None), tok("used", Some(at(1))));
    for t in [&fresh, &used] {
        commit_op(ts, Op::InsertToken(t.clone())).await.unwrap();
    }
    assert_eq!(ts.store.get_token_by_hash("fresh").await.unwrap(), fresh);
    assert_eq!(ts.store.get_token_by_hash("used").await.unwrap(), used);
    commit_op(
        ts,
        Op::TouchToken {
            token_id: fresh.id,
            at: at(MINUTE),
        },
    )
    .await
    .unwrap();
    let touched = TokenRecord {
        last_used_at: Some(at(MINUTE)),
        ..fresh
    };
    assert_eq!(ts.store.get_token_by_hash("fresh").await.unwrap(), touched);
    let (tok, user) = ts.store.get_token_with_user("fresh").await.unwrap();
    assert_eq!((tok, user.user), (touched.clone(), u.user.clone()));
    let listed = ts.store.list_tokens(u.user.id).await.unwrap();
    assert!(listed.contains(&touched) && listed.contains(&used));
    // an unknown token is not an error
    commit_op(
        ts,
        Op::TouchToken {
            token_id: TokenId::new(),
            at: at(MINUTE),
        },
    )
    .await
    .unwrap();
}

pub async fn sessions_are_found_touched_and_revoked(ts: &TestStore) {
    let u = insert_user(ts, "alice").await;
    let v = insert_user(ts, "bob").await;
    let session = |id_hash: &str, user: &UserRecord| SessionRecord {
        id_hash: id_hash.into(),
        user_id: user.user.id,
        csrf_token: format!("csrf-{id_hash}"),
        created_at: at(0),
        last_seen_at: at(0),
        expires_at: at(12 * 60 * MINUTE),
        mfa_pending: id_hash == "s2",
        client_addr: Some("192.0.2.7".into()),
        user_agent: (id_hash != "s3").then(|| "Mozilla/5.0 'quoted'".to_string()),
        revoked_at: None,
    };
    let (s1, s2, s3, s4) = (
        session("s1", &u),
        session("s2", &u),
        session("s3", &u),
        session("s4", &v),
    );
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::InsertSession(s1))
                .op(Op::InsertSession(s2.clone()))
                .op(Op::InsertSession(s3.clone()))
                .op(Op::InsertSession(s4)),
        )
        .await
        .unwrap();
    let get = |id: &'static str| {
        let store = ts.store.clone();
        async move { store.get_session_with_user(id).await.unwrap().0 }
    };
    let (got, user) = ts.store.get_session_with_user("s2").await.unwrap();
    assert_eq!((got, user.user), (s2, u.user.clone()));
    assert_eq!(get("s3").await, s3);
    assert!(matches!(
        ts.store.get_session_with_user("nope").await,
        Err(StoreError::NotFound)
    ));
    for id_hash in ["s1", "nope"] {
        commit_op(
            ts,
            Op::TouchSession {
                id_hash: id_hash.into(),
                at: at(MINUTE),
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(get("s1").await.last_seen_at, at(MINUTE));
    assert_eq!(get("s2").await.last_seen_at, at(0));
    let revoke = |only: Option<&str>, except: Option<&str>, t: i64| Op::RevokeSessions {
        user_id: u.user.id,
        only: only.map(str::to_string),
        except: except.map(str::to_string),
        at: at(t),
    };
    // `only` names one of the user's sessions; another user's session is out of reach
    commit_op(ts, revoke(Some("s2"), None, 1)).await.unwrap();
    commit_op(ts, revoke(Some("s4"), None, 1)).await.unwrap();
    let revoked = |s: &SessionRecord| s.revoked_at;
    assert_eq!(revoked(&get("s1").await), None);
    assert_eq!(revoked(&get("s2").await), Some(at(1)));
    assert_eq!(revoked(&get("s3").await), None);
    assert_eq!(revoked(&get("s4").await), None);
    // all but one; an already revoked session keeps its time
    commit_op(ts, revoke(None, Some("s1"), 2)).await.unwrap();
    assert_eq!(revoked(&get("s1").await), None);
    assert_eq!(revoked(&get("s2").await), Some(at(1)));
    assert_eq!(revoked(&get("s3").await), Some(at(2)));
    // all
    commit_op(ts, revoke(None, None, 3)).await.unwrap();
    assert_eq!(revoked(&get("s1").await), Some(at(3)));
    assert_eq!(revoked(&get("s3").await), Some(at(2)));
    assert_eq!(revoked(&get("s4").await), None);
}

pub async fn login_failures_count_lock_and_reset(ts: &TestStore) {
    let fail = |key: &str, t: i64, limit: i64| Op::LoginFailure {
        key: key.into(),
        at: at(t),
        window: time::Duration::minutes(15),
        limit,
        lock: time::Duration::minutes(5),
    };
    let state = |key: &'static str| {
        let store = ts.store.clone();
        async move {
            let rows = store.login_throttle(&[key.to_string()]).await.unwrap();
            assert!(rows.len() <= 1);
            rows.into_iter().next()
        }
    };
    let rec = |failures: i64, start: i64, locked: Option<i64>| ThrottleRecord {
        key: "user:alice".into(),
        failures,
        window_start: at(start),
        locked_until: locked.map(at),
    };
    let user = "user:alice";
    assert_eq!(state(user).await, None);
    commit_op(ts, fail(user, 0, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(1, 0, None)));
    commit_op(ts, fail(user, MINUTE, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(2, 0, None)));
    // reaching the limit locks until at + lock; each further failure extends the lock
    commit_op(ts, fail(user, 2 * MINUTE, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(3, 0, Some(7 * MINUTE))));
    commit_op(ts, fail(user, 3 * MINUTE, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(4, 0, Some(8 * MINUTE))));
    // still inside the window 1 ms before it ends
    commit_op(ts, fail(user, 15 * MINUTE - 1, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(5, 0, Some(20 * MINUTE - 1))));
    // a failure a full window after the window started begins a new count, unlocked
    commit_op(ts, fail(user, 15 * MINUTE, 3)).await.unwrap();
    assert_eq!(state(user).await, Some(rec(1, 15 * MINUTE, None)));
    // a limit of 1 locks on the first failure
    commit_op(ts, fail("addr:192.0.2.7", 0, 1)).await.unwrap();
    let both = ts
        .store
        .login_throttle(&[user.into(), "addr:192.0.2.7".into(), "addr:absent".into()])
        .await
        .unwrap();
    let mut keys: Vec<_> = both
        .iter()
        .map(|r| (r.key.as_str(), r.failures, r.locked_until))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            ("addr:192.0.2.7", 1, Some(at(5 * MINUTE))),
            ("user:alice", 1, None)
        ]
    );
    assert!(ts.store.login_throttle(&[]).await.unwrap().is_empty());
    commit_op(
        ts,
        Op::ClearLoginFailures {
            keys: vec![user.into(), "addr:absent".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(state(user).await, None);
    assert!(state("addr:192.0.2.7").await.is_some());
}

pub async fn totp_is_enrolled_enabled_and_steps_used_once(ts: &TestStore) {
    let u = insert_user(ts, "alice").await;
    let id = u.user.id;
    assert_eq!(ts.store.get_totp(id).await.unwrap(), None);
    let step = |step: i64| Op::UseTotpStep { user_id: id, step };
    for op in [Op::EnableTotp { user_id: id }, step(1)] {
        let res = commit_op(ts, op).await;
        assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    }
    let set = |secret: Option<&str>| Op::SetTotp {
        user_id: id,
        secret: secret.map(str::to_string),
    };
    let rec = |secret: &str, enabled: bool, last_step: i64| TotpRecord {
        user_id: id,
        secret: secret.into(),
        enabled,
        last_step,
    };
    commit_op(ts, set(Some("JBSWY3DPEHPK3PXP"))).await.unwrap();
    assert_eq!(
        ts.store.get_totp(id).await.unwrap(),
        Some(rec("JBSWY3DPEHPK3PXP", false, 0))
    );
    commit_op(ts, Op::EnableTotp { user_id: id }).await.unwrap();
    commit_op(ts, step(100)).await.unwrap();
    assert_eq!(
        ts.store.get_totp(id).await.unwrap(),
        Some(rec("JBSWY3DPEHPK3PXP", true, 100))
    );
    for replay in [100, 99] {
        let res = commit_op(ts, step(replay)).await;
        assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    }
    commit_op(ts, step(101)).await.unwrap();
    assert_eq!(ts.store.get_totp(id).await.unwrap().unwrap().last_step, 101);
    // enrolling again starts over
    commit_op(ts, set(Some("KRSXG5CTMVRXEZLU"))).await.unwrap();
    assert_eq!(
        ts.store.get_totp(id).await.unwrap(),
        Some(rec("KRSXG5CTMVRXEZLU", false, 0))
    );
    // removal, also when already removed
    commit_op(ts, set(None)).await.unwrap();
    assert_eq!(ts.store.get_totp(id).await.unwrap(), None);
    commit_op(ts, set(None)).await.unwrap();
}

pub async fn recovery_codes_are_spent_once(ts: &TestStore) {
    let u = insert_user(ts, "alice").await;
    let v = insert_user(ts, "bob").await;
    let id = u.user.id;
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 0);
    let set = |user_id: UserId, codes: &[&str]| Op::SetRecoveryCodes {
        user_id,
        code_hashes: codes.iter().map(|c| c.to_string()).collect(),
    };
    let spend = |user_id: UserId, code: &str| Op::UseRecoveryCode {
        user_id,
        code_hash: code.into(),
        at: at(0),
    };
    commit_op(ts, set(id, &["a", "b", "c"])).await.unwrap();
    commit_op(ts, set(v.user.id, &["x"])).await.unwrap();
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 3);
    commit_op(ts, spend(id, "a")).await.unwrap();
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 2);
    // spent, unknown, or another user's code
    for (user, code) in [(id, "a"), (id, "zzz"), (id, "x"), (v.user.id, "b")] {
        let res = commit_op(ts, spend(user, code)).await;
        assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    }
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 2);
    // a new set replaces the old one, spent codes included
    commit_op(ts, set(id, &["d", "e"])).await.unwrap();
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 2);
    let res = commit_op(ts, spend(id, "b")).await;
    assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    commit_op(ts, spend(id, "e")).await.unwrap();
    assert_eq!(ts.store.recovery_codes_left(id).await.unwrap(), 1);
    assert_eq!(ts.store.recovery_codes_left(v.user.id).await.unwrap(), 1);
}

pub async fn documents_list_oldest_first_and_blobs_are_stored_once(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("with evidence")).await;
    let other = create(&ts.store, sample_ticket("other")).await;
    let doc = |id: u128, ticket: TicketId, added: i64| DocumentRecord {
        id: DocumentId(uuid::Uuid::from_u128(id)),
        ticket_id: ticket,
        sha256: format!("{id:064x}"),
        size: 1024 * id as i64,
        filename: format!("mail {id}.eml"),
        content_type: "message/rfc822".into(),
        description: id
            .is_multiple_of(2)
            .then(|| "the reported mail".to_string()),
        source: Some("mailbox eve@example.org".into()),
        collection_notes: None,
        added_by: "rita".into(),
        added_at: at(added),
    };
    // d1 and d3 were added at the same time: the lower id (d3's) comes first
    let (d1, d2, d3) = (doc(2, t.id, 2000), doc(3, t.id, 0), doc(1, t.id, 2000));
    let d4 = doc(4, other.id, 0);
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::InsertDocument(d1.clone()))
                .op(Op::InsertDocument(d2.clone()))
                .op(Op::InsertDocument(d3.clone()))
                .op(Op::InsertDocument(d4.clone())),
        )
        .await
        .unwrap();
    assert_eq!(
        ts.store.list_documents(t.id).await.unwrap(),
        [d2, d3, d1.clone()]
    );
    assert_eq!(ts.store.list_documents(other.id).await.unwrap(), [d4]);
    assert!(
        ts.store
            .list_documents(TicketId::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ts.store.get_document(d1.id).await.unwrap(), d1);
    assert!(matches!(
        ts.store.get_document(DocumentId::new()).await,
        Err(StoreError::NotFound)
    ));
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let data = vec![0u8, 1, 2, 0xff, 0, 0x7f];
    let put = |data: Vec<u8>| Op::PutBlob {
        sha256: sha.into(),
        data,
    };
    commit_op(ts, put(data.clone())).await.unwrap();
    // the same address again is not an error, and the first bytes stay
    commit_op(ts, put(vec![9, 9])).await.unwrap();
    assert_eq!(ts.store.get_blob(sha).await.unwrap(), data);
    assert!(matches!(
        ts.store.get_blob("0000").await,
        Err(StoreError::NotFound)
    ));
}

/// A workflow record with a fixed id (`id`) and creation time (`created` ms after [`at`]).
fn workflow_record(
    id: u128,
    kind: &str,
    ticket_id: Option<TicketId>,
    parent: Option<u128>,
    status: &str,
    principal: Option<&str>,
    created: i64,
) -> WorkflowRecord {
    WorkflowRecord {
        id: uuid::Uuid::from_u128(id),
        kind: kind.into(),
        ticket_id,
        parent_id: parent.map(uuid::Uuid::from_u128),
        status: status.into(),
        principal: principal.map(str::to_string),
        data: format!(r#"{{"n":{id}}}"#),
        version: 1,
        created_at: at(created),
        updated_at: at(created),
    }
}

pub async fn workflow_records_filter_and_list_oldest_first(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("major incident")).await;
    let other = create(&ts.store, sample_ticket("other")).await;
    let rec = workflow_record;
    let mut e1 = rec(10, "emergency", Some(t.id), None, "open", Some("olga"), 0);
    // kept byte for byte: quotes, escapes, spacing, non-ASCII, a number as written
    e1.data = "{ \"title\": \"Ransomware on \\\"FS-01\\\"\", \"note\": \"Zürich ünïcödé \u{1F512} 日本\\n'x'\",\n  \"n\": 1.50 }".into();
    let e2 = rec(
        11,
        "emergency",
        Some(other.id),
        None,
        "closed",
        Some("rita"),
        1000,
    );
    // m1 and m2 were created at the same time: the lower id (m2's) comes first
    let m1 = rec(
        5,
        "meeting",
        Some(t.id),
        Some(10),
        "requested",
        Some("rita"),
        2000,
    );
    let m2 = rec(3, "meeting", Some(t.id), Some(10), "final", None, 2000);
    let m3 = rec(7, "meeting", None, Some(11), "requested", Some("rita"), 500);
    let n1 = rec(1, "notification", None, None, "requested", Some("olga"), 0);
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::InsertRecord(e1.clone()))
                .op(Op::InsertRecord(e2.clone()))
                .op(Op::InsertRecord(m1.clone()))
                .op(Op::InsertRecord(m2.clone()))
                .op(Op::InsertRecord(m3.clone()))
                // the stored version is 1 whatever the record says
                .op(Op::InsertRecord(WorkflowRecord {
                    version: 42,
                    ..n1.clone()
                })),
        )
        .await
        .unwrap();
    assert_eq!(ts.store.get_record(e1.id).await.unwrap(), e1);
    assert_eq!(ts.store.get_record(n1.id).await.unwrap(), n1);
    assert!(matches!(
        ts.store.get_record(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
    let list = |f: RecordFilter| {
        let store = ts.store.clone();
        async move { store.list_records(&f).await.unwrap() }
    };
    let kind = |k: &str| RecordFilter {
        kind: k.into(),
        ..Default::default()
    };
    assert_eq!(
        list(kind("meeting")).await,
        [m3.clone(), m2.clone(), m1.clone()]
    );
    assert_eq!(list(kind("emergency")).await, [e1.clone(), e2.clone()]);
    assert_eq!(list(kind("notification")).await, std::slice::from_ref(&n1));
    assert!(list(kind("status_report")).await.is_empty());
    let by_ticket = RecordFilter {
        ticket_id: Some(t.id),
        ..kind("meeting")
    };
    assert_eq!(list(by_ticket.clone()).await, [m2.clone(), m1.clone()]);
    assert!(
        list(RecordFilter {
            ticket_id: Some(other.id),
            ..kind("meeting")
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(RecordFilter {
            ticket_id: Some(other.id),
            ..kind("emergency")
        })
        .await,
        std::slice::from_ref(&e2)
    );
    let by_parent = |p: u128| RecordFilter {
        parent_id: Some(uuid::Uuid::from_u128(p)),
        ..kind("meeting")
    };
    assert_eq!(list(by_parent(10)).await, [m2.clone(), m1.clone()]);
    assert_eq!(list(by_parent(11)).await, std::slice::from_ref(&m3));
    assert!(list(by_parent(99)).await.is_empty());
    let requested = RecordFilter {
        status: Some("requested".into()),
        ..kind("meeting")
    };
    assert_eq!(list(requested.clone()).await, [m3.clone(), m1.clone()]);
    assert_eq!(
        list(RecordFilter {
            status: Some("closed".into()),
            ..kind("emergency")
        })
        .await,
        std::slice::from_ref(&e2)
    );
    assert_eq!(
        list(RecordFilter {
            principal: Some("rita".into()),
            ..kind("meeting")
        })
        .await,
        [m3.clone(), m1.clone()]
    );
    // another kind's records never match, whatever else does
    assert_eq!(
        list(RecordFilter {
            principal: Some("olga".into()),
            ..kind("emergency")
        })
        .await,
        std::slice::from_ref(&e1)
    );
    // every filter at once
    assert_eq!(
        list(RecordFilter {
            ticket_id: Some(t.id),
            parent_id: Some(e1.id),
            status: Some("requested".into()),
            principal: Some("rita".into()),
            ..kind("meeting")
        })
        .await,
        std::slice::from_ref(&m1)
    );
    assert!(
        list(RecordFilter {
            principal: Some("olga".into()),
            ..requested
        })
        .await
        .is_empty()
    );
    // limit: the oldest first; 0 means the default
    assert_eq!(
        list(RecordFilter {
            limit: 2,
            ..kind("meeting")
        })
        .await,
        [m3.clone(), m2.clone()]
    );
    assert_eq!(
        list(RecordFilter {
            limit: 1,
            ..by_ticket
        })
        .await,
        std::slice::from_ref(&m2)
    );
    assert_eq!(list(kind("meeting")).await.len(), 3);
    // the same id twice is a conflict; an unknown ticket is refused
    let res = commit_op(ts, Op::InsertRecord(m1.clone())).await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    let orphan = rec(20, "meeting", Some(TicketId::new()), None, "open", None, 0);
    assert!(
        commit_op(ts, Op::InsertRecord(orphan.clone()))
            .await
            .is_err()
    );
    assert!(matches!(
        ts.store.get_record(orphan.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ts.store.get_record(m1.id).await.unwrap(), m1);
}

pub async fn workflow_records_marker_moves_with_every_change(ts: &TestStore) {
    let kinds = ["marker_asset", "marker_rule"];
    let empty = ts.store.records_marker(&kinds).await.unwrap();
    assert_eq!(empty, crate::RecordsMarker::default());
    assert_eq!(
        ts.store.records_marker(&[]).await.unwrap(),
        crate::RecordsMarker::default()
    );
    let a = workflow_record(0x3a1, "marker_asset", None, None, "active", None, 0);
    commit_op(ts, Op::InsertRecord(a.clone())).await.unwrap();
    let one = ts.store.records_marker(&kinds).await.unwrap();
    let at0 = (at(0).unix_timestamp_nanos() / 1_000_000) as i64;
    assert_eq!(
        one,
        crate::RecordsMarker {
            count: 1,
            versions: 1,
            latest_update_ms: at0
        }
    );
    // another kind leaves it as it was
    commit_op(
        ts,
        Op::InsertRecord(workflow_record(
            0x3a2,
            "marker_other",
            None,
            None,
            "active",
            None,
            5,
        )),
    )
    .await
    .unwrap();
    assert_eq!(ts.store.records_marker(&kinds).await.unwrap(), one);
    // an update moves the versions and the latest time
    let edited = WorkflowRecord {
        status: "retired".into(),
        updated_at: at(MINUTE),
        ..a.clone()
    };
    commit_op(
        ts,
        Op::UpdateRecord {
            record: edited,
            expected_version: 1,
        },
    )
    .await
    .unwrap();
    let two = ts.store.records_marker(&kinds).await.unwrap();
    assert_eq!((two.count, two.versions), (1, 2));
    assert_eq!(two.latest_update_ms, at0 + MINUTE);
    // a record of the second kind is counted with the first
    commit_op(
        ts,
        Op::InsertRecord(workflow_record(
            0x3a3,
            "marker_rule",
            None,
            None,
            "active",
            None,
            2 * MINUTE,
        )),
    )
    .await
    .unwrap();
    let three = ts.store.records_marker(&kinds).await.unwrap();
    assert_eq!(
        three,
        crate::RecordsMarker {
            count: 2,
            versions: 3,
            latest_update_ms: at0 + 2 * MINUTE
        }
    );
    assert_eq!(
        ts.store
            .records_marker(&["marker_rule"])
            .await
            .unwrap()
            .count,
        1
    );
}

pub async fn workflow_record_updates_check_the_version(ts: &TestStore) {
    let t = create(&ts.store, sample_ticket("change control")).await;
    let cc = workflow_record(
        1,
        "change_control",
        Some(t.id),
        None,
        "requested",
        Some("rita"),
        0,
    );
    let sibling = workflow_record(2, "change_control", Some(t.id), None, "requested", None, 1);
    for r in [&cc, &sibling] {
        commit_op(ts, Op::InsertRecord(r.clone())).await.unwrap();
    }
    let update = |record: WorkflowRecord, expected_version: i64| Op::UpdateRecord {
        record,
        expected_version,
    };
    let approved = WorkflowRecord {
        status: "approved".into(),
        principal: Some("olga".into()),
        data: r#"{"approved_by":"olga","comment":"«ok» — \"go\""}"#.into(),
        updated_at: at(MINUTE),
        ..cc.clone()
    };
    commit_op(ts, update(approved.clone(), 1)).await.unwrap();
    let stored = ts.store.get_record(cc.id).await.unwrap();
    assert_eq!(
        stored,
        WorkflowRecord {
            version: 2,
            ..approved.clone()
        }
    );
    assert_eq!(stored.created_at, at(0));
    // only status, principal, data and updated_at change: the rest stays as inserted
    let done = WorkflowRecord {
        status: "done".into(),
        principal: None,
        data: "{}".into(),
        updated_at: at(2 * MINUTE),
        kind: "meeting".into(),
        created_at: at(5 * MINUTE),
        version: 99,
        ..approved.clone()
    };
    commit_op(ts, update(done, 2)).await.unwrap();
    let stored = ts.store.get_record(cc.id).await.unwrap();
    assert_eq!(
        stored,
        WorkflowRecord {
            status: "done".into(),
            principal: None,
            data: "{}".into(),
            updated_at: at(2 * MINUTE),
            version: 3,
            ..cc.clone()
        }
    );
    // a stale version is a conflict and changes nothing
    for stale in [1, 2, 4] {
        let res = commit_op(ts, update(approved.clone(), stale)).await;
        assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    }
    assert_eq!(ts.store.get_record(cc.id).await.unwrap(), stored);
    // an unknown record is not found
    let ghost = workflow_record(9, "change_control", None, None, "requested", None, 0);
    let res = commit_op(ts, update(ghost.clone(), 1)).await;
    assert!(matches!(res, Err(StoreError::NotFound)), "{res:?}");
    assert!(matches!(
        ts.store.get_record(ghost.id).await,
        Err(StoreError::NotFound)
    ));
    // the other record was not touched
    assert_eq!(ts.store.get_record(sibling.id).await.unwrap(), sibling);
    let listed = ts
        .store
        .list_records(&RecordFilter {
            kind: "change_control".into(),
            status: Some("done".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, [stored]);
}

pub fn sample_event(title: &str, at: OffsetDateTime) -> firebreak_domain::event::Event {
    use firebreak_domain::event::{Event, ObservableRef};
    let mut fields = serde_json::Map::new();
    fields.insert("src_ip".into(), serde_json::json!("10.0.0.1"));
    Event {
        id: uuid::Uuid::now_v7(),
        status: EventStatus::New,
        source: "suricata".into(),
        source_kind: SourceKind::Sensor,
        source_ref: Some("1234".into()),
        rule_id: Some("2100498".into()),
        title: title.into(),
        description: Some("GPL ATTACK_RESPONSE id check returned root".into()),
        severity: Severity::High,
        original_severity: Some("1".into()),
        occurred_at: at,
        received_at: at,
        last_seen: at,
        occurrences: 1,
        host: Some("sensor-1".into()),
        observables: vec![
            ObservableRef {
                kind: "ip".into(),
                value: "10.0.0.1".into(),
            },
            ObservableRef {
                kind: "domain".into(),
                value: "evil.example".into(),
            },
        ],
        assets: vec![],
        tags: vec!["ids".into()],
        fingerprint: "fp".into(),
        fields,
        reporter: None,
        reported_by: "sensor".into(),
        ticket_id: None,
        suppressed_by: None,
        classification: None,
        intel: vec![],
        disposition: None,
        resolved_at: None,
        raw: format!("{{\"title\":\"{title}\"}}"),
        version: 1,
    }
}

/// A new event under `key`, neither a resolution nor prepared.
pub fn new_event(
    e: firebreak_domain::event::Event,
    key: &str,
    window_start: OffsetDateTime,
) -> crate::NewEvent {
    crate::NewEvent {
        event: e,
        dedup_key: key.into(),
        window_start,
        resolve: false,
        details: None,
        packed: None,
    }
}

async fn ingest(ts: &TestStore, mut items: Vec<crate::NewEvent>) -> Vec<crate::Ingested> {
    // readied on the caller's thread as the intake does (a backend may pack them)
    for item in &mut items {
        ts.store.prepare_event(item).unwrap();
    }
    ts.store
        .commit(ChangeSet::new().op(Op::IngestEvents(items)))
        .await
        .unwrap()
        .ingested
}

/// One event under `key`, alone in its commit, with a window of the hour before `at`.
async fn ingest_in_hour(
    ts: &TestStore,
    e: firebreak_domain::event::Event,
    key: &str,
    at: OffsetDateTime,
) -> crate::Ingested {
    ingest(ts, vec![new_event(e, key, at - time::Duration::hours(1))]).await[0]
}

pub async fn events_dedup_inside_the_window_and_split_after_it(ts: &TestStore) {
    let t0 = now() - time::Duration::hours(2);
    let first = sample_event("first", t0);
    let r = ingest(
        ts,
        vec![new_event(
            first.clone(),
            "k1",
            t0 - time::Duration::hours(1),
        )],
    )
    .await;
    assert_eq!(r.len(), 1);
    assert!(r[0].created);
    assert_eq!(r[0].event_id, first.id);
    let stored = ts.store.get_event(first.id).await.unwrap();
    assert_eq!(stored, first, "an event round-trips whole");

    // a repeat inside the window (and two more in one op under another key) counts
    let t1 = t0 + time::Duration::minutes(10);
    let mut again = sample_event("again", t1);
    again.occurrences = 3;
    let other = sample_event("other", t1);
    let r = ingest(
        ts,
        vec![
            new_event(again.clone(), "k1", t1 - time::Duration::hours(1)),
            new_event(other.clone(), "k2", t1 - time::Duration::hours(1)),
        ],
    )
    .await;
    assert_eq!(r[0].event_id, first.id);
    assert!(!r[0].created);
    assert!(r[1].created);
    let stored = ts.store.get_event(first.id).await.unwrap();
    assert_eq!(stored.occurrences, 4);
    assert_eq!(stored.last_seen, t1);
    assert_eq!(stored.title, "first", "a repeat changes only the counters");
    assert!(ts.store.get_event(again.id).await.is_err());

    // the window slides with the event's last occurrence: 65 minutes after the key's first
    // event, but 55 after its last repeat, another repeat still counts
    let ts1 = t1 + time::Duration::minutes(55);
    let r = ingest_in_hour(ts, sample_event("slid", ts1), "k1", ts1).await;
    assert_eq!(r.event_id, first.id, "the window slides with the repeats");
    assert!(!r.created);
    let stored = ts.store.get_event(first.id).await.unwrap();
    assert_eq!((stored.occurrences, stored.last_seen), (5, ts1));

    // after the window, the same key starts a new event
    let t2 = ts1 + time::Duration::minutes(90);
    let late = sample_event("late", t2);
    let r = ingest_in_hour(ts, late.clone(), "k1", t2).await;
    assert!(r.created);
    assert_eq!(r.event_id, late.id);
    assert_eq!(ts.store.get_event(first.id).await.unwrap().occurrences, 5);
    // and the key stays with the new event
    let t2b = t2 + time::Duration::minutes(1);
    let r = ingest_in_hour(ts, sample_event("late again", t2b), "k1", t2b).await;
    assert_eq!((r.event_id, r.created), (late.id, false));
    assert_eq!(ts.store.get_event(late.id).await.unwrap().occurrences, 2);

    // concurrent ingestion of one key from many callers makes one event
    let t3 = t2 + time::Duration::minutes(1);
    let mut handles = Vec::new();
    for i in 0..16 {
        let store = ts.store.clone();
        let e = sample_event(&format!("c{i}"), t3);
        handles.push(tokio::spawn(async move {
            store
                .commit(ChangeSet::new().op(Op::IngestEvents(vec![new_event(
                    e,
                    "k3",
                    t3 - time::Duration::hours(1),
                )])))
                .await
                .unwrap()
                .ingested[0]
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let r = h.await.unwrap();
        ids.insert(r.event_id);
        created += usize::from(r.created);
    }
    assert_eq!(ids.len(), 1, "one event for one key");
    assert_eq!(created, 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(ts.store.get_event(id).await.unwrap().occurrences, 16);
}

pub async fn events_resolve_and_release_their_key(ts: &TestStore) {
    let t0 = now() - time::Duration::minutes(30);
    let firing = sample_event("firing", t0);
    ingest(
        ts,
        vec![new_event(
            firing.clone(),
            "am:1",
            t0 - time::Duration::hours(1),
        )],
    )
    .await;
    let t1 = t0 + time::Duration::minutes(5);
    let mut resolved = sample_event("resolved", t1);
    resolved.status = EventStatus::Resolved;
    resolved.resolved_at = Some(t1);
    let mut item = new_event(resolved.clone(), "am:1", t1 - time::Duration::hours(1));
    item.resolve = true;
    let r = ingest(ts, vec![item.clone()]).await;
    assert_eq!(r[0].event_id, firing.id);
    assert!(r[0].resolved && !r[0].created);
    let e = ts.store.get_event(firing.id).await.unwrap();
    assert_eq!(e.status, EventStatus::Resolved);
    assert_eq!(e.resolved_at, Some(t1));
    assert_eq!(e.version, 2);
    // the key is released: a new firing is a new event
    let again = sample_event("again", t1);
    let r = ingest(
        ts,
        vec![new_event(
            again.clone(),
            "am:1",
            t1 - time::Duration::hours(1),
        )],
    )
    .await;
    assert!(r[0].created);
    // a resolution nobody saw fire is kept as its own record
    let mut orphan = resolved.clone();
    orphan.id = uuid::Uuid::now_v7();
    let mut item = new_event(orphan.clone(), "am:never", t1 - time::Duration::hours(1));
    item.resolve = true;
    let r = ingest(ts, vec![item]).await;
    assert!(r[0].created && !r[0].resolved);
    assert_eq!(
        ts.store.get_event(orphan.id).await.unwrap().status,
        EventStatus::Resolved
    );
}

pub async fn events_list_filter_paginate_and_count(ts: &TestStore) {
    let t0 = now();
    let mut items = Vec::new();
    for i in 0..7 {
        let mut e = sample_event(&format!("event {i}"), t0);
        if i % 2 == 1 {
            e.source = "wazuh".into();
            e.reported_by = "other".into();
        }
        if i == 6 {
            e.status = EventStatus::Suppressed;
            e.title = "100% special_title".into();
        }
        items.push(new_event(e, &format!("list-{i}"), t0));
    }
    ingest(ts, items).await;
    let page1 = ts
        .store
        .list_events(&crate::EventFilter {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len(), 4);
    assert_eq!(page1[0].1.title, "100% special_title", "newest first");
    let page2 = ts
        .store
        .list_events(&crate::EventFilter {
            limit: 4,
            before_seq: Some(page1[3].0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 3);
    assert_eq!(page2[2].1.title, "event 0");
    let wazuh = ts
        .store
        .list_events(&crate::EventFilter {
            source: Some("wazuh".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(wazuh.len(), 3);
    let mine = ts
        .store
        .list_events(&crate::EventFilter {
            reported_by: Some("other".into()),
            status: Some(EventStatus::New),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 3);
    let text = ts
        .store
        .list_events(&crate::EventFilter {
            text: Some("100%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(text.len(), 1, "LIKE wildcards in the text match literally");
    let none = ts
        .store
        .list_events(&crate::EventFilter {
            text: Some("_special".into()),
            status: Some(EventStatus::New),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let mut counts = ts.store.count_events().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![(EventStatus::New, 6), (EventStatus::Suppressed, 1)]
    );
}

pub async fn event_updates_check_the_version(ts: &TestStore) {
    let t0 = now();
    let e = sample_event("to dismiss", t0);
    ingest(ts, vec![new_event(e.clone(), "upd", t0)]).await;
    let t = create(&ts.store, sample_ticket("target")).await;
    let mut changed = e.clone();
    changed.status = EventStatus::Ticketed;
    changed.ticket_id = Some(t.id);
    changed.disposition = Some(firebreak_domain::event::Disposition {
        by: "alice".into(),
        at: t0,
        reason: Some("opened a ticket".into()),
    });
    commit_op(
        ts,
        Op::UpdateEvent {
            event: Box::new(changed.clone()),
            expected_version: 1,
        },
    )
    .await
    .unwrap();
    let stored = ts.store.get_event(e.id).await.unwrap();
    assert_eq!(stored.status, EventStatus::Ticketed);
    assert_eq!(stored.ticket_id, Some(t.id));
    assert_eq!(stored.disposition, changed.disposition);
    assert_eq!(stored.version, 2);
    let stale = commit_op(
        ts,
        Op::UpdateEvent {
            event: Box::new(changed.clone()),
            expected_version: 1,
        },
    )
    .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let mut ghost = changed;
    ghost.id = uuid::Uuid::now_v7();
    let missing = commit_op(
        ts,
        Op::UpdateEvent {
            event: Box::new(ghost),
            expected_version: 1,
        },
    )
    .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let linked = ts
        .store
        .list_events(&crate::EventFilter {
            ticket_id: Some(t.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(linked.len(), 1);
}

pub async fn observables_link_events_and_tickets(ts: &TestStore) {
    use firebreak_domain::event::ObservableRef;
    let t0 = now();
    let a = sample_event("a", t0);
    let b = sample_event("b", t0 + time::Duration::seconds(1));
    ingest(
        ts,
        vec![
            new_event(a.clone(), "obs-a", t0),
            new_event(b.clone(), "obs-b", t0),
        ],
    )
    .await;
    let t = create(&ts.store, sample_ticket("phish")).await;
    let ip = ObservableRef {
        kind: "ip".into(),
        value: "10.0.0.1".into(),
    };
    let url = ObservableRef {
        kind: "url".into(),
        value: "https://evil.example/login".into(),
    };
    commit_op(
        ts,
        Op::LinkTicketObservables {
            ticket_id: t.id,
            observables: vec![ip.clone(), url.clone()],
            at: t0,
        },
    )
    .await
    .unwrap();
    // linking twice changes nothing
    commit_op(
        ts,
        Op::LinkTicketObservables {
            ticket_id: t.id,
            observables: vec![ip.clone()],
            at: t0,
        },
    )
    .await
    .unwrap();
    let rec = ts.store.get_observable(ip.id()).await.unwrap();
    assert_eq!((rec.kind.as_str(), rec.value.as_str()), ("ip", "10.0.0.1"));
    assert_eq!(rec.events, 2);
    assert_eq!(rec.tickets, 1);
    assert_eq!(
        ts.store.observable_tickets(ip.id()).await.unwrap(),
        vec![t.id]
    );
    assert_eq!(
        ts.store.observable_events(ip.id(), 10).await.unwrap(),
        vec![b.id, a.id]
    );
    let of_ticket = ts
        .store
        .list_observables(&crate::ObservableFilter {
            ticket_id: Some(t.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_ticket.len(), 2);
    let domains = ts
        .store
        .list_observables(&crate::ObservableFilter {
            kind: Some("domain".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].events, 2);
    let of_event = ts
        .store
        .list_observables(&crate::ObservableFilter {
            event_id: Some(a.id),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_event.len(), 1);
    let next = ts
        .store
        .list_observables(&crate::ObservableFilter {
            event_id: Some(a.id),
            after: Some((crate::to_millis(of_event[0].last_seen), of_event[0].id)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].id, of_event[0].id);
    assert!(matches!(
        ts.store.get_observable(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn observables_added_to_a_stored_event_are_linked_once(ts: &TestStore) {
    use firebreak_domain::event::ObservableRef;
    let t0 = now();
    let a = sample_event("a", t0);
    ingest(ts, vec![new_event(a.clone(), "late-obs", t0)]).await;
    let stored = ts.store.get_event(a.id).await.unwrap();
    let hash = ObservableRef {
        kind: "sha256".into(),
        value: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
    };
    // the ip was the event's from intake: linked again, it is counted once
    let ip = stored.observables[0].clone();
    assert_eq!(ip.kind, "ip");
    let mut updated = stored.clone();
    updated.observables.push(hash.clone());
    let later = t0 + time::Duration::minutes(5);
    ts.store
        .commit(
            ChangeSet::new()
                .op(Op::UpdateEvent {
                    event: Box::new(updated),
                    expected_version: stored.version,
                })
                .op(Op::LinkEventObservables {
                    event_id: a.id,
                    observables: vec![hash.clone(), ip.clone()],
                    at: later,
                }),
        )
        .await
        .unwrap();
    // twice changes nothing
    commit_op(
        ts,
        Op::LinkEventObservables {
            event_id: a.id,
            observables: vec![hash.clone()],
            at: later,
        },
    )
    .await
    .unwrap();
    let back = ts.store.get_event(a.id).await.unwrap();
    assert!(back.observables.contains(&hash), "{:?}", back.observables);
    assert_eq!(back.version, stored.version + 1);
    let rec = ts.store.get_observable(hash.id()).await.unwrap();
    assert_eq!(
        (rec.kind.as_str(), rec.events, rec.tickets),
        ("sha256", 1, 0)
    );
    assert_eq!(rec.last_seen, later);
    assert_eq!(ts.store.get_observable(ip.id()).await.unwrap().events, 1);
    assert_eq!(
        ts.store.observable_events(hash.id(), 10).await.unwrap(),
        vec![a.id]
    );
    assert_eq!(
        ts.store.observable_events(ip.id(), 10).await.unwrap(),
        vec![a.id]
    );
    let of_event = ts
        .store
        .list_observables(&crate::ObservableFilter {
            event_id: Some(a.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_event.len(), 3);
    assert!(of_event.iter().any(|o| o.id == hash.id()));
    // no such event: NotFound, and nothing of the change set is kept
    let url = ObservableRef {
        kind: "url".into(),
        value: "https://nowhere.example/".into(),
    };
    assert!(matches!(
        commit_op(
            ts,
            Op::LinkEventObservables {
                event_id: uuid::Uuid::now_v7(),
                observables: vec![url.clone()],
                at: later,
            },
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        ts.store.get_observable(url.id()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn suppression_hits_are_counted_from_events(ts: &TestStore) {
    let t0 = now();
    let rule = uuid::Uuid::now_v7();
    let mut e = sample_event("noise", t0);
    e.status = EventStatus::Suppressed;
    e.suppressed_by = Some(rule);
    ingest(ts, vec![new_event(e.clone(), "noise", t0)]).await;
    let mut again = sample_event("noise", t0 + time::Duration::seconds(5));
    again.status = EventStatus::Suppressed;
    again.suppressed_by = Some(rule);
    again.occurrences = 2;
    ingest(ts, vec![new_event(again, "noise", t0)]).await;
    let mut other = sample_event("other noise", t0);
    other.status = EventStatus::Suppressed;
    other.suppressed_by = Some(rule);
    ingest(ts, vec![new_event(other, "noise-2", t0)]).await;
    let hits = ts.store.suppression_hits().await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule_id, rule);
    assert_eq!(hits[0].events, 2);
    assert_eq!(hits[0].occurrences, 4);
    assert_eq!(hits[0].last_hit, t0 + time::Duration::seconds(5));
}

/// Every stored event and their count per status, checked against the maintained counters.
async fn events_as_counted(
    ts: &TestStore,
) -> (
    Vec<(i64, firebreak_domain::event::Event)>,
    std::collections::BTreeMap<EventStatus, i64>,
) {
    let all = ts
        .store
        .list_events(&crate::EventFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut truth: std::collections::BTreeMap<EventStatus, i64> = Default::default();
    for (_, e) in &all {
        *truth.entry(e.status).or_default() += 1;
    }
    let counted: std::collections::BTreeMap<EventStatus, i64> =
        ts.store.count_events().await.unwrap().into_iter().collect();
    assert_eq!(counted, truth, "the counters say what the events say");
    (all, truth)
}

/// The queue's counts and the rules' hits are maintained, not counted: after inserts,
/// repeats, a resolution and status changes they still equal what the events say.
pub async fn event_counters_follow_every_change(ts: &TestStore) {
    let t0 = now();
    let rule = uuid::Uuid::now_v7();
    let suppressed = |title: &str, at: OffsetDateTime, n: i64| {
        let mut e = sample_event(title, at);
        e.status = EventStatus::Suppressed;
        e.suppressed_by = Some(rule);
        e.occurrences = n;
        e
    };
    let a = sample_event("counted a", t0);
    let b = sample_event("counted b", t0);
    let c = sample_event("counted c", t0);
    ingest(
        ts,
        vec![
            new_event(a.clone(), "cnt-a", t0),
            new_event(b.clone(), "cnt-b", t0),
            new_event(c.clone(), "cnt-c", t0),
            new_event(suppressed("counted s", t0, 1), "cnt-s", t0),
        ],
    )
    .await;
    // a repeat of the suppressed one, and of b
    ingest(
        ts,
        vec![
            new_event(
                suppressed("counted s", t0 + time::Duration::seconds(9), 3),
                "cnt-s",
                t0,
            ),
            new_event(sample_event("counted b", t0), "cnt-b", t0),
        ],
    )
    .await;
    // c is resolved (Alertmanager), a is dismissed
    let mut res = new_event(sample_event("counted c", t0), "cnt-c", t0);
    res.resolve = true;
    ingest(ts, vec![res]).await;
    let mut dismissed = ts.store.get_event(a.id).await.unwrap();
    dismissed.status = EventStatus::Dismissed;
    commit_op(
        ts,
        Op::UpdateEvent {
            expected_version: dismissed.version,
            event: Box::new(dismissed),
        },
    )
    .await
    .unwrap();

    let (all, truth) = events_as_counted(ts).await;
    let (mut hits, mut occurrences, mut last) = (0i64, 0i64, None);
    for (_, e) in &all {
        if e.suppressed_by == Some(rule) {
            hits += 1;
            occurrences += e.occurrences;
            last = last.max(Some(e.last_seen));
        }
    }
    assert_eq!(truth.get(&EventStatus::Dismissed), Some(&1));
    assert_eq!(truth.get(&EventStatus::Resolved), Some(&1));
    let h = ts.store.suppression_hits().await.unwrap();
    let mine: Vec<_> = h.iter().filter(|x| x.rule_id == rule).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].events, mine[0].occurrences), (hits, occurrences));
    assert_eq!((hits, occurrences), (1, 4));
    assert_eq!(Some(mine[0].last_hit), last);
}

/// One change set whose second op repeats and resolves events its first op created, under a
/// suppression rule never counted before: the counters still equal what the events say.
pub async fn event_counters_hold_when_one_change_set_repeats_and_resolves_its_own_events(
    ts: &TestStore,
) {
    let t0 = now();
    let rule = uuid::Uuid::now_v7();
    let suppressed = |title: &str, n: i64| {
        let mut e = sample_event(title, t0);
        e.status = EventStatus::Suppressed;
        e.suppressed_by = Some(rule);
        e.occurrences = n;
        e
    };
    let mut resolution = new_event(sample_event("own r", t0), "own-r", t0);
    resolution.resolve = true;
    let r = ts
        .store
        .commit(
            ChangeSet::new()
                .op(Op::IngestEvents(vec![
                    new_event(suppressed("own s", 1), "own-s", t0),
                    new_event(sample_event("own r", t0), "own-r", t0),
                    new_event(sample_event("own n", t0), "own-n", t0),
                ]))
                .op(Op::IngestEvents(vec![
                    new_event(suppressed("own s", 2), "own-s", t0),
                    resolution,
                ])),
        )
        .await
        .unwrap()
        .ingested;
    assert_eq!(r.len(), 5);
    assert!(r[0].created && !r[3].created && r[3].event_id == r[0].event_id);
    assert!(r[4].resolved && r[4].event_id == r[1].event_id);
    let (_, truth) = events_as_counted(ts).await;
    assert_eq!(truth.get(&EventStatus::Resolved), Some(&1));
    let h = ts.store.suppression_hits().await.unwrap();
    let mine: Vec<_> = h.iter().filter(|x| x.rule_id == rule).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].events, mine[0].occurrences), (1, 3));
    assert!(ts.store.integrity_check().await.unwrap().is_empty());
}

pub async fn ticket_facts_list_the_tickets_opened_since(ts: &TestStore) {
    let old = create(&ts.store, sample_ticket("facts old")).await;
    let since = old.created_at + time::Duration::milliseconds(1);
    let mut t = sample_ticket("facts new");
    t.created_at = since + time::Duration::seconds(1);
    t.updated_at = t.created_at;
    t.problem_category = Some("phishing".into());
    let new = create(&ts.store, t).await;
    let facts = ts.store.ticket_facts(since).await.unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}");
    assert_eq!(facts[0].created_at, new.created_at);
    assert_eq!(facts[0].status, new.status);
    assert_eq!(facts[0].criticality, new.criticality);
    assert_eq!(facts[0].source_kind, new.source.kind.as_str());
    assert_eq!(facts[0].problem_category.as_deref(), Some("phishing"));
    assert!(!facts[0].false_positive);
    assert_eq!(
        ts.store.ticket_facts(old.created_at).await.unwrap().len(),
        2
    );
}
