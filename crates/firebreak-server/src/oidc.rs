//! OpenID Connect sign-in: authorization code flow with PKCE (S256), `state` and `nonce`,
//! configured in `[oidc]` of firebreak.toml. The ID token comes straight from the provider's
//! token endpoint over TLS (OIDC Core 3.1.3.7: TLS server validation stands in for the
//! signature); its issuer, audience, expiry and nonce are checked. A claim (`groups` by
//! default) is mapped to Firebreak roles.

use crate::AppState;
use crate::web::{client_info, esc, page, set_session_cookie};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firebreak_app::AppError;
use firebreak_domain::role::Role;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The state cookie carrying `state.nonce.verifier` between the redirect and the callback.
pub const OIDC_COOKIE: &str = "__Host-firebreak_oidc";
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_roles_claim() -> String {
    "groups".into()
}
fn default_display_name() -> String {
    "single sign-on".into()
}

/// `[oidc]` in firebreak.toml.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Confidential clients: sent with HTTP Basic (`client_secret_basic`).
    pub client_secret: Option<String>,
    /// Default: the public URL (or the request's origin) + `/auth/oidc/callback`.
    pub redirect_url: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// A claim holding a string or a list of strings (groups, roles).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim value → Firebreak roles.
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<Role>>,
    /// The sign-in button says "Sign in with <display_name>".
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// Accept an `http://` issuer (tests and labs only).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("role_map", &self.role_map)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// A configured provider: the settings, an HTTP client, the discovery document once read.
pub struct OidcClient {
    pub config: OidcConfig,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl OidcClient {
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
        let insecure = config.issuer.starts_with("http://");
        anyhow::ensure!(
            config.issuer.starts_with("https://") || (insecure && config.allow_insecure_http),
            "oidc.issuer must be an https:// URL (got {:?})",
            config.issuer
        );
        anyhow::ensure!(!config.client_id.is_empty(), "oidc.client_id is empty");
        anyhow::ensure!(
            !config.role_map.is_empty(),
            "oidc.role_map maps no claim value to a role: nobody could sign in"
        );
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!config.allow_insecure_http)
            .build()?;
        Ok(Self {
            config,
            http,
            discovery: tokio::sync::OnceCell::new(),
        })
    }

    async fn discovery(&self) -> anyhow::Result<&Discovery> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let d: Discovery = self
                    .http
                    .get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                anyhow::ensure!(
                    d.issuer.trim_end_matches('/') == self.config.issuer.trim_end_matches('/'),
                    "the discovery document names issuer {:?}, not {:?}",
                    d.issuer,
                    self.config.issuer
                );
                Ok(d)
            })
            .await
    }

    fn redirect_url(&self, web: &crate::web::WebConfig, headers: &HeaderMap) -> String {
        self.config.redirect_url.clone().unwrap_or_else(|| {
            format!(
                "{}{CALLBACK_PATH}",
                web.expected_origin(headers).unwrap_or_default()
            )
        })
    }

    /// Roles granted by the mapped claim values.
    pub fn roles_from(&self, claims: &serde_json::Value) -> Vec<Role> {
        let values: Vec<&str> = match claims.get(&self.config.roles_claim) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => vec![],
        };
        let mut roles: Vec<Role> = values
            .iter()
            .filter_map(|v| self.config.role_map.get(*v))
            .flatten()
            .copied()
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(page(
            "Sign-in failed",
            &format!(
                "<h1>Sign-in failed</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/login\">Back to sign-in</a></p>",
                esc(message)
            ),
        )),
    )
        .into_response()
}

