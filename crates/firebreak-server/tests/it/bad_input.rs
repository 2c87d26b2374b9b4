//! Bad input gets the error envelope with the right 4xx and the field named; never a 5xx.

use crate::*;
use proptest::prelude::*;
use serde_json::json;

fn post_raw(uri: &str, token: &str, ct: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn malformed_and_ill_typed_bodies_name_the_problem() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    let cases: Vec<(&str, StatusCode, &str, Option<&str>)> = vec![
        ("{", StatusCode::BAD_REQUEST, "malformed_json", None),
        ("", StatusCode::BAD_REQUEST, "malformed_json", None),
        (
            "{\"title\": \"x\"} trailing",
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "[1,2]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("body"),
        ),
        (
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("title"),
        ),
        (
            "{\"title\": 5}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("title"),
        ),
        (
            "{\"title\": \"   \"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("title"),
        ),
        (
            "{\"title\": \"x\", \"severity\": \"urgent\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("severity"),
        ),
        (
            "{\"title\": \"x\", \"source\": {\"kind\": \"alien\"}}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("source.kind"),
        ),
        (
            "{\"title\": \"x\", \"source\": {\"name\": \"n\"}}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("source.kind"),
        ),
        (
            "{\"title\": \"x\", \"tags\": [\"ok\", 3]}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("tags[1]"),
        ),
        (
            "{\"title\": \"x\", \"tags\": [\"\"]}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("tags[0]"),
        ),
        (
            "{\"title\": \"x\", \"owner_id\": \"me\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("owner_id"),
        ),
        (
            "{\"title\": \"x\", \"id\": \"01a2\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("id"),
        ),
        (
            "{\"title\": \"x\", \"number\": 7}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("number"),
        ),
        (
            "{\"title\": \"x\", \"restricted\": \"yes\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("restricted"),
        ),
    ];
    for (body, status, code, field) in cases {
        let r = t
            .raw(post_raw(
                "/api/v1/tickets",
                &tok,
                Some("application/json"),
                body.to_string(),
            ))
            .await;
        let f = assert_error(&r, status, code);
        assert_eq!(f.as_deref(), field, "body {body}: {}", r.body);
    }
    let long = json!({"title": "x".repeat(301)});
    let r = t.post("/api/v1/tickets", &tok, long).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("title")
    );
}

#[tokio::test]
async fn wrong_content_type_oversize_and_bad_utf8() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    let r = t
        .raw(post_raw(
            "/api/v1/tickets",
            &tok,
            Some("text/plain"),
            "{\"title\":\"x\"}",
        ))
        .await;
    assert_eq!(
        assert_error(
            &r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type"
        )
        .as_deref(),
        Some("content-type")
    );
    let r = t
        .raw(post_raw("/api/v1/tickets", &tok, None, "{\"title\":\"x\"}"))
        .await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = format!("{{\"title\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let r = t
        .raw(post_raw(
            "/api/v1/tickets",
            &tok,
            Some("application/json"),
            big,
        ))
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = t
        .raw(post_raw(
            "/api/v1/tickets",
            &tok,
            Some("application/json; charset=utf-8"),
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    let deep = "[".repeat(10_000);
    let r = t
        .raw(post_raw(
            "/api/v1/tickets",
            &tok,
            Some("application/json"),
            deep,
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
}

#[tokio::test]
async fn unknown_things_are_404_and_auth_is_401() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    for uri in [
        "/api/v1/tickets/SEC-000999",
        "/api/v1/tickets/not-a-ticket",
        "/api/v1/tickets/01a219bb-5642-720b-952e-a1ef5d872bf1",
        "/api/v1/nothing",
        "/api/v1/tickets/SEC-000999/log",
    ] {
        assert_error(&t.get(uri, &tok).await, StatusCode::NOT_FOUND, "not_found");
    }
    let r = t.call("GET", "/api/v1/tickets", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_error(
        &t.call("GET", "/api/v1/tickets", Some("fbk_wrong"), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let r = t
        .raw(
            Request::builder()
                .uri("/api/v1/tickets")
                .header("authorization", "Basic YWRtaW46YWRtaW4=")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let r = t.call("DELETE", "/api/v1/tickets", Some(&tok), None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("low"),
            Just("critical"),
            Just("p1"),
            Just("employee"),
            Just("")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("title".to_string()),
                        Just("severity".to_string()),
                        Just("source".to_string()),
                        Just("kind".to_string()),
                        Just("tags".to_string()),
                        Just("priority".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Whatever the body, the answer is 201 or a 4xx envelope: never a 5xx or a panic.
#[test]
fn request_parsing_never_fails_with_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (t, tok) = rt.block_on(async {
        let t = TestApp::new().await;
        let tok = t.user("hd", &[Role::Helpdesk, Role::Responder]).await;
        t.post("/api/v1/tickets", &tok, json!({"title": "target"}))
            .await;
        t.call("POST", "/api/v1/tickets/SEC-000001/start", Some(&tok), None)
            .await;
        (t, tok)
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let strategy = (
        arb_json(),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(body, raw, use_raw)| {
            let payload: Vec<u8> = if use_raw {
                raw
            } else {
                body.to_string().into_bytes()
            };
            rt.block_on(async {
                for uri in [
                    "/api/v1/tickets",
                    "/api/v1/tickets/SEC-000001/resolve",
                    "/api/v1/tickets/SEC-000001/log",
                    "/api/v1/users",
                ] {
                    let res = t
                        .router
                        .clone()
                        .oneshot(post_raw(
                            uri,
                            &tok,
                            Some("application/json"),
                            payload.clone(),
                        ))
                        .await
                        .unwrap();
                    let status = res.status();
                    prop_assert!(
                        status.is_success() || status.is_client_error(),
                        "{} gave {}",
                        uri,
                        status
                    );
                    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    if status.is_client_error() {
                        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        prop_assert!(v["error"]["code"].is_string());
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn rejections_outside_our_extractors_still_get_the_envelope() {
    let t = TestApp::new().await;
    let tok = t.user("hd", &[Role::Helpdesk]).await;
    // invalid percent-encoding in a path parameter is rejected by axum's Path extractor
    let r = t.get("/api/v1/tickets/%FF%FE", &tok).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.body["error"]["code"].is_string(), "{}", r.body);
}
