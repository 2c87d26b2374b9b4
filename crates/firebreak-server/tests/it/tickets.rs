use crate::*;
use serde_json::json;

#[tokio::test]
async fn ticket_is_created_with_defaults_and_read_by_number_and_id() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    let r = t
        .post(
            "/api/v1/tickets",
            &tok,
            json!({"title": "Suspicious login"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["number"], "SEC-000001");
    assert_eq!(r.body["severity"], "medium");
    assert_eq!(r.body["priority"], "p3");
    assert_eq!(r.body["criticality"], "normal");
    assert_eq!(r.body["tier"], 1);
    assert_eq!(r.body["status"], "open");
    assert_eq!(r.body["owner"], "hd");
    assert_eq!(
        r.body["source"],
        json!({"kind": "internal", "name": "hd", "contact": null})
    );
    assert_eq!(r.headers["location"], "/api/v1/tickets/SEC-000001");
    let id = r.body["id"].as_str().unwrap().to_string();
    let by_number = t.get("/api/v1/tickets/SEC-000001", &tok).await;
    let by_id = t.get(&format!("/api/v1/tickets/{id}"), &tok).await;
    assert_eq!(by_number.status, StatusCode::OK);
    assert_eq!(by_number.body, by_id.body);
    assert_eq!(by_number.body, r.body);
    let r2 = t.post("/api/v1/tickets", &tok, json!({"title": "x", "severity": "critical", "source": {"kind": "vendor", "name": "ACME"}})).await;
    assert_eq!(r2.body["number"], "SEC-000002");
    assert_eq!(r2.body["priority"], "p1");
}

#[tokio::test]
async fn user_text_comes_back_byte_for_byte() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    let title = "  <img src=x onerror=alert(1)> \"quotes\" 'single' & ünïcödé \u{1F525}\t";
    let description = "  keep\n\twhitespace  ";
    let r = t
        .post(
            "/api/v1/tickets",
            &tok,
            json!({"title": title, "description": description}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // read back from the database, not echoed from the request
    let got = t.get("/api/v1/tickets/SEC-000001", &tok).await;
    assert_eq!(got.body["title"], title);
    assert_eq!(got.body["description"], description);
    let list = t.get("/api/v1/tickets", &tok).await;
    assert_eq!(list.body["items"][0]["title"], title);
}

#[tokio::test]
async fn only_the_owner_or_a_manager_hands_a_ticket_to_another_owner() {
    let t = TestApp::new().await;
    let olga = t.user("olga", &[Role::Helpdesk]).await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let cso = t.user("cso", &[Role::Manager]).await;
    t.post("/api/v1/tickets", &olga, json!({"title": "x"}))
        .await;
    let u = "/api/v1/tickets/SEC-000001";
    let r = t
        .call("PATCH", u, Some(&rita), Some(json!({"owner": "rita"})))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t
        .call("PATCH", u, Some(&cso), Some(json!({"owner": "rita"})))
        .await;
    assert_eq!(r.body["owner"], "rita", "{}", r.body);
    let r = t
        .call("PATCH", u, Some(&rita), Some(json!({"owner": "olga"})))
        .await;
    assert_eq!(r.body["owner"], "olga", "{}", r.body);
}

#[tokio::test]
async fn normal_lifecycle_through_the_api() {
    let t = TestApp::new().await;
    let owner = t.user("olga", &[Role::Helpdesk]).await;
    let rita = t.user("rita", &[Role::Responder]).await;
    t.post(
        "/api/v1/tickets",
        &owner,
        json!({"title": "Malware on laptop"}),
    )
    .await;
    let u = "/api/v1/tickets/SEC-000001";

    // helpdesk may not start work
    let r = t
        .call("POST", &format!("{u}/start"), Some(&owner), None)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    // resolve before start: 409 naming what is missing
    let r = t
        .post(
            &format!("{u}/resolve"),
            &rita,
            json!({"resolution": "x", "problem_category": "malware"}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("start it first")
    );

    let r = t
        .call("POST", &format!("{u}/start"), Some(&rita), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "in_progress");
    assert_eq!(r.body["assignee"], "rita");

    // resolve requires resolution and problem category
    let r = t
        .post(
            &format!("{u}/resolve"),
            &rita,
            json!({"resolution": "reimaged"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("problem_category")
    );
    let r = t
        .post(
            &format!("{u}/resolve"),
            &rita,
            json!({"resolution": "", "problem_category": " "}),
        )
        .await;
    let fields: Vec<_> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["resolution", "problem_category"]);
    let r = t
        .post(
            &format!("{u}/resolve"),
            &rita,
            json!({"resolution": "reimaged", "problem_category": "malware"}),
        )
        .await;
    assert_eq!(r.body["status"], "pending_closure");

    // only the owner accepts or rejects
    let r = t
        .call("POST", &format!("{u}/accept-closure"), Some(&rita), None)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t
        .post(&format!("{u}/reject-closure"), &owner, json!({}))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("reason")
    );
    let r = t
        .post(
            &format!("{u}/reject-closure"),
            &owner,
            json!({"reason": "still beaconing"}),
        )
        .await;
    assert_eq!(r.body["status"], "in_progress");
    t.post(
        &format!("{u}/resolve"),
        &rita,
        json!({"resolution": "reimaged again", "problem_category": "malware"}),
    )
    .await;
    let r = t
        .post(
            &format!("{u}/accept-closure"),
            &owner,
            json!({"comment": "thanks"}),
        )
        .await;
    assert_eq!(r.body["status"], "closed", "{}", r.body);
    let r = t
        .post(&format!("{u}/reopen"), &rita, json!({"reason": "recurred"}))
        .await;
    assert_eq!(r.body["status"], "in_progress");
    let r = t
        .post(
            &format!("{u}/mark-false-positive"),
            &owner,
            json!({"reason": "test alert"}),
        )
        .await;
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["false_positive"], true);
    let r = t
        .post(
            &format!("{u}/mark-false-positive"),
            &owner,
            json!({"reason": "again"}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition");

    // every step is on the timeline, denials included
    let log = t.get(&format!("{u}/log?limit=500"), &rita).await;
    let actions: Vec<_> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "ticket.created",
        "ticket.start",
        "ticket.resolve",
        "ticket.reject-closure",
        "ticket.accept-closure",
        "ticket.reopen",
        "ticket.mark-false-positive",
        "authz.denied",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    let accept = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "ticket.accept-closure")
        .unwrap();
    assert_eq!(accept["details"]["comment"], "thanks");
}

#[tokio::test]
async fn incident_log_notes_are_written_and_paged() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let aud = t.user("audrey", &[Role::Auditor]).await;
    t.post("/api/v1/tickets", &rita, json!({"title": "x"}))
        .await;
    let r = t
        .post(
            "/api/v1/tickets/SEC-000001/log",
            &rita,
            json!({"text": "Isolated host <script>", "kind": "action"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["kind"], "action");
    assert_eq!(r.body["text"], "Isolated host <script>");
    assert_eq!(r.body["actor"], "rita");
    assert_eq!(r.body["hash"].as_str().unwrap().len(), 64);
    for i in 0..3 {
        t.post(
            "/api/v1/tickets/SEC-000001/log",
            &rita,
            json!({"text": format!("note {i}")}),
        )
        .await;
    }
    let r = t
        .post(
            "/api/v1/tickets/SEC-000001/log",
            &rita,
            json!({"text": "x", "kind": "gossip"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("kind")
    );
    // auditors read but do not write
    let r = t
        .post("/api/v1/tickets/SEC-000001/log", &aud, json!({"text": "x"}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let p1 = t.get("/api/v1/tickets/SEC-000001/log?limit=2", &aud).await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"].as_str().unwrap();
    let p2 = t
        .get(
            &format!("/api/v1/tickets/SEC-000001/log?limit=10&cursor={cursor}"),
            &aud,
        )
        .await;
    let texts: Vec<_> = p2.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts[..3], ["note 0", "note 1", "note 2"]);
    assert_eq!(p2.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn list_filters_and_cursor_pagination() {
    let t = TestApp::new().await;
    let tok = t.user("rita", &[Role::Responder]).await;
    t.user("sam", &[Role::Responder]).await;
    for i in 0..12 {
        let sev = if i % 3 == 0 { "critical" } else { "low" };
        let mut body = json!({"title": format!("alert {i}"), "severity": sev, "tags": [format!("g{}", i % 2)]});
        if i % 4 == 0 {
            body["assignee"] = json!("sam");
        }
        if i == 5 {
            body["description"] = json!("Ransomware note found");
        }
        t.post("/api/v1/tickets", &tok, body).await;
    }
    let p = t.get("/api/v1/tickets?limit=5", &tok).await;
    let nums: Vec<_> = p.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["number"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        nums,
        [
            "SEC-000012",
            "SEC-000011",
            "SEC-000010",
            "SEC-000009",
            "SEC-000008"
        ]
    );
    let mut seen = nums.len();
    let mut cursor = p.body["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let p = t
            .get(&format!("/api/v1/tickets?limit=5&cursor={c}"), &tok)
            .await;
        seen += p.body["items"].as_array().unwrap().len();
        cursor = p.body["next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 12);
    let count = |q: &str| {
        let q = q.to_string();
        let t = &t;
        let tok = tok.clone();
        async move {
            t.get(&format!("/api/v1/tickets?{q}"), &tok).await.body["items"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(usize::MAX)
        }
    };
    assert_eq!(count("severity=critical").await, 4);
    assert_eq!(count("tag=g1").await, 6);
    assert_eq!(count("assignee=sam").await, 3);
    assert_eq!(count("q=RANSOMWARE").await, 1);
    assert_eq!(count("status=open&criticality=normal").await, 12);
    assert_eq!(count("status=closed").await, 0);
    let r = t.get("/api/v1/tickets?severity=urgent", &tok).await;
    assert_eq!(
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query").as_deref(),
        Some("severity")
    );
    let r = t.get("/api/v1/tickets?colour=red", &tok).await;
    assert_eq!(
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query").as_deref(),
        Some("colour")
    );
    let r = t.get("/api/v1/tickets?limit=0", &tok).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("limit")
    );
    let r = t.get("/api/v1/tickets?limit=100000", &tok).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("limit")
    );
    let r = t.get("/api/v1/tickets?cursor=garbage", &tok).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("cursor")
    );
}

#[tokio::test]
async fn update_changes_fields_and_records_the_diff() {
    let t = TestApp::new().await;
    let tok = t.user("rita", &[Role::Responder]).await;
    t.user("sam", &[Role::Responder]).await;
    t.post(
        "/api/v1/tickets",
        &tok,
        json!({"title": "x", "assignee": "sam"}),
    )
    .await;
    let r = t
        .call(
            "PATCH",
            "/api/v1/tickets/SEC-000001",
            Some(&tok),
            Some(json!({"severity": "high", "assignee": null, "tags": ["a", "a", "b"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["severity"], "high");
    assert_eq!(r.body["assignee"], Value::Null);
    assert_eq!(r.body["tags"], json!(["a", "b"]));
    assert_eq!(r.body["version"], 2);
    let r = t
        .call(
            "PATCH",
            "/api/v1/tickets/SEC-000001",
            Some(&tok),
            Some(json!({"assignee": "nobody"})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("assignee")
    );
    let r = t
        .call(
            "PATCH",
            "/api/v1/tickets/SEC-000001",
            Some(&tok),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("status")
    );
    let log = t.get("/api/v1/tickets/SEC-000001/log", &tok).await;
    let upd = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "ticket.updated")
        .unwrap();
    assert_eq!(
        upd["details"]["changes"]["severity"],
        json!({"from": "medium", "to": "high"})
    );
    assert_eq!(
        upd["details"]["changes"]["assignee"],
        json!({"from": "sam", "to": null})
    );
}

#[tokio::test]
async fn restricted_tickets_are_404_for_outsiders() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let sam = t.user("sam", &[Role::Responder]).await;
    let cleared = t
        .user_with("cleo", &[Role::Auditor], &[], &["restricted"])
        .await;
    let admin = t.user("root", &[Role::Admin]).await;
    t.post(
        "/api/v1/tickets",
        &rita,
        json!({"title": "insider case", "restricted": true}),
    )
    .await;
    t.post("/api/v1/tickets", &rita, json!({"title": "public"}))
        .await;
    assert_error(
        &t.get("/api/v1/tickets/SEC-000001", &sam).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &t.get("/api/v1/tickets/SEC-000001/log", &sam).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = t
        .post(
            "/api/v1/tickets/SEC-000001/log",
            &sam,
            json!({"text": "peek"}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = t
        .call("POST", "/api/v1/tickets/SEC-000001/start", Some(&sam), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let list = t.get("/api/v1/tickets", &sam).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    for tok in [&rita, &cleared, &admin] {
        assert_eq!(
            t.get("/api/v1/tickets/SEC-000001", tok).await.status,
            StatusCode::OK
        );
        assert_eq!(
            t.get("/api/v1/tickets", tok).await.body["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}

#[tokio::test]
async fn reporters_see_only_their_own_and_cannot_open_tickets() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let rep = t.user("sensor", &[Role::Reporter]).await;
    t.post("/api/v1/tickets", &rita, json!({"title": "x"}))
        .await;
    let r = t.post("/api/v1/tickets", &rep, json!({"title": "x"})).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        t.get("/api/v1/tickets", &rep).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_error(
        &t.get("/api/v1/tickets/SEC-000001", &rep).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn token_scopes_limit_the_users_rights() {
    let t = TestApp::new().await;
    let full = t.user("rita", &[Role::Responder]).await;
    let read = t.token("rita", &[Scope::Read]).await;
    let intake = t.token("rita", &[Scope::Intake]).await;
    t.post("/api/v1/tickets", &full, json!({"title": "x"}))
        .await;
    assert_eq!(
        t.get("/api/v1/tickets/SEC-000001", &read).await.status,
        StatusCode::OK
    );
    assert_error(
        &t.post("/api/v1/tickets", &read, json!({"title": "y"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &t.call(
            "POST",
            "/api/v1/tickets/SEC-000001/start",
            Some(&read),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &t.get("/api/v1/tickets/SEC-000001", &intake).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn disabled_users_and_revoked_tokens_fail_at_once() {
    let t = TestApp::new().await;
    let tok = t.user("rita", &[Role::Responder]).await;
    assert_eq!(
        t.get("/api/v1/users/me", &tok).await.body["username"],
        "rita"
    );
    t.app.disable_user("test", "rita").await.unwrap();
    assert_error(
        &t.get("/api/v1/users/me", &tok).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}

#[tokio::test]
async fn admins_create_users_and_others_may_not() {
    let t = TestApp::new().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let body = json!({"username": "cso", "roles": ["manager"], "title": "CSO", "seniority": 9, "email": "cso@example.org"});
    let r = t.post("/api/v1/users", &admin, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["title"], "CSO");
    assert_eq!(r.body["on_duty"], true);
    assert_eq!(r.body["disabled"], false);
    assert!(r.body.get("password_hash").is_none());
    assert_error(
        &t.post("/api/v1/users", &admin, body).await,
        StatusCode::CONFLICT,
        "user_exists",
    );
    let r = t
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "x y", "roles": ["boss"]}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("roles[0]")
    );
    let r = t
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "-bad", "roles": []}),
        )
        .await;
    let fields: Vec<_> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "roles"]);
    assert_error(
        &t.post(
            "/api/v1/users",
            &rita,
            json!({"username": "z", "roles": ["admin"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let users = t.get("/api/v1/users", &rita).await;
    assert_eq!(users.body["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let t = TestApp::new().await;
    let r = t.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["backend"], "sqlite");
    assert_eq!(
        t.call("GET", "/readyz", None, None).await.status,
        StatusCode::OK
    );
    let doc = t.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/tickets",
        "/api/v1/tickets/{ref}",
        "/api/v1/tickets/{ref}/start",
        "/api/v1/tickets/{ref}/resolve",
        "/api/v1/tickets/{ref}/accept-closure",
        "/api/v1/tickets/{ref}/reject-closure",
        "/api/v1/tickets/{ref}/reopen",
        "/api/v1/tickets/{ref}/mark-false-positive",
        "/api/v1/tickets/{ref}/log",
        "/api/v1/users",
        "/api/v1/users/me",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from openapi.json");
    }
    let docs = t
        .raw(
            Request::builder()
                .uri("/api/docs/")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(docs.status, StatusCode::OK);
    let index = t
        .raw(Request::builder().uri("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.as_str().unwrap().contains("/api/docs"));
    assert_eq!(index.headers["x-content-type-options"], "nosniff");
    assert!(
        index.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn access_list_lets_a_user_see_a_restricted_ticket() {
    let t = TestApp::new().await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let sam = t.user("sam", &[Role::Responder]).await;
    let cleo = t
        .user_with("cleo", &[Role::Auditor], &[], &["restricted"])
        .await;
    t.post(
        "/api/v1/tickets",
        &rita,
        json!({"title": "insider", "restricted": true}),
    )
    .await;
    let u = "/api/v1/tickets/SEC-000001";
    assert_error(&t.get(u, &sam).await, StatusCode::NOT_FOUND, "not_found");
    // a cleared auditor sees it but may not grant access
    let r = t
        .post(&format!("{u}/access"), &cleo, json!({"username": "sam"}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t
        .post(&format!("{u}/access"), &rita, json!({"username": "nobody"}))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("username")
    );
    let r = t
        .post(
            &format!("{u}/access"),
            &rita,
            json!({"username": "sam", "reason": "forensics"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["username"], "sam");
    assert_eq!(r.body["items"][0]["granted_by"], "rita");
    assert_eq!(t.get(u, &sam).await.status, StatusCode::OK);
    assert_eq!(
        t.get("/api/v1/tickets", &sam).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = t
        .call("DELETE", &format!("{u}/access/sam"), Some(&rita), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    assert_error(&t.get(u, &sam).await, StatusCode::NOT_FOUND, "not_found");
    let r = t
        .call("DELETE", &format!("{u}/access/sam"), Some(&rita), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let log = t.get(&format!("{u}/log?limit=500"), &rita).await;
    let actions: Vec<_> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"ticket.access_granted".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"ticket.access_revoked".to_string()),
        "{actions:?}"
    );
    // sam's attempts while hidden are on the record too
    assert!(actions.contains(&"authz.denied".to_string()), "{actions:?}");
}

#[tokio::test]
async fn admins_edit_users_and_disabling_revokes_tokens() {
    let t = TestApp::new().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let rita = t.user("rita", &[Role::Responder]).await;
    let r = t.call("PATCH", "/api/v1/users/rita", Some(&admin), Some(json!({"title": "CSO", "seniority": 7, "on_duty": false, "roles": ["senior_responder", "manager"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["title"], "CSO");
    assert_eq!(r.body["seniority"], 7);
    assert_eq!(r.body["on_duty"], false);
    assert_eq!(r.body["roles"], json!(["senior_responder", "manager"]));
    let got = t.get("/api/v1/users/rita", &rita).await;
    assert_eq!(got.body, r.body);
    assert_error(
        &t.call(
            "PATCH",
            "/api/v1/users/rita",
            Some(&rita),
            Some(json!({"title": "x"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &t.call(
            "PATCH",
            "/api/v1/users/nobody",
            Some(&admin),
            Some(json!({"title": "x"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = t
        .call(
            "PATCH",
            "/api/v1/users/rita",
            Some(&admin),
            Some(json!({"roles": []})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("roles")
    );
    let r = t
        .call(
            "PATCH",
            "/api/v1/users/root",
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("disabled")
    );
    let r = t
        .call(
            "PATCH",
            "/api/v1/users/rita",
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.body["disabled"], true);
    assert_error(
        &t.get("/api/v1/users/me", &rita).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}
