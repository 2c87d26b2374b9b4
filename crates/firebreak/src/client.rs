//! The HTTP plumbing of the client commands (`ingest --url`, `ticket`): the `--url`/`--token`
//! checks, one reqwest client, retries (connection errors; 429/503 waited out with their
//! `Retry-After`) and the API's error envelope read back into a [`Refusal`]. It opens nothing
//! local (no data dir, no database) and knows no endpoint.

use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

/// How persistent a client is.
#[derive(Clone, Copy)]
pub struct Policy {
    /// Waits between attempts after a connection error; their count is the number of retries.
    pub backoff: &'static [Duration],
    /// The longest `Retry-After` obeyed.
    pub max_retry_after: Duration,
    /// How long one request may be refused with 429/503 before that answer is final.
    pub max_refused: Duration,
    /// Resend a POST/PATCH that may have reached the server (a timeout, a lost answer). Only
    /// for requests whose repeats the server absorbs (intake counts a repeat, never loses one).
    pub resend_writes: bool,
    /// How long to wait for an answer once the request is sent.
    pub read_timeout: Duration,
}

/// A bulk sender (`ingest --url`): patient, and every chunk may be resent.
pub const BULK: Policy = Policy {
    backoff: &[
        Duration::from_millis(250),
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(4),
    ],
    max_retry_after: Duration::from_secs(30),
    max_refused: Duration::from_secs(600),
    resend_writes: true,
    // a chunk commits in well under this; a server that hangs longer is retried
    read_timeout: Duration::from_secs(300),
};

/// A person at a terminal (`ticket`): gives up within seconds when nothing listens, and never
/// repeats a change that may have been made.
pub const INTERACTIVE: Policy = Policy {
    backoff: &[
        Duration::from_millis(200),
        Duration::from_millis(500),
        Duration::from_secs(1),
    ],
    max_retry_after: Duration::from_secs(10),
    max_refused: Duration::from_secs(60),
    resend_writes: false,
    read_timeout: Duration::from_secs(30),
};

/// Why a request failed for good.
#[derive(Debug)]
pub enum Failure {
    /// The server answered, and not with 2xx.
    Refused(Box<Refusal>),
    /// No answer: nothing listens, the connection broke, or the answer could not be read.
    Unreachable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(r) => r.fmt(f),
            Failure::Unreachable(m) => f.write_str(m),
        }
    }
}

/// A non-2xx answer, with the error envelope's parts when the body is one.
#[derive(Debug)]
pub struct Refusal {
    pub url: String,
    pub status: StatusCode,
    /// `error.code`, empty when the body is no envelope.
    pub code: String,
    /// `error.message`, or the start of a body that is no envelope.
    pub message: String,
    /// `error.details`: (field, message).
    pub details: Vec<(String, String)>,
    /// What to do about it (a 401's token, a redirect's target).
    pub hint: Option<String>,
}

impl Refusal {
    fn new(url: &str, status: StatusCode, body: &[u8], location: Option<String>) -> Self {
        let (code, message, details) = parse_envelope(body);
        let hint = if status == StatusCode::UNAUTHORIZED {
            Some("check --token / FIREBREAK_TOKEN".to_string())
        } else if status.is_redirection() {
            location.map(|l| format!("Location: {l}; give that as --url"))
        } else {
            None
        };
        Refusal {
            url: url.to_string(),
            status,
            code,
            message,
            details,
            hint,
        }
    }
}

/// One line: `URL answered STATUS: message (code); field: message (hint)`.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered {}", self.url, self.status)?;
        if !self.message.is_empty() || !self.code.is_empty() {
            write!(f, ": {}", self.message)?;
            if !self.code.is_empty() {
                write!(f, " ({})", self.code)?;
            }
        }
        for (field, m) in &self.details {
            write!(f, "; {field}: {m}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// `(code, message, details)` of the envelope `{"error": {"code", "message", "details"}}`, or
/// an empty code and the start of a body that is not one.
fn parse_envelope(body: &[u8]) -> (String, String, Vec<(String, String)>) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(e) = v.get("error")
    {
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let details = e
            .get("details")
            .and_then(|d| d.as_array())
            .map(|ds| {
                ds.iter()
                    .map(|d| (text(d, "field"), text(d, "message")))
                    .collect()
            })
            .unwrap_or_default();
        return (text(e, "code"), text(e, "message"), details);
    }
    let text = String::from_utf8_lossy(body);
    (
        String::new(),
        text.trim().chars().take(200).collect(),
        Vec::new(),
    )
}

/// The source's message and its causes (reqwest hides the useful part, e.g. "Connection
/// refused", in the chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cause = c.source();
    }
    s
}

/// A server's API as one token's holder sees it.
pub struct Api {
    http: reqwest::Client,
    /// `http(s)://host:port[/prefix]`, without a trailing `/`.
    base: String,
    token: String,
    policy: Policy,
}

