//! OpenID Connect sign-in against a mock provider on a real port: discovery, the authorization
//! redirect with PKCE, the code exchange with client authentication, the ID token checks, role
//! mapping, just-in-time users, and the refusals.

use crate::*;
use axum::extract::{Form, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firebreak_server::oidc::{OidcClient, OidcConfig};
use serde_json::json;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// What the provider remembers about an issued code: nonce, code challenge, redirect URI, user.
type Grant = (String, String, String, (String, Vec<String>));

#[derive(Default)]
struct Idp {
    issuer: String,
    /// The person who signs in at the provider next: (username, groups).
    next_user: Mutex<(String, Vec<String>)>,
    /// Tamper with the ID token: replace its nonce.
    bad_nonce: Mutex<bool>,
    /// code -> (nonce, code_challenge, redirect_uri, user)
    codes: Mutex<HashMap<String, Grant>>,
}

async fn discovery(State(idp): State<Arc<Idp>>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "issuer": idp.issuer,
        "authorization_endpoint": format!("{}/authorize", idp.issuer),
        "token_endpoint": format!("{}/token", idp.issuer),
        "jwks_uri": format!("{}/jwks", idp.issuer),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn authorize(
    State(idp): State<Arc<Idp>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "firebreak");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", uuid::Uuid::now_v7().simple());
    let user = idp.next_user.lock().unwrap().clone();
    idp.codes.lock().unwrap().insert(
        code.clone(),
        (
            q["nonce"].clone(),
            q["code_challenge"].clone(),
            q["redirect_uri"].clone(),
            user,
        ),
    );
    let to = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    axum::response::Redirect::to(&to).into_response()
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: axum::http::HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("firebreak:s3cret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    // a code is good once
    let Some((nonce, challenge, redirect, (user, groups))) =
        idp.codes.lock().unwrap().remove(&f["code"])
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let verifier_hash = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(f["code_verifier"].as_bytes()));
    if verifier_hash != challenge
        || f["redirect_uri"] != redirect
        || f["grant_type"] != "authorization_code"
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let nonce = if *idp.bad_nonce.lock().unwrap() {
        "forged".to_string()
    } else {
        nonce
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": idp.issuer, "aud": "firebreak", "sub": format!("sub-{user}"), "exp": now + 300, "iat": now,
        "nonce": nonce, "preferred_username": user, "email": format!("{user}@example.org"), "groups": groups,
    });
    let id_token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    axum::Json(json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})).into_response()
}