/// `GET /auth/oidc/start`: redirects to the provider.
pub async fn start(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(oidc) = s.web.oidc.clone() else {
        return error_page(StatusCode::NOT_FOUND, "single sign-on is not configured");
    };
    let d = match oidc.discovery().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "OIDC discovery failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "the identity provider cannot be reached; try again later",
            );
        }
    };
    let (state, nonce, verifier) = (random_b64(24), random_b64(24), random_b64(32));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let Ok(mut url) = reqwest::Url::parse(&d.authorization_endpoint) else {
        return error_page(
            StatusCode::BAD_GATEWAY,
            "the identity provider's authorization endpoint is not a URL",
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.config.client_id)
        .append_pair("redirect_uri", &oidc.redirect_url(&s.web, &headers))
        .append_pair("scope", &oidc.config.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut res = Redirect::to(url.as_str()).into_response();
    let cookie = format!(
        "{OIDC_COOKIE}={state}.{nonce}.{verifier}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

fn oidc_cookie(headers: &HeaderMap) -> Option<(String, String, String)> {
    let v = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == OIDC_COOKIE)?
        .1;
    let mut parts = v.split('.');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    Some((a.to_string(), b.to_string(), c.to_string()))
}

/// Checks an ID token's claims (OIDC Core 3.1.3.7) and returns them.
pub fn check_id_token(
    id_token: &str,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<serde_json::Value, String> {
    let payload = id_token
        .split('.')
        .nth(1)
        .ok_or("the ID token is not a JWT")?;
    let raw = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the ID token payload is not base64url")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|_| "the ID token payload is not JSON")?;
    let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
    if iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "the ID token's issuer {iss:?} is not the configured one"
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == client_id,
        Some(serde_json::Value::Array(a)) => {
            a.iter().any(|v| v.as_str() == Some(client_id))
                && (a.len() == 1 || claims.get("azp").and_then(|v| v.as_str()) == Some(client_id))
        }
        _ => false,
    };
    if !aud_ok {
        return Err("the ID token is not for this client".into());
    }
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    if exp + 60 < now {
        return Err("the ID token has expired".into());
    }
    if claims
        .get("iat")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
        > now + 300
    {
        return Err("the ID token is issued in the future".into());
    }
    let got = claims.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
    {
        use subtle::ConstantTimeEq;
        if got.is_empty() || !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err("the ID token's nonce does not match this sign-in".into());
        }
    }
    Ok(claims)
}

/// `GET /auth/oidc/callback`: the provider sends the browser back with a code.
pub async fn callback(
    State(s): State<AppState>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    use subtle::ConstantTimeEq;
    let (parts, _) = req.into_parts();
    let Some(oidc) = s.web.oidc.clone() else {
        return error_page(StatusCode::NOT_FOUND, "single sign-on is not configured");
    };
    let clear = HeaderValue::from_static(
        "__Host-firebreak_oidc=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
    );
    let fail = |status: StatusCode, msg: &str| {
        let mut r = error_page(status, msg);
        r.headers_mut().append(header::SET_COOKIE, clear.clone());
        r
    };
    if let Some(e) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("");
        return fail(
            StatusCode::UNAUTHORIZED,
            &format!("the identity provider refused: {e} {detail}"),
        );
    }
    let Some((state, nonce, verifier)) = oidc_cookie(&parts.headers) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started here or took too long; start again",
        );
    };
    let sent_state = q.state.unwrap_or_default();
    if sent_state.is_empty() || !bool::from(sent_state.as_bytes().ct_eq(state.as_bytes())) {
        return fail(
            StatusCode::FORBIDDEN,
            "the sign-in state does not match (possible forgery)",
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() < 4096) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "the identity provider sent no code",
        );
    };
    let d = match oidc.discovery().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "OIDC discovery failed");
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the identity provider cannot be reached",
            );
        }
    };
    let redirect_uri = oidc.redirect_url(&s.web, &parts.headers);
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut req = oidc.http.post(&d.token_endpoint);
    match &oidc.config.client_secret {
        Some(secret) => req = req.basic_auth(&oidc.config.client_id, Some(secret)),
        None => form.push(("client_id", oidc.config.client_id.clone())),
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let res = req
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await;
    let tokens: TokenResponse = match res {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "OIDC token response unreadable");
                return fail(
                    StatusCode::BAD_GATEWAY,
                    "the identity provider's answer is unreadable",
                );
            }
        },
        Ok(r) => {
            tracing::warn!(status = %r.status(), "OIDC token endpoint refused the code");
            return fail(
                StatusCode::UNAUTHORIZED,
                "the identity provider refused the sign-in code",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC token endpoint unreachable");
            return fail(
                StatusCode::BAD_GATEWAY,
                "the identity provider cannot be reached",
            );
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = match check_id_token(
        &tokens.id_token,
        &d.issuer,
        &oidc.config.client_id,
        &nonce,
        now,
    ) {
        Ok(c) => c,
        Err(m) => {
            tracing::warn!(problem = %m, "OIDC ID token refused");
            return fail(StatusCode::UNAUTHORIZED, &m);
        }
    };
    let Some(username) = claims
        .get(&oidc.config.username_claim)
        .and_then(|v| v.as_str())
        .map(str::to_string)
    else {
        return fail(
            StatusCode::FORBIDDEN,
            &format!("the ID token has no {:?} claim", oidc.config.username_claim),
        );
    };
    let Some(sub) = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
    else {
        return fail(StatusCode::FORBIDDEN, "the ID token has no subject");
    };
    let subject = format!("{} {sub}", d.issuer.trim_end_matches('/'));
    let roles = oidc.roles_from(&claims);
    let email = claims.get("email").and_then(|v| v.as_str());
    let client = client_info(&parts, &s.web);
    let app_now = s.app.now_utc();
    match s
        .app
        .login_external("oidc", &subject, &username, &roles, email, &client)
        .await
    {
        Ok(session) => {
            let mut res = Redirect::to("/").into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_session_cookie(
                    &session.secret,
                    (session.expires_at - app_now).whole_seconds(),
                ),
            );
            h.append(header::SET_COOKIE, clear.clone());
            res
        }
        Err(AppError::Forbidden(m)) => fail(StatusCode::FORBIDDEN, &m),
        Err(AppError::TooManyAttempts { .. }) => fail(
            StatusCode::TOO_MANY_REQUESTS,
            "too many attempts; try later",
        ),
        Err(AppError::InvalidCredentials) => {
            fail(StatusCode::UNAUTHORIZED, "this account is disabled")
        }
        Err(e) => {
            tracing::error!(error = %e, "OIDC sign-in failed");
            fail(StatusCode::SERVICE_UNAVAILABLE, "sign-in failed; try again")
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The provider's button on the sign-in page, if one is configured.
pub fn button(oidc: Option<&Arc<OidcClient>>) -> String {
    oidc.map(|o| {
        format!(
            "<p><a class=\"sso\" href=\"/auth/oidc/start\">Sign in with {}</a></p>",
            esc(&o.config.display_name)
        )
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn id_token_claims_are_checked() {
        let good = serde_json::json!({"iss": "https://idp", "aud": "fb", "exp": 2000, "iat": 1000, "nonce": "n1", "sub": "x"});
        assert!(check_id_token(&token(&good), "https://idp/", "fb", "n1", 1500).is_ok());
        let cases = [
            ("iss", serde_json::json!("https://evil")),
            ("aud", serde_json::json!("other")),
            ("aud", serde_json::json!(["fb", "other"])),
            ("exp", serde_json::json!(1000)),
            ("iat", serde_json::json!(9000)),
            ("nonce", serde_json::json!("n2")),
        ];
        for (k, v) in cases {
            let mut c = good.clone();
            c[k] = v;
            assert!(
                check_id_token(&token(&c), "https://idp", "fb", "n1", 1500).is_err(),
                "{k}"
            );
        }
        let mut multi = good;
        multi["aud"] = serde_json::json!(["fb", "other"]);
        multi["azp"] = serde_json::json!("fb");
        assert!(check_id_token(&token(&multi), "https://idp", "fb", "n1", 1500).is_ok());
        assert!(check_id_token("garbage", "https://idp", "fb", "n1", 1500).is_err());
    }
}
