//! `GET /api/v1/search`: every field kind, literal wildcards, the listings' visibility
//! (reporters, restricted tickets and their logs, observables), bad parameters and paging.

use crate::*;
use serde_json::json;

impl TestApp {
    async fn search(&self, token: &str, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/search?{query}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }

    /// `(type, title)` of every hit of `q`.
    async fn hits(&self, token: &str, q: &str) -> Vec<(String, String)> {
        let q = form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
        self.search(token, &format!("q={q}&limit=100"))
            .await
            .iter()
            .map(|i| {
                (
                    i["type"].as_str().unwrap().to_string(),
                    i["title"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn ticket(&self, token: &str, body: Value) -> String {
        let r = self.post("/api/v1/tickets", token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["number"].as_str().unwrap().to_string()
    }

    async fn note(&self, token: &str, number: &str, text: &str) {
        let r = self
            .post(
                &format!("/api/v1/tickets/{number}/log"),
                token,
                json!({ "text": text }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    /// An event through the generic webhook of `source`, reported by the token's user.
    async fn webhook(&self, token: &str, source: &str, body: Value) {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/api/v1/ingest/webhook/{source}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = self.raw(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    async fn report(&self, token: &str, title: &str) {
        let r = self
            .post("/api/v1/events", token, json!({ "title": title }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

fn strs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn search_finds_tickets_events_and_observables_by_every_field() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let bot = t.user("bot", &[Role::Reporter]).await;
    let a = t
        .ticket(&rita, json!({"title": "Kestrel phishing wave"}))
        .await;
    t.ticket(
        &rita,
        json!({"title": "quiet", "description": "mail from the KESTREL domain"}),
    )
    .await;
    let c = t.ticket(&rita, json!({"title": "only in the log"})).await;
    let long = format!(
        "{} called the kestrel owner {}",
        "x".repeat(300),
        "y".repeat(300)
    );
    t.note(&rita, &c, &long).await;
    let d = t.ticket(&rita, json!({"title": "numbered"})).await;
    let r = t
        .post(
            &format!("/api/v1/tickets/{a}/observables"),
            &rita,
            json!({"value": "kestrel.example", "kind": "domain"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    t.webhook(&bot, "grafana", json!({"title": "ET kestrel beacon"}))
        .await;
    t.webhook(
        &bot,
        "grafana",
        json!({"title": "disk alert", "host": "kestrel-host"}),
    )
    .await;
    t.webhook(&bot, "kestrel-ids", json!({"title": "other alert"}))
        .await;

    let items = t.search(&rita, "q=KESTREL").await;
    let got: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap(),
                i["title"].as_str().unwrap(),
                i["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ticket", "only in the log", "log"),
            ("ticket", "quiet", "description"),
            ("ticket", "Kestrel phishing wave", "title"),
            ("event", "other alert", "source"),
            ("event", "disk alert", "host"),
            ("event", "ET kestrel beacon", "title"),
            ("observable", "kestrel.example", "value"),
        ]
    );
    // tickets carry their number; the log hit's snippet is around the match in the entry
    assert_eq!(items[0]["number"], c.as_str());
    assert_eq!(items[2]["number"], a.as_str());
    assert!(items[3].get("number").is_none(), "{}", items[3]);
    let snip = items[0]["snippet"].as_str().unwrap();
    assert!(snip.contains("called the kestrel owner"), "{snip}");
    assert!(snip.chars().count() <= 162, "{snip}");
    assert!(snip.starts_with('…') && snip.ends_with('…'), "{snip}");
    assert_eq!(items[1]["snippet"], "mail from the KESTREL domain");
    assert_eq!(items[6]["observable_kind"], "domain");
    // each id leads to its object
    let ev = t
        .get(
            &format!("/api/v1/events/{}", items[4]["id"].as_str().unwrap()),
            &rita,
        )
        .await;
    assert_eq!(ev.body["host"], "kestrel-host");
    let ob = t
        .get(
            &format!("/api/v1/observables/{}", items[6]["id"].as_str().unwrap()),
            &rita,
        )
        .await;
    assert_eq!(ob.status, StatusCode::OK, "{}", ob.body);

    // the number, as shown or bare
    let digits = d.trim_start_matches("SEC-");
    for q in [
        d.as_str(),
        &d.to_lowercase(),
        digits,
        digits.trim_start_matches('0'),
    ] {
        if q.len() < 2 {
            continue;
        }
        let items = t.search(&rita, &format!("q={q}")).await;
        assert_eq!(items.len(), 1, "{q}: {items:?}");
        assert_eq!(
            (&items[0]["number"], &items[0]["field"]),
            (&json!(d), &json!("number"))
        );
    }
}

#[tokio::test]
async fn search_wildcards_are_literal() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    t.ticket(&rita, json!({"title": "100% sure"})).await;
    t.ticket(&rita, json!({"title": "1000 sure"})).await;
    t.ticket(&rita, json!({"title": "path a_b"})).await;
    t.ticket(&rita, json!({"title": "path axb"})).await;
    t.ticket(&rita, json!({"title": "dir C:\\temp"})).await;
    t.ticket(&rita, json!({"title": "dir C:Xtemp"})).await;
    assert_eq!(
        t.hits(&rita, "100%").await,
        strs(&[("ticket", "100% sure")])
    );
    assert_eq!(t.hits(&rita, "a_b").await, strs(&[("ticket", "path a_b")]));
    assert_eq!(
        t.hits(&rita, "C:\\t").await,
        strs(&[("ticket", "dir C:\\temp")])
    );
    assert!(t.hits(&rita, "%%").await.is_empty());
    assert!(t.hits(&rita, "__").await.is_empty());
}

#[tokio::test]
async fn search_shows_only_what_the_caller_may_see() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let sam = t.user("sam", &[Role::Responder]).await;
    let admin = t.user("root", &[Role::Admin]).await;
    let erin = t.user("erin", &[Role::Reporter]).await;
    let frank = t.user("frank", &[Role::Reporter]).await;
    let secret = t
        .ticket(
            &rita,
            json!({"title": "osprey insider", "restricted": true}),
        )
        .await;
    t.note(&rita, &secret, "the hidden heron note").await;
    let r = t
        .post(
            &format!("/api/v1/tickets/{secret}/observables"),
            &rita,
            json!({"value": "osprey-insider.example", "kind": "domain"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    t.ticket(&rita, json!({"title": "osprey public"})).await;
    t.report(&erin, "osprey from erin").await;
    t.report(&frank, "osprey from frank").await;

    // the creator, the admin: everything
    let all = strs(&[
        ("ticket", "osprey public"),
        ("ticket", "osprey insider"),
        ("event", "osprey from frank"),
        ("event", "osprey from erin"),
        ("observable", "osprey-insider.example"),
    ]);
    assert_eq!(t.hits(&rita, "osprey").await, all);
    assert_eq!(t.hits(&admin, "osprey").await, all);
    // another responder: not the restricted ticket, not through its log, not its observable
    assert_eq!(
        t.hits(&sam, "osprey").await,
        strs(&[
            ("ticket", "osprey public"),
            ("event", "osprey from frank"),
            ("event", "osprey from erin"),
        ])
    );
    assert!(t.hits(&sam, "hidden heron").await.is_empty());
    assert!(t.hits(&sam, &secret).await.is_empty());
    assert_eq!(
        t.hits(&rita, "hidden heron").await,
        strs(&[("ticket", "osprey insider")])
    );
    // reporters: their own events only, no tickets they are not involved in, no observables
    assert_eq!(
        t.hits(&erin, "osprey").await,
        strs(&[("event", "osprey from erin")])
    );
    assert_eq!(
        t.hits(&frank, "osprey").await,
        strs(&[("event", "osprey from frank")])
    );
    // once granted access, the restricted ticket and its log are found
    let r = t
        .post(
            &format!("/api/v1/tickets/{secret}/access"),
            &admin,
            json!({"username": "sam"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        t.hits(&sam, "hidden heron").await,
        strs(&[("ticket", "osprey insider")])
    );
    // no token: 401 in the envelope
    let r = t.call("GET", "/api/v1/search?q=osprey", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn search_refuses_bad_parameters_naming_them() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let long = "x".repeat(257);
    let wrong_kind = base64_url("t:5");
    // as on the other lists: a query string that does not parse is 400 `invalid_query`, a
    // value out of bounds 422 `validation_failed`; both name the parameter
    let (parse, value) = (
        (StatusCode::BAD_REQUEST, "invalid_query"),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    );
    let cases = [
        ("", "q", value),
        ("q=", "q", value),
        ("q=%20%20", "q", value),
        ("q=a", "q", value),
        ("q=%20a%20", "q", value),
        (&format!("q={long}") as &str, "q", value),
        ("q=ab%07cd", "q", value),
        ("q=ab&limit=0", "limit", value),
        ("q=ab&limit=101", "limit", value),
        ("q=ab&limit=abc", "limit", parse),
        ("q=ab&limit=-1", "limit", parse),
        ("q=ab&cursor=garbage!", "cursor", value),
        (&format!("q=ab&cursor={wrong_kind}"), "cursor", value),
        ("q=ab&nonsense=1", "nonsense", parse),
    ];
    for (query, field, (status, code)) in cases {
        let r = t.get(&format!("/api/v1/search?{query}"), &rita).await;
        assert_eq!(
            assert_error(&r, status, code).as_deref(),
            Some(field),
            "{query}"
        );
    }
    // the bounds themselves are fine
    for query in [
        format!("q={}", "x".repeat(256)),
        "q=ab&limit=1".into(),
        "q=ab&limit=100".into(),
        "q=ab&cursor=".into(),
    ] {
        let r = t.get(&format!("/api/v1/search?{query}"), &rita).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    }
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn search_pages_with_the_cursor_return_each_item_once() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let erin = t.user("erin", &[Role::Reporter]).await;
    let sam = t.user("sam", &[Role::Responder]).await;
    for i in 0..5 {
        t.ticket(&rita, json!({"title": format!("paged ticket {i}")}))
            .await;
    }
    // hidden from sam: pages skip them and keep going
    for i in 0..4 {
        t.ticket(
            &rita,
            json!({"title": format!("paged secret {i}"), "restricted": true}),
        )
        .await;
    }
    for i in 0..4 {
        t.report(&erin, &format!("paged event {i}")).await;
    }
    let full = t.search(&sam, "q=paged&limit=100").await;
    assert_eq!(full.len(), 9, "{full:?}");
    let mut seen = Vec::new();
    let mut query = "q=paged&limit=2".to_string();
    let mut pages = 0;
    loop {
        let r = t.get(&format!("/api/v1/search?{query}"), &sam).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().cloned());
        pages += 1;
        assert!(pages < 20, "the cursor does not move on");
        match r.body["next_cursor"].as_str() {
            Some(c) => query = format!("q=paged&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, full, "every item once, in order");
    assert!(
        !seen
            .iter()
            .any(|i| i["title"].as_str().unwrap().contains("secret"))
    );
}

#[tokio::test]
async fn search_page_links_each_result_and_escapes_user_text() {
    const PW: &str = "correct horse battery staple";
    let t = TestApp::new().await;
    t.app
        .add_user(
            "test",
            &NewUser {
                username: "ana".into(),
                roles: vec![Role::Responder],
                on_duty: true,
                password: Some(PW.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let tok = t.token("ana", &[]).await;
    let n = t
        .ticket(&tok, json!({"title": "<img src=x onerror=alert(1)> grebe"}))
        .await;
    let r = t
        .post(
            &format!("/api/v1/tickets/{n}/observables"),
            &tok,
            json!({"value": "grebe.example", "kind": "domain"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let login = Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .header("host", "127.0.0.1:8080")
        .body(Body::from(
            json!({"username": "ana", "password": PW}).to_string(),
        ))
        .unwrap();
    let r = t.raw(login).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|v| v.starts_with("__Host-firebreak_session="))
        .unwrap();
    let page = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header("host", "127.0.0.1:8080")
            .header("cookie", cookie.clone())
            .body(Body::empty())
            .unwrap()
    };
    let r = t.raw(page("/search?q=GREBE")).await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.body.as_str().unwrap();
    // the header's search box, labelled
    assert!(html.contains(r#"<label for="site-search-q""#), "{html}");
    assert!(
        html.contains(&format!(r#"<a href="/tickets/{n}">"#)),
        "{html}"
    );
    assert!(html.contains("&#60;img src=x"), "{html}");
    assert!(!html.contains("<img src=x"));
    let obs = regex_lite_href(html, "/observables/");
    let r = t.raw(page(&obs)).await;
    assert_eq!(r.status, StatusCode::OK, "{obs}");
    let html = r.body.as_str().unwrap();
    assert!(html.contains("grebe.example"));
    assert!(html.contains(&format!(r#"<a href="/tickets/{n}">"#)));
    // a bad query is said on the page, not a 500
    let r = t.raw(page("/search?q=x")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.as_str().unwrap().contains("at least 2 characters"));
}

/// The first `href="<prefix>..."` in a page.
fn regex_lite_href(html: &str, prefix: &str) -> String {
    let start = html.find(&format!("href=\"{prefix}")).unwrap() + 6;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_string()
}