impl Api {
    /// Checks `--url` and `--token` (a message for the user when they are missing or unusable:
    /// a usage error) and builds the client. `agent` names the command in `User-Agent`.
    pub fn new(
        url: Option<&str>,
        token: Option<&str>,
        agent: &str,
        policy: Policy,
    ) -> Result<Api, String> {
        let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
            return Err("no server: give --url URL or set FIREBREAK_URL".into());
        };
        let Some(token) = token else {
            return Err(format!(
                "--url {url} needs --token (or FIREBREAK_TOKEN); create one with: firebreak token create --user NAME"
            ));
        };
        if token.trim().is_empty() {
            return Err("--token: empty".into());
        }
        let base = url.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => return Err(format!("--url {url}: not an http:// or https:// URL")),
        }
        let http = reqwest::Client::builder()
            .user_agent(format!("firebreak-{agent}/{}", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(policy.read_timeout)
            // a redirect would drop the body (and maybe the token): reported instead
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))?;
        Ok(Api {
            http,
            base,
            token: token.trim().to_string(),
            policy,
        })
    }

    /// `base` + `path` (`/api/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `body` (with its content type) to `url` until it is answered 2xx: waits out
    /// 429/503 (`Retry-After`, within the policy), retries connection errors with the policy's
    /// backoff, and resends a write that may have arrived only when the policy allows. Fails
    /// at once on any other answer. Returns the 2xx body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Vec<u8>, Failure> {
        let resend = self.policy.resend_writes || !matches!(method, Method::POST | Method::PATCH);
        let mut failures = 0usize;
        let mut refused_since: Option<Instant> = None;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&self.token)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some((content_type, bytes)) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(bytes.to_vec());
            }
            let res = match req.send().await {
                Ok(r) => r,
                // a server that took the request and did not answer in time is not retried by
                // a person's command: the wait is over at once, with what it means
                Err(e) if e.is_timeout() && !e.is_connect() && !self.policy.resend_writes => {
                    return Err(Failure::Unreachable(format!(
                        "{method} {url}: no answer within {} s{}",
                        self.policy.read_timeout.as_secs(),
                        if matches!(method, Method::POST | Method::PATCH) {
                            "; the change may or may not have been made"
                        } else {
                            ""
                        }
                    )));
                }
                Err(e) => {
                    // a connection that was never made carried nothing: always safe to retry
                    if !(resend || e.is_connect()) {
                        return Err(Failure::Unreachable(format!(
                            "{method} {url}: no answer ({}); the change may or may not have been made",
                            error_chain(&e)
                        )));
                    }
                    let Some(wait) = self.policy.backoff.get(failures) else {
                        return Err(Failure::Unreachable(format!(
                            "cannot reach {url} ({} attempts): {}",
                            failures + 1,
                            error_chain(&e)
                        )));
                    };
                    failures += 1;
                    tracing::debug!(error = %error_chain(&e), ?wait, "retrying");
                    tokio::time::sleep(*wait).await;
                    continue;
                }
            };
            let status = res.status();
            let header = |name| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after =
                header(reqwest::header::RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok());
            let location = header(reqwest::header::LOCATION);
            let bytes = match res.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) if status.is_success() => {
                    let wait = self.policy.backoff.get(failures);
                    if let Some(wait) = wait
                        && resend
                    {
                        // a write may be committed; resending counts repeats, never loses any
                        failures += 1;
                        tokio::time::sleep(*wait).await;
                        continue;
                    }
                    return Err(Failure::Unreachable(format!(
                        "{url}: the answer could not be read: {}",
                        error_chain(&e)
                    )));
                }
                Err(_) => Vec::new(),
            };
            if status.is_success() {
                return Ok(bytes);
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.policy.max_refused {
                    let wait = Duration::from_secs(retry_after.unwrap_or(1))
                        .min(self.policy.max_retry_after);
                    tracing::debug!(%status, ?wait, "server busy, waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let refusal = Refusal::new(url, status, &bytes, location);
            return Err(Failure::Refused(Box::new(refusal)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_error_envelope_is_one_line() {
        let body = br#"{"error":{"code":"unauthenticated","message":"missing or invalid credentials","details":[]}}"#;
        let r = Refusal::new("http://x/api", StatusCode::UNAUTHORIZED, body, None);
        assert_eq!(
            r.to_string(),
            "http://x/api answered 401 Unauthorized: missing or invalid credentials (unauthenticated) (check --token / FIREBREAK_TOKEN)"
        );
        let body = br#"{"error":{"code":"validation_failed","message":"bad","details":[{"field":"severity","message":"unknown variant"}]}}"#;
        let r = Refusal::new("u", StatusCode::UNPROCESSABLE_ENTITY, body, None);
        assert_eq!(r.code, "validation_failed");
        assert_eq!(
            r.details,
            vec![("severity".to_string(), "unknown variant".to_string())]
        );
        let r = Refusal::new("u", StatusCode::BAD_GATEWAY, b"  ", None);
        assert_eq!(r.to_string(), "u answered 502 Bad Gateway");
        let r = Refusal::new("u", StatusCode::FOUND, b"", Some("https://x/".into()));
        assert!(
            r.to_string()
                .ends_with("(Location: https://x/; give that as --url)")
        );
    }

    #[test]
    fn client_checks_url_and_token() {
        firebreak_server::tls::install_crypto_provider();
        let new = |u: Option<&str>, t: Option<&str>| Api::new(u, t, "test", INTERACTIVE).err();
        assert!(new(None, Some("t")).unwrap().contains("FIREBREAK_URL"));
        assert!(
            new(Some("http://h:1"), None)
                .unwrap()
                .contains("FIREBREAK_TOKEN")
        );
        assert!(
            new(Some("ftp://h"), Some("t"))
                .unwrap()
                .contains("not an http")
        );
        assert!(
            new(Some("http://h:1"), Some(" "))
                .unwrap()
                .contains("empty")
        );
        assert!(new(Some("http://h:1/"), Some("t")).is_none());
    }
}
