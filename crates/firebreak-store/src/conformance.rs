//! The conformance suite: the same behaviour asserted against every backend. A backend's test
//! binary instantiates it with `store_conformance_suite!(factory)`, where `factory()` returns a
//! fresh, migrated, empty [`TestStore`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a failure is a panic"
)]

use crate::{
    AuditSigner, ChangeSet, DynStore, Op, StoreError, TicketFilter, TokenRecord, UserRecord,
    Visibility,
};
use firebreak_domain::audit::{AuditDraft, ChainVerifier};
use firebreak_domain::ids::{TicketId, TokenId, UserId};
use firebreak_domain::role::{Role, Scope};
use firebreak_domain::ticket::*;
use firebreak_domain::user::User;
use std::sync::Arc;
use time::OffsetDateTime;

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
    }
}

pub async fn ticket_round_trips_by_id_and_number(ts: &TestStore) {
    let t = create(
        &ts.store,
        sample_ticket("Phishing mail <b>reported</b> 'quoted' \"x\""),
    )
    .await;
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
    assert_eq!(ts.store.count_users().await.unwrap(), 1);
    assert_eq!(ts.store.list_users().await.unwrap().len(), 1);
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
