//! Conformance of [`crate::SearchStore`]: what matches (every field kind, literally, ignoring
//! ASCII case), the order, visibility and keyset paging.

use super::{TestStore, commit_op, create, ingest, new_event, sample_event, sample_ticket};
use crate::{
    ChangeSet, Op, SearchEvents, SearchField, SearchFilter, SearchHit, SearchPosition,
    SearchTickets, Visibility,
};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::event::ObservableRef;
use firebreak_domain::ticket::Ticket;

fn everything(text: &str) -> SearchFilter {
    SearchFilter {
        text: text.into(),
        tickets: Some(SearchTickets::default()),
        events: Some(SearchEvents::default()),
        observables: true,
        limit: 100,
        ..Default::default()
    }
}

async fn search(ts: &TestStore, f: &SearchFilter) -> Vec<SearchHit> {
    ts.store.search(f).await.unwrap()
}

async fn titles(ts: &TestStore, f: &SearchFilter) -> Vec<String> {
    search(ts, f).await.into_iter().map(|h| h.title).collect()
}

async fn log(ts: &TestStore, t: &Ticket, action: &str, text: &str) {
    ts.store
        .commit(
            ChangeSet::new().audit(
                AuditDraft::new("rita", action, "ticket", t.id)
                    .ticket(t.id)
                    .details(serde_json::json!({"kind": "note", "text": text})),
            ),
        )
        .await
        .unwrap();
}

pub async fn search_matches_every_field_literally_in_order(ts: &TestStore) {
    let t0 = super::now();
    let mut a = sample_ticket("Kestrel phishing wave");
    a.description = "plain".into();
    let a = create(&ts.store, a).await;
    let mut b = sample_ticket("quiet");
    b.description = "mail from the KESTREL domain, 100% sure, a_b and C:\\temp".into();
    let b = create(&ts.store, b).await;
    let mut c = sample_ticket("only in the log");
    c.description = "nothing".into();
    let c = create(&ts.store, c).await;
    log(ts, &c, "log.note", "called the kestrel owner").await;
    log(ts, &c, "log.action", "second kestrel entry").await;
    // an entry that is not an incident-log note is not searched
    let d = create(&ts.store, sample_ticket("unrelated")).await;
    log(ts, &d, "ticket.updated", "kestrel in a change").await;
    let mut ev = sample_event("ET kestrel beacon", t0);
    ev.host = Some("web-1".into());
    let mut by_host = sample_event("alert", t0 + time::Duration::seconds(1));
    by_host.host = Some("kestrel-host".into());
    let mut by_source = sample_event("other alert", t0 + time::Duration::seconds(2));
    by_source.source = "kestrel-ids".into();
    by_source.host = None;
    let mut none = sample_event("no match", t0 + time::Duration::seconds(3));
    none.host = Some("db-1".into());
    ingest(
        ts,
        vec![
            new_event(ev, "s1", t0),
            new_event(by_host, "s2", t0),
            new_event(by_source, "s3", t0),
            new_event(none, "s4", t0),
        ],
    )
    .await;
    commit_op(
        ts,
        Op::LinkTicketObservables {
            ticket_id: a.id,
            observables: vec![
                ObservableRef {
                    kind: "domain".into(),
                    value: "kestrel.example".into(),
                },
                ObservableRef {
                    kind: "domain".into(),
                    value: "b-kestrel.example".into(),
                },
                ObservableRef {
                    kind: "domain".into(),
                    value: "harmless.example".into(),
                },
            ],
            at: t0,
        },
    )
    .await
    .unwrap();

    // case-insensitive substring, tickets newest first, then events newest first, then
    // observables by value
    let hits = search(ts, &everything("kEsTrEl")).await;
    let got: Vec<(&str, SearchField, &str)> = hits
        .iter()
        .map(|h| (h.title.as_str(), h.field, h.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "only in the log",
                SearchField::Log,
                "called the kestrel owner"
            ),
            ("quiet", SearchField::Description, b.description.as_str()),
            (
                "Kestrel phishing wave",
                SearchField::Title,
                "Kestrel phishing wave"
            ),
            ("other alert", SearchField::Source, "kestrel-ids"),
            ("alert", SearchField::Host, "kestrel-host"),
            ("ET kestrel beacon", SearchField::Title, "ET kestrel beacon"),
            ("b-kestrel.example", SearchField::Value, "b-kestrel.example"),
            ("kestrel.example", SearchField::Value, "kestrel.example"),
        ]
    );
    assert_eq!(hits[0].position, SearchPosition::Ticket(c.number));
    assert_eq!(hits[0].id, c.id.0);
    assert!(matches!(hits[3].position, SearchPosition::Event(_)));
    assert_eq!(hits[3].reported_by.as_deref(), Some("sensor"));
    assert_eq!(hits[6].kind.as_deref(), Some("domain"));

    // the number, exactly
    let mut f = everything("zzz-nothing");
    f.number = Some(a.number);
    let hits = search(ts, &f).await;
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].id, hits[0].field), (a.id.0, SearchField::Number));

    // LIKE wildcards in the text are literal
    assert_eq!(titles(ts, &everything("100%")).await, ["quiet"]);
    assert_eq!(titles(ts, &everything("0% s")).await, ["quiet"]);
    assert!(titles(ts, &everything("100%%")).await.is_empty());
    assert_eq!(titles(ts, &everything("a_b")).await, ["quiet"]);
    assert!(titles(ts, &everything("a_c")).await.is_empty());
    assert!(titles(ts, &everything("ke_trel")).await.is_empty());
    assert_eq!(titles(ts, &everything("%")).await, ["quiet"]);
    assert_eq!(titles(ts, &everything("_")).await, ["quiet"]);
    assert_eq!(titles(ts, &everything("C:\\temp")).await, ["quiet"]);
    assert!(titles(ts, &everything("C:\\\\temp")).await.is_empty());
    assert_eq!(titles(ts, &everything("\\")).await, ["quiet"]);

    // only the kinds asked for
    let mut f = everything("kestrel");
    f.tickets = None;
    f.observables = false;
    assert_eq!(
        titles(ts, &f).await,
        ["other alert", "alert", "ET kestrel beacon"]
    );
    f.events = Some(SearchEvents {
        reported_by: Some("someone-else".into()),
    });
    assert!(titles(ts, &f).await.is_empty());
}

