//! Browser-facing plumbing: the session cookie, where a request comes from (client address
//! behind trusted proxies, expected origin), CSRF checks, and the sign-in pages.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use firebreak_app::auth::ClientInfo;
use std::net::{IpAddr, SocketAddr};

/// The session cookie. `__Host-`: Secure, path `/`, no Domain, so no other site or subdomain
/// can set or read it.
pub const SESSION_COOKIE: &str = "__Host-firebreak_session";

/// How the server is reached.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `https://firebreak.example.org`: the origin browsers use. Without it, the request's own
    /// scheme and `Host` are expected.
    pub public_origin: Option<String>,
    /// TLS is terminated by this process or by a proxy in front of it (adds HSTS; the
    /// expected origin is `https://`).
    pub secure_transport: bool,
    /// Peers whose `X-Forwarded-For` is believed (the TLS proxy).
    pub trusted_proxies: Vec<IpAddr>,
    /// Single sign-on through an OpenID Connect provider.
    pub oidc: Option<std::sync::Arc<crate::oidc::OidcClient>>,
    /// Intake: configured webhook sources, body limits, backpressure.
    pub intake: crate::intake::IntakeSettings,
}

impl WebConfig {
    fn scheme(&self) -> &'static str {
        if self.secure_transport {
            "https"
        } else {
            "http"
        }
    }

    /// The origin a same-site browser request carries.
    pub fn expected_origin(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(o) = &self.public_origin {
            return Some(o.trim_end_matches('/').to_ascii_lowercase());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Some(format!("{}://{}", self.scheme(), host.to_ascii_lowercase()))
    }
}

/// The client's address: the peer, or the right-most address of `X-Forwarded-For` that is not
/// a trusted proxy when the peer is one.
pub fn client_info(parts: &Parts, web: &WebConfig) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<crate::tls::TlsPeer>>()
                .map(|c| c.0.0.ip())
        });
    // an IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d
    let peer = peer.map(|p| p.to_canonical());
    let mut addr = peer;
    if let Some(p) = peer
        && web.trusted_proxies.contains(&p)
    {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect::<Vec<_>>();
        if let Some(ip) = forwarded
            .iter()
            .rev()
            .find(|ip| !web.trusted_proxies.contains(ip))
        {
            addr = Some(*ip);
        }
    }
    ClientInfo {
        addr: addr.map(|a| a.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// The session secret from the `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn set_session_cookie(secret: &str, max_age_secs: i64) -> HeaderValue {
    let v = format!(
        "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age_secs.max(0)
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-firebreak_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
    )
}

fn csrf_denied(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_rejected",
        format!("cross-site request refused: {why}"),
    )
}

/// The request comes from a page of this site: `Sec-Fetch-Site` (when sent) is `same-origin`
/// and `Origin` (when sent) is the expected origin.
pub fn check_same_origin(headers: &HeaderMap, web: &WebConfig) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err(csrf_denied("Sec-Fetch-Site is not same-origin"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        match web.expected_origin(headers) {
            Some(expected) if origin == expected => {}
            _ => return Err(csrf_denied("Origin does not match this site")),
        }
    }
    Ok(())
}

pub fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A state-changing request made with a session cookie: same origin, and the session's CSRF
/// token in `X-CSRF-Token` (or, for HTML forms, in the `csrf_token` field: `form_token`).
pub fn check_csrf(
    headers: &HeaderMap,
    web: &WebConfig,
    expected_token: &str,
    form_token: Option<&str>,
) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    check_same_origin(headers, web)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token)
        .unwrap_or("");
    if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected_token.as_bytes())) {
        return Err(csrf_denied("missing or wrong CSRF token (X-CSRF-Token)"));
    }
    Ok(())
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    firebreak_app::reports::html_escape(s)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.5}\
h1{margin-bottom:.25rem}label{display:block;margin-top:1rem;font-weight:600}\
input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box;border:1px solid #767676;border-radius:4px}\
button{margin-top:1.25rem;padding:.55rem 1.2rem;font-size:1rem;background:#0b5394;color:#fff;border:0;border-radius:4px;cursor:pointer}\
button:focus,input:focus{outline:3px solid #f0b400;outline-offset:1px}\
.error{background:#fde8e8;border:1px solid #b40000;color:#6b0000;padding:.6rem .8rem;border-radius:4px}\
a{color:#0645ad}a.sso{display:inline-block;margin-top:1rem;padding:.5rem 1rem;border:1px solid #0b5394;border-radius:4px;text-decoration:none}code{background:#f1f1f1;padding:.1rem .3rem;border-radius:3px}";

/// A complete, script-free HTML page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Firebreak</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        esc(title)
    )
}

pub fn login_page(error: Option<&str>, username: &str, sso: &str) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Firebreak</h1><p>Security incident management and response.</p>{err}\
<form method=\"post\" action=\"/login\">\
<label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{}\">\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>{sso}\
<p><small><a href=\"/api/docs/\">API documentation</a></small></p>",
            esc(username)
        ),
    )
}

pub fn second_factor_page(error: Option<&str>, csrf: &str) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Second factor",
        &format!(
            "<h1>Second factor</h1>{err}<form method=\"post\" action=\"/login/second-factor\"><input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
<label for=\"code\">Code from your authenticator app, or a recovery code</label>\
<input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"text\" required autofocus>\
<button type=\"submit\">Verify</button></form>",
            csrf = esc(csrf)
        ),
    )
}

impl AppState {
    pub fn web(&self) -> &WebConfig {
        &self.web
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn csrf_rules() {
        let web = WebConfig::default();
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("x-csrf-token", "t"),
        ]);
        assert!(check_csrf(&ok, &web, "t", None).is_ok());
        assert!(check_csrf(&ok, &web, "other", None).is_err());
        let cross = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.2:8080"),
            ("x-csrf-token", "t"),
        ]);
        assert!(check_csrf(&cross, &web, "t", None).is_err());
        let site = headers(&[
            ("host", "a"),
            ("sec-fetch-site", "cross-site"),
            ("x-csrf-token", "t"),
        ]);
        assert!(check_csrf(&site, &web, "t", None).is_err());
        let form = headers(&[("host", "a"), ("sec-fetch-site", "same-origin")]);
        assert!(check_csrf(&form, &web, "t", Some("t")).is_ok());
        assert!(check_csrf(&form, &web, "t", None).is_err());
        let null = headers(&[("host", "a"), ("origin", "null"), ("x-csrf-token", "t")]);
        assert!(check_csrf(&null, &web, "t", None).is_err());
    }

    #[test]
    fn cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; __Host-firebreak_session=abc; b=2")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "firebreak_session=x")])),
            None
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }
}