async fn start_idp() -> Arc<Idp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(Idp {
        issuer,
        ..Default::default()
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(idp.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    idp
}

async fn firebreak_with(idp: &Idp) -> TestApp {
    let mut role_map = BTreeMap::new();
    role_map.insert("soc".to_string(), vec![Role::Responder]);
    role_map.insert(
        "soc-leads".to_string(),
        vec![Role::SeniorResponder, Role::Manager],
    );
    let config: OidcConfig = serde_json::from_value(json!({
        "issuer": idp.issuer, "client_id": "firebreak", "client_secret": "s3cret",
        "display_name": "Example SSO", "allow_insecure_http": true,
    }))
    .unwrap();
    let config = OidcConfig { role_map, ..config };
    let web = firebreak_server::web::WebConfig {
        oidc: Some(Arc::new(OidcClient::new(config).unwrap())),
        ..Default::default()
    };
    TestApp::with_config(AppConfig::default(), web).await
}

const HOST: &str = "fb.test:8080";

fn cookie_pair(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")) && !c.ends_with('='))
}

/// Runs the browser's part: start, the provider's redirect, and the callback. Returns the
/// callback's response.
async fn sign_in(t: &TestApp, user: &str, groups: &[&str], idp: &Idp) -> Resp {
    *idp.next_user.lock().unwrap() = (user.into(), groups.iter().map(|g| g.to_string()).collect());
    let start = t
        .raw(
            Request::builder()
                .uri("/auth/oidc/start")
                .header("host", HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let oidc_cookie = cookie_pair(&start, "__Host-firebreak_oidc").unwrap();
    let authorize = start
        .headers
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(authorize.starts_with(&format!("{}/authorize?", idp.issuer)));
    assert!(
        authorize.contains("redirect_uri=http%3A%2F%2Ffb.test%3A8080%2Fauth%2Foidc%2Fcallback"),
        "{authorize}"
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = browser.get(&authorize).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let path = callback
        .strip_prefix(&format!("http://{HOST}"))
        .unwrap()
        .to_string();
    t.raw(
        Request::builder()
            .uri(path)
            .header("host", HOST)
            .header("cookie", oidc_cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn oidc_sign_in_creates_the_user_with_mapped_roles_and_keeps_them_in_step() {
    let idp = start_idp().await;
    let t = firebreak_with(&idp).await;
    let page = t
        .raw(
            Request::builder()
                .uri("/login")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        page.body
            .as_str()
            .unwrap()
            .contains("Sign in with Example SSO")
    );

    let r = sign_in(&t, "carol", &["soc", "staff"], &idp).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers.get("location").unwrap(), "/");
    let session = cookie_pair(&r, "__Host-firebreak_session").expect("a session");
    let me = t
        .raw(
            Request::builder()
                .uri("/api/v1/users/me")
                .header("cookie", &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "carol");
    assert_eq!(me.body["roles"], json!(["responder"]));
    assert_eq!(me.body["email"], "carol@example.org");

    // promoted at the provider: the roles follow at the next sign-in
    let r = sign_in(&t, "carol", &["soc-leads"], &idp).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let u = t
        .app
        .all_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.username == "carol")
        .unwrap();
    assert_eq!(u.roles, vec![Role::SeniorResponder, Role::Manager]);
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "user.created" && e.actor == "oidc")
    );
    assert!(entries.iter().any(|e| e.action == "user.roles_set"));
    assert!(
        entries
            .iter()
            .any(|e| e.action == "auth.login" && e.details.contains("oidc"))
    );
}

#[tokio::test]
async fn oidc_refusals() {
    let idp = start_idp().await;
    let t = firebreak_with(&idp).await;
    // no mapped group: no account
    let r = sign_in(&t, "mallory", &["contractors"], &idp).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(cookie_pair(&r, "__Host-firebreak_session").is_none());
    // a local account with a password is never taken over
    t.app
        .add_user(
            "test",
            &NewUser {
                username: "admin2".into(),
                roles: vec![Role::Admin],
                password: Some("a local password".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = sign_in(&t, "admin2", &["soc-leads"], &idp).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let u = t
        .app
        .all_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.username == "admin2")
        .unwrap();
    assert_eq!(u.roles, vec![Role::Admin]);
    // nor is an account without a password (a sensor's token-only user) that the provider
    // did not create
    t.app
        .add_user(
            "test",
            &NewUser {
                username: "sensor1".into(),
                roles: vec![Role::Reporter],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = sign_in(&t, "sensor1", &["soc-leads"], &idp).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert!(
        entries
            .iter()
            .filter(|e| e.action == "auth.refused")
            .count()
            >= 3
    );
    // a forged nonce
    *idp.bad_nonce.lock().unwrap() = true;
    let r = sign_in(&t, "carol", &["soc"], &idp).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.as_str().unwrap().contains("nonce"));
    *idp.bad_nonce.lock().unwrap() = false;
    // a callback whose state does not match the browser's cookie (login CSRF)
    let start = t
        .raw(
            Request::builder()
                .uri("/auth/oidc/start")
                .header("host", HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let cookie = cookie_pair(&start, "__Host-firebreak_oidc").unwrap();
    let r = t
        .raw(
            Request::builder()
                .uri("/auth/oidc/callback?code=x&state=attacker")
                .header("host", HOST)
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // without the cookie at all
    let r = t
        .raw(
            Request::builder()
                .uri("/auth/oidc/callback?code=x&state=y")
                .header("host", HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // the provider's own error
    let r = t
        .raw(
            Request::builder()
                .uri("/auth/oidc/callback?error=access_denied&error_description=%3Cscript%3E")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.body.as_str().unwrap().contains("<script>"));
    // not configured: 404
    let plain = TestApp::new().await;
    let r = plain
        .raw(
            Request::builder()
                .uri("/auth/oidc/start")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
