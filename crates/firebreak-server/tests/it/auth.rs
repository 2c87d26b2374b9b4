//! Signing in: cookies, CSRF, throttling and enumeration, expiry, logout, disabling, password
//! change, TOTP with recovery codes, the HTML forms, token last use, HSTS.

use crate::*;
use firebreak_app::auth::totp_code;
use serde_json::json;

const PW: &str = "correct horse battery staple";
const HOST: &str = "127.0.0.1:8080";
const ORIGIN: &str = "http://127.0.0.1:8080";

async fn person(t: &TestApp, name: &str, roles: &[Role]) {
    t.app
        .add_user(
            "test",
            &NewUser {
                username: name.into(),
                roles: roles.to_vec(),
                on_duty: true,
                password: Some(PW.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

fn login_req(user: &str, password: &str, peer: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .header("host", HOST)
        .header("x-test-peer", peer)
        .body(Body::from(
            json!({"username": user, "password": password}).to_string(),
        ))
        .unwrap()
}

/// The session cookie's `name=value` from a response.
fn cookie_of(r: &Resp) -> String {
    let sc = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-firebreak_session="))
        .expect("a session cookie");
    sc.split(';').next().unwrap().to_string()
}

struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(t: &TestApp, user: &str) -> Browser {
    let r = t.raw(login_req(user, PW, "10.0.0.1:5000")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    Browser {
        cookie: cookie_of(&r),
        csrf: r.body["csrf_token"].as_str().unwrap().to_string(),
    }
}

/// A same-origin browser request with the session cookie (and the CSRF header unless `None`).
fn browser_req(
    b: &Browser,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> Request<Body> {
    let mut rb = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .header("cookie", format!("other=1; {}", b.cookie));
    if let Some(c) = csrf {
        rb = rb.header("x-csrf-token", c);
    }
    if let Some(o) = origin {
        rb = rb.header("origin", o);
    }
    match body {
        Some(v) => rb
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => rb.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn sign_in_sets_a_host_only_secure_cookie_and_the_session_works() {
    let t = TestApp::new().await;
    person(&t, "ana", &[Role::Helpdesk]).await;
    let r = t.raw(login_req("ana", PW, "10.0.0.1:5000")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sc = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    for attr in [
        "__Host-firebreak_session=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=43200",
    ] {
        assert!(sc.contains(attr), "{attr} missing in {sc}");
    }
    assert!(!sc.contains("Domain"), "{sc}");
    let secret = cookie_of(&r).split_once('=').unwrap().1.to_string();
    assert!(secret.len() >= 43, "at least 256 bits");
    assert_eq!(r.body["user"]["username"], "ana");
    assert_eq!(r.body["mfa_required"], false);
    assert!(r.body.get("password_hash").is_none());
    let b = Browser {
        cookie: cookie_of(&r),
        csrf: r.body["csrf_token"].as_str().unwrap().to_string(),
    };
    // reads need no CSRF token
    let me = t
        .raw(browser_req(&b, "GET", "/api/v1/users/me", None, None, None))
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "ana");
    let s = t
        .raw(browser_req(
            &b,
            "GET",
            "/api/v1/auth/session",
            None,
            None,
            None,
        ))
        .await;
    assert_eq!(s.body["csrf_token"], b.csrf.as_str());
    // a write with the token, from our origin
    let ok = t
        .raw(browser_req(
            &b,
            "POST",
            "/api/v1/tickets",
            Some(json!({"title": "via browser"})),
            Some(&b.csrf),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.body["owner"], "ana");
    // a new sign-in gets a new secret and a new CSRF token (rotation)
    let again = sign_in(&t, "ana").await;
    assert_ne!(again.cookie, b.cookie);
    assert_ne!(again.csrf, b.csrf);
}

#[tokio::test]
async fn cookie_writes_without_the_csrf_token_or_from_another_site_are_403() {
    let t = TestApp::new().await;
    person(&t, "ana", &[Role::Helpdesk]).await;
    let b = sign_in(&t, "ana").await;
    let body = || Some(json!({"title": "forged"}));
    let cases: Vec<(&str, Request<Body>)> = vec![
        (
            "no token",
            browser_req(&b, "POST", "/api/v1/tickets", body(), None, Some(ORIGIN)),
        ),
        (
            "wrong token",
            browser_req(
                &b,
                "POST",
                "/api/v1/tickets",
                body(),
                Some("nope"),
                Some(ORIGIN),
            ),
        ),
        (
            "other origin",
            browser_req(
                &b,
                "POST",
                "/api/v1/tickets",
                body(),
                Some(&b.csrf),
                Some("http://127.0.0.2:8080"),
            ),
        ),
        (
            "null origin",
            browser_req(
                &b,
                "POST",
                "/api/v1/tickets",
                body(),
                Some(&b.csrf),
                Some("null"),
            ),
        ),
        (
            "https origin on http",
            browser_req(
                &b,
                "POST",
                "/api/v1/tickets",
                body(),
                Some(&b.csrf),
                Some("https://127.0.0.1:8080"),
            ),
        ),
    ];
    for (what, req) in cases {
        let r = t.raw(req).await;
        assert_error(&r, StatusCode::FORBIDDEN, "csrf_rejected");
        let _ = what;
    }
    let mut req = browser_req(
        &b,
        "PATCH",
        "/api/v1/users/ana",
        Some(json!({"title": "x"})),
        Some(&b.csrf),
        None,
    );
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_error(&t.raw(req).await, StatusCode::FORBIDDEN, "csrf_rejected");
    // nothing was created
    let admin = t.user("root", &[Role::Admin, Role::Helpdesk]).await;
    let list = t.get("/api/v1/tickets", &admin).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 0);
    // the sign-in form refuses a cross-site post too (login CSRF)
    let r = t
        .raw(
            Request::builder()
                .method("POST")
                .uri("/login")
                .header("host", HOST)
                .header("origin", "http://evil.example")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "username=ana&password={}",
                    PW.replace(' ', "+")
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn five_failures_lock_the_account_on_sqlite() {
    account_lockout(TestApp::on(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn five_failures_lock_the_account_on_postgres() {
    account_lockout(TestApp::on(Backend::Postgres).await).await;
}

/// Five failures lock the account; unknown users get the same answers and the same lock.
async fn account_lockout(t: TestApp) {
    person(&t, "ana", &[Role::Helpdesk]).await;
    let mut bodies = Vec::new();
    for i in 0..5 {
        // a different address each time: the account key alone locks
        let r = t
            .raw(login_req(
                "ana",
                "wrong password!",
                &format!("10.1.0.{i}:1000"),
            ))
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(r.headers.get("set-cookie").is_none());
        bodies.push(r.body.clone());
    }
    // the right password no longer helps
    let r = t.raw(login_req("ana", PW, "10.1.1.1:1000")).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    // an unknown user: the same statuses and bodies, the same lock
    for (i, body) in bodies.iter().enumerate() {
        let r = t
            .raw(login_req(
                "ghost",
                "wrong password!",
                &format!("10.2.0.{i}:1000"),
            ))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(&r.body, body, "unknown and existing users answer alike");
    }
    let r = t
        .raw(login_req("ghost", "anything at all", "10.2.1.1:1000"))
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    // case variants are the same account
    let r = t.raw(login_req("ANA", PW, "10.3.0.1:1000")).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    // after the lockout, the right password works again
    t.clock.advance(time::Duration::minutes(16));
    let r = t.raw(login_req("ana", PW, "10.1.1.1:1000")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // failures are in the audit chain
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert_eq!(
        entries.iter().filter(|e| e.action == "auth.failed").count(),
        10
    );
}

#[tokio::test]
async fn five_failures_from_one_address_lock_it_on_sqlite() {
    address_lockout(TestApp::on(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn five_failures_from_one_address_lock_it_on_postgres() {
    address_lockout(TestApp::on(Backend::Postgres).await).await;
}

async fn address_lockout(t: TestApp) {
    person(&t, "ana", &[Role::Helpdesk]).await;
    for i in 0..5 {
        let r = t
            .raw(login_req(
                &format!("guess{i}"),
                "password guess",
                "192.0.2.7:4000",
            ))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = t.raw(login_req("ana", PW, "192.0.2.7:4001")).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert!(r.headers.get("retry-after").is_some());
    // another address is not affected
    let r = t.raw(login_req("ana", PW, "192.0.2.8:4000")).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn empty_and_oversized_credentials_never_sign_in() {
    let t = TestApp::new().await;
    t.app
        .add_user(
            "test",
            &NewUser {
                username: "sensor".into(),
                roles: vec![Role::Reporter],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for (u, p) in [
        ("sensor", ""),
        ("", ""),
        ("sensor", " "),
        ("x".repeat(100).as_str(), PW),
    ] {
        let r = t.raw(login_req(u, p, "10.9.0.1:1")).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let r = t
        .raw(login_req("sensor", &"p".repeat(5000), "10.9.0.2:1"))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_credentials");
    // a body that is not the login shape names the field
    let bad = Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"username":"a"}"#))
        .unwrap();
    assert_eq!(
        assert_error(
            &t.raw(bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed"
        )
        .as_deref(),
        Some("password")
    );
}

#[tokio::test]
async fn sessions_expire_and_end_on_sqlite() {
    session_lifetimes(TestApp::on(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn sessions_expire_and_end_on_postgres() {
    session_lifetimes(TestApp::on(Backend::Postgres).await).await;
}

/// Sessions end when idle, at their absolute limit, on logout and when the user is disabled.
async fn session_lifetimes(t: TestApp) {
    person(&t, "ana", &[Role::Helpdesk]).await;
    let me = |b: &Browser| browser_req(b, "GET", "/api/v1/users/me", None, None, None);
    // idle: 29 minutes is fine and counts as activity, 31 minutes of silence is not
    let b = sign_in(&t, "ana").await;
    t.clock.advance(time::Duration::minutes(29));
    assert_eq!(t.raw(me(&b)).await.status, StatusCode::OK);
    t.clock.advance(time::Duration::minutes(29));
    assert_eq!(t.raw(me(&b)).await.status, StatusCode::OK);
    t.clock.advance(time::Duration::minutes(31));
    assert_error(
        &t.raw(me(&b)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    // absolute: active every 20 minutes, still over after 12 hours
    let b = sign_in(&t, "ana").await;
    for _ in 0..35 {
        t.clock.advance(time::Duration::minutes(20));
        assert_eq!(t.raw(me(&b)).await.status, StatusCode::OK);
    }
    t.clock.advance(time::Duration::minutes(20));
    assert_eq!(t.raw(me(&b)).await.status, StatusCode::UNAUTHORIZED);
    // logout
    let b = sign_in(&t, "ana").await;
    let out = t
        .raw(browser_req(
            &b,
            "POST",
            "/api/v1/auth/logout",
            None,
            Some(&b.csrf),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(t.raw(me(&b)).await.status, StatusCode::UNAUTHORIZED);
    // disabling the user ends every session at once
    let b1 = sign_in(&t, "ana").await;
    let b2 = sign_in(&t, "ana").await;
    t.app.disable_user("test", "ana").await.unwrap();
    assert_eq!(t.raw(me(&b1)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.raw(me(&b2)).await.status, StatusCode::UNAUTHORIZED);
    // and a disabled user cannot sign in, with the usual answer
    let r = t.raw(login_req("ana", PW, "10.0.0.9:1")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_ends_other_sessions() {
    let t = TestApp::new().await;
    person(&t, "ana", &[Role::Responder]).await;
    let here = sign_in(&t, "ana").await;
    let elsewhere = sign_in(&t, "ana").await;
    let change = |cur: &str, new: &str| {
        browser_req(
            &here,
            "POST",
            "/api/v1/users/me/password",
            Some(json!({"current_password": cur, "new_password": new})),
            Some(&here.csrf),
            Some(ORIGIN),
        )
    };
    let r = t.raw(change("not it", "a brand new passphrase")).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("current_password")
    );
    let r = t.raw(change(PW, "short")).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("new_password")
    );
    let r = t.raw(change(PW, "a brand new passphrase")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let me = |b: &Browser| browser_req(b, "GET", "/api/v1/users/me", None, None, None);
    assert_eq!(t.raw(me(&here)).await.status, StatusCode::OK);
    assert_eq!(t.raw(me(&elsewhere)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.raw(login_req("ana", PW, "10.0.0.2:1")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.raw(login_req("ana", "a brand new passphrase", "10.0.0.3:1"))
            .await
            .status,
        StatusCode::OK
    );
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "user.password_changed"));
    assert!(
        !entries.iter().any(|e| e.details.contains("brand new")),
        "no password in the audit chain"
    );
}

fn totp_now(secret: &str, t: &TestApp, offset_steps: i64) -> String {
    use firebreak_app::Clock;
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = t.clock.now().unix_timestamp().div_euclid(30) + offset_steps;
    format!("{:06}", totp_code(&key, step))
}

#[tokio::test]
async fn totp_second_factor_with_recovery_codes() {
    let t = TestApp::new().await;
    person(&t, "ana", &[Role::Responder]).await;
    let b = sign_in(&t, "ana").await;
    let post = |uri: &str, body: serde_json::Value| {
        browser_req(&b, "POST", uri, Some(body), Some(&b.csrf), Some(ORIGIN))
    };
    let r = t
        .raw(browser_req(
            &b,
            "POST",
            "/api/v1/users/me/totp",
            None,
            Some(&b.csrf),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(
        r.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Firebreak:ana?secret=")
    );
    let r = t
        .raw(post(
            "/api/v1/users/me/totp/confirm",
            json!({"code": "12345"}),
        ))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("code")
    );
    let r = t
        .raw(post(
            "/api/v1/users/me/totp/confirm",
            json!({"code": totp_now(&secret, &t, 0)}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let codes: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let st = t
        .raw(browser_req(
            &b,
            "GET",
            "/api/v1/users/me/totp",
            None,
            None,
            None,
        ))
        .await;
    assert_eq!(st.body, json!({"enabled": true, "recovery_codes_left": 10}));

    // the password alone now only opens a pending session
    let r = t.raw(login_req("ana", PW, "10.0.0.5:1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mfa_required"], true);
    let pending = Browser {
        cookie: cookie_of(&r),
        csrf: r.body["csrf_token"].as_str().unwrap().into(),
    };
    let me = |b: &Browser| browser_req(b, "GET", "/api/v1/users/me", None, None, None);
    assert_eq!(
        t.raw(me(&pending)).await.status,
        StatusCode::UNAUTHORIZED,
        "a pending session grants nothing"
    );
    let second = |b: &Browser, code: &str| {
        browser_req(
            b,
            "POST",
            "/api/v1/auth/second-factor",
            Some(json!({"code": code})),
            Some(&b.csrf),
            Some(ORIGIN),
        )
    };
    // the second factor is a cookie-authenticated write: without the CSRF token it is 403
    let forged = browser_req(
        &pending,
        "POST",
        "/api/v1/auth/second-factor",
        Some(json!({"code": "000000"})),
        None,
        None,
    );
    assert_error(&t.raw(forged).await, StatusCode::FORBIDDEN, "csrf_rejected");
    let r = t.raw(second(&pending, "000000")).await;
    // (the 1-in-a-million chance that 000000 is the current code is accepted by this test)
    if r.status != StatusCode::OK {
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_credentials");
        // the code from the next step (clock skew allowance) works; a new session replaces the pending one
        t.clock.advance(time::Duration::seconds(31));
        let code = totp_now(&secret, &t, 0);
        let r = t.raw(second(&pending, &code)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let full = Browser {
            cookie: cookie_of(&r),
            csrf: r.body["csrf_token"].as_str().unwrap().into(),
        };
        assert_ne!(full.cookie, pending.cookie);
        assert_eq!(t.raw(me(&full)).await.status, StatusCode::OK);
        assert_eq!(t.raw(me(&pending)).await.status, StatusCode::UNAUTHORIZED);
        // the same code cannot be used twice
        let r = t.raw(login_req("ana", PW, "10.0.0.6:1")).await;
        let p2 = Browser {
            cookie: cookie_of(&r),
            csrf: r.body["csrf_token"].as_str().unwrap().into(),
        };
        assert_eq!(
            t.raw(second(&p2, &code)).await.status,
            StatusCode::UNAUTHORIZED
        );
        // a recovery code works once
        let r = t.raw(second(&p2, &codes[3].to_uppercase())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = t.raw(login_req("ana", PW, "10.0.0.7:1")).await;
        let p3 = Browser {
            cookie: cookie_of(&r),
            csrf: r.body["csrf_token"].as_str().unwrap().into(),
        };
        assert_eq!(
            t.raw(second(&p3, &codes[3])).await.status,
            StatusCode::UNAUTHORIZED
        );
        let st = t
            .raw(browser_req(
                &full,
                "GET",
                "/api/v1/users/me/totp",
                None,
                None,
                None,
            ))
            .await;
        assert_eq!(st.body["recovery_codes_left"], 9);
    }
    // a pending session expires after 5 minutes
    let r = t.raw(login_req("ana", PW, "10.0.0.8:1")).await;
    let p4 = Browser {
        cookie: cookie_of(&r),
        csrf: r.body["csrf_token"].as_str().unwrap().into(),
    };
    t.clock.advance(time::Duration::minutes(6));
    let code = totp_now(&secret, &t, 0);
    assert_eq!(
        t.raw(second(&p4, &code)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn html_sign_in_form_signs_in_and_out() {
    let t = TestApp::new().await;
    person(&t, "ana", &[Role::Helpdesk]).await;
    let page = t
        .raw(Request::builder().uri("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("name=\"username\"")
            && html.contains("name=\"password\"")
            && html.contains("action=\"/login\"")
    );
    let form = |user: &str, pw: &str| {
        Request::builder()
            .method("POST")
            .uri("/login")
            .header("host", HOST)
            .header("origin", ORIGIN)
            .header("sec-fetch-site", "same-origin")
            .header("x-test-peer", "10.0.0.1:1")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "username={user}&password={}",
                pw.replace(' ', "+")
            )))
            .unwrap()
    };
    let bad = t.raw(form("ana", "nope")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.as_str().unwrap().contains("not valid"));
    let xss = t
        .raw(form("%3Cscript%3Ealert(1)%3C%2Fscript%3E", "nope"))
        .await;
    assert!(
        !xss.body.as_str().unwrap().contains("<script>"),
        "the username is escaped"
    );
    let ok = t.raw(form("ana", PW)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.headers.get("location").unwrap(), "/");
    let b = Browser {
        cookie: cookie_of(&ok),
        csrf: String::new(),
    };
    let home = t.raw(browser_req(&b, "GET", "/", None, None, None)).await;
    let html = home.body.as_str().unwrap().to_string();
    assert!(html.contains("Signed in as <strong>ana</strong>"), "{html}");
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let logout = |token: &str| {
        Request::builder()
            .method("POST")
            .uri("/logout")
            .header("host", HOST)
            .header("origin", ORIGIN)
            .header("cookie", &b.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf_token={token}")))
            .unwrap()
    };
    assert_eq!(t.raw(logout("forged")).await.status, StatusCode::FORBIDDEN);
    let out = t.raw(logout(&csrf)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = t
        .raw(browser_req(&b, "GET", "/api/v1/users/me", None, None, None))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_last_use_is_recorded() {
    let t = TestApp::new().await;
    let tok = t.user("bot", &[Role::Responder]).await;
    let before = t.app.list_tokens("bot").await.unwrap();
    assert!(before[0].last_used_at.is_none());
    assert_eq!(t.get("/api/v1/tickets", &tok).await.status, StatusCode::OK);
    let after = t.app.list_tokens("bot").await.unwrap();
    assert!(after[0].last_used_at.is_some());
}

#[tokio::test]
async fn hsts_only_behind_tls_and_security_headers_everywhere() {
    let plain = TestApp::new().await;
    let r = plain.call("GET", "/healthz", None, None).await;
    assert!(r.headers.get("strict-transport-security").is_none());
    let tls = TestApp::with_config(
        AppConfig::default(),
        firebreak_server::web::WebConfig {
            secure_transport: true,
            ..Default::default()
        },
    )
    .await;
    for uri in ["/healthz", "/", "/api/v1/tickets", "/nowhere"] {
        let r = tls.call("GET", uri, None, None).await;
        assert!(
            r.headers
                .get("strict-transport-security")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("max-age=")
        );
        let csp = r
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'")
                && !csp.contains("script-src 'self' 'unsafe-inline'"),
            "{csp}"
        );
        assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert!(r.headers.get("referrer-policy").is_some());
    }
    // behind TLS the expected origin is https
    person(&tls, "ana", &[Role::Helpdesk]).await;
    let r = tls.raw(login_req("ana", PW, "10.0.0.1:1")).await;
    let b = Browser {
        cookie: cookie_of(&r),
        csrf: r.body["csrf_token"].as_str().unwrap().into(),
    };
    let http = tls
        .raw(browser_req(
            &b,
            "POST",
            "/api/v1/tickets",
            Some(json!({"title": "x"})),
            Some(&b.csrf),
            Some(ORIGIN),
        ))
        .await;
    assert_error(&http, StatusCode::FORBIDDEN, "csrf_rejected");
    let https = tls
        .raw(browser_req(
            &b,
            "POST",
            "/api/v1/tickets",
            Some(json!({"title": "x"})),
            Some(&b.csrf),
            Some("https://127.0.0.1:8080"),
        ))
        .await;
    assert_eq!(https.status, StatusCode::CREATED, "{}", https.body);
}

#[tokio::test]
async fn unauthenticated_requests_are_limited_per_address_not_authenticated_ones() {
    let t = TestApp::new().await;
    let tok = t.user("bot", &[Role::Responder]).await;
    let req = |token: &str, peer: &str| {
        Request::builder()
            .uri("/api/v1/tickets")
            .header("authorization", format!("Bearer {token}"))
            .header("x-test-peer", peer)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..60 {
        assert_eq!(
            t.raw(req("fbk_guess", "198.51.100.1:1")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = t.raw(req("fbk_guess", "198.51.100.1:1")).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    assert!(r.headers.get("retry-after").is_some());
    // a valid token from the same address still works; other addresses are not affected
    assert_eq!(
        t.raw(req(&tok, "198.51.100.1:1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.raw(req("fbk_guess", "198.51.100.2:1")).await.status,
        StatusCode::UNAUTHORIZED
    );
}