pub async fn search_respects_visibility_and_pages_each_hit_once(ts: &TestStore) {
    let mut secret = sample_ticket("osprey secret");
    secret.restricted = true;
    let secret = create(&ts.store, secret).await;
    let mut quiet_secret = sample_ticket("restricted, log only");
    quiet_secret.restricted = true;
    let quiet_secret = create(&ts.store, quiet_secret).await;
    log(ts, &quiet_secret, "log.evidence", "osprey in the evidence").await;
    let mut mine = sample_ticket("osprey mine");
    mine.created_by = "rep".into();
    mine.owner = "rep".into();
    create(&ts.store, mine).await;
    for i in 0..5 {
        create(&ts.store, sample_ticket(&format!("osprey public {i}"))).await;
    }
    let t0 = super::now();
    let events = (0..4)
        .map(|i| {
            new_event(
                sample_event(&format!("osprey event {i}"), t0),
                &format!("v{i}"),
                t0,
            )
        })
        .collect();
    ingest(ts, events).await;
    let obs = (0..3)
        .map(|i| ObservableRef {
            kind: "domain".into(),
            value: format!("osprey{i}.example"),
        })
        .collect();
    commit_op(
        ts,
        Op::LinkTicketObservables {
            ticket_id: secret.id,
            observables: obs,
            at: t0,
        },
    )
    .await
    .unwrap();

    let with = |v: Visibility, also| {
        let mut f = everything("OSPREY");
        f.tickets = Some(SearchTickets {
            visible_to: Some(v),
            also,
        });
        f.events = None;
        f.observables = false;
        f
    };
    let outsider = Visibility {
        username: "x".into(),
        restricted_ok: false,
        only_own: false,
    };
    let seen = titles(ts, &with(outsider.clone(), vec![])).await;
    assert_eq!(seen.len(), 6);
    assert!(
        !seen
            .iter()
            .any(|t| t.contains("secret") || t.contains("log only")),
        "{seen:?}"
    );
    // a ticket visible besides (an emergency's team)
    let seen = titles(ts, &with(outsider, vec![quiet_secret.id])).await;
    assert!(seen.iter().any(|t| t == "restricted, log only"), "{seen:?}");
    assert_eq!(seen.len(), 7);
    let cleared = Visibility {
        username: "x".into(),
        restricted_ok: true,
        only_own: false,
    };
    assert_eq!(titles(ts, &with(cleared, vec![])).await.len(), 8);
    let reporter = Visibility {
        username: "rep".into(),
        restricted_ok: false,
        only_own: true,
    };
    assert_eq!(titles(ts, &with(reporter, vec![])).await, ["osprey mine"]);

    // paging: two at a time through tickets, events and observables, each hit once
    let all = search(ts, &everything("osprey")).await;
    assert_eq!(all.len(), 8 + 4 + 3);
    let mut paged = Vec::new();
    let mut f = everything("osprey");
    f.limit = 2;
    loop {
        let page = search(ts, &f).await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        f.after = Some(last.position.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
}
