//! HTTP behaviour through the real router (`oneshot`), on a fresh SQLite database per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

mod auth;
mod automation;
mod bad_input;
mod documents;
mod imap;
mod intake;
mod matrix;
mod oidc;
mod response;
mod search;
mod tickets;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use firebreak_app::{App, AppConfig, NewUser, TokenSpec};
use firebreak_domain::role::{Role, Scope};
use firebreak_store::{AuditSigner, DynStore};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub app: App,
    pub clock: Arc<TestClock>,
    pub dir: tempfile::TempDir,
    _pg: Option<PgSchema>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh schema on the test PostgreSQL (`FIREBREAK_TEST_DATABASE_URL`), dropped at the end.
/// An unreachable database fails the test: it is never a skip.
struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // a connection of its own on a runtime of its own: the test's runtime is not polled
        // while this runs, so nothing created on it may be awaited here
        let (url, name) = (self.url.clone(), self.name.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    }
}

async fn postgres_store() -> (DynStore, PgSchema) {
    use std::str::FromStr;
    let url = std::env::var("FIREBREAK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("fbs_{}", uuid::Uuid::now_v7().simple());
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {url} is required for these tests (FIREBREAK_TEST_DATABASE_URL): {e}"
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", name.as_str())]);
    let store: DynStore = Arc::new(
        firebreak_store_postgres::PgStore::open_with(opts, Arc::new(AuditSigner::ephemeral()), 8)
            .await
            .unwrap(),
    );
    (store, PgSchema { url, name })
}

/// The wall clock plus an offset the test moves forward.
#[derive(Default)]
pub struct TestClock {
    offset_secs: std::sync::atomic::AtomicI64,
}

impl TestClock {
    pub fn advance(&self, d: time::Duration) {
        self.offset_secs
            .fetch_add(d.whole_seconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl firebreak_app::Clock for TestClock {
    fn now(&self) -> time::OffsetDateTime {
        let off = self.offset_secs.load(std::sync::atomic::Ordering::SeqCst);
        firebreak_store::truncate_millis(
            time::OffsetDateTime::now_utc() + time::Duration::seconds(off),
        )
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(
            AppConfig::default(),
            firebreak_server::web::WebConfig::default(),
        )
        .await
    }

    pub async fn on(backend: Backend) -> Self {
        Self::build(
            backend,
            AppConfig::default(),
            firebreak_server::web::WebConfig::default(),
        )
        .await
    }

    pub async fn with_config(config: AppConfig, web: firebreak_server::web::WebConfig) -> Self {
        Self::build(Backend::Sqlite, config, web).await
    }

    /// A test app whose application is adjusted by `f` (transports, ...).
    pub async fn adjusted(f: impl FnOnce(App) -> App) -> Self {
        let mut t = Self::new().await;
        t.app = f(t.app.clone());
        t.router = firebreak_server::router(t.app.clone());
        t
    }

    /// A test app whose email notifications go through `mailer`.
    pub async fn with_mailer(mailer: Arc<dyn firebreak_app::notify::Mailer>) -> Self {
        let mut t = Self::new().await;
        t.app = t.app.clone().with_mailer(mailer);
        t.router = firebreak_server::router(t.app.clone());
        t
    }

    async fn build(
        backend: Backend,
        config: AppConfig,
        web: firebreak_server::web::WebConfig,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("FIREBREAK_TEST_LOG")
                    .unwrap_or_else(|_| "off".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (store, pg): (DynStore, Option<PgSchema>) = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                let store = firebreak_store_sqlite::SqliteStore::open(
                    &url,
                    Arc::new(AuditSigner::ephemeral()),
                )
                .await
                .unwrap();
                (Arc::new(store), None)
            }
            Backend::Postgres => {
                let (store, schema) = postgres_store().await;
                (store, Some(schema))
            }
        };
        let clock = Arc::new(TestClock::default());
        let blobs =
            firebreak_app::documents::BlobStore::new([9u8; 32], Some(dir.path().join("blobs")))
                .unwrap();
        let app = App::with_clock(store, config, clock.clone()).with_blobs(blobs);
        Self {
            router: firebreak_server::router_with(app.clone(), web),
            app,
            clock,
            dir,
            _pg: pg,
        }
    }

    /// Creates a user with these roles and returns a token for them.
    pub async fn user(&self, name: &str, roles: &[Role]) -> String {
        self.user_with(name, roles, &[], &[]).await
    }

    pub async fn user_with(
        &self,
        name: &str,
        roles: &[Role],
        scopes: &[Scope],
        clearances: &[&str],
    ) -> String {
        self.app
            .add_user(
                "test",
                &NewUser {
                    username: name.into(),
                    roles: roles.to_vec(),
                    on_duty: true,
                    clearances: clearances.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.token(name, scopes).await
    }

    pub async fn token(&self, name: &str, scopes: &[Scope]) -> String {
        let (_, secret) = self
            .app
            .create_token(
                "test",
                &TokenSpec {
                    username: name.into(),
                    scopes: scopes.to_vec(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        secret
    }

    pub async fn raw(&self, mut req: Request<Body>) -> Resp {
        // as axum::serve does: the peer address, when the test names one with X-Test-Peer
        let peer: Option<std::net::SocketAddr> = req
            .headers()
            .get("x-test-peer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(peer));
        }
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Resp {
        self.call("GET", uri, Some(token), None).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Resp {
        self.call("POST", uri, Some(token), Some(body)).await
    }
}

/// Asserts the error envelope, its status and code, and returns the first detail's field.
pub fn assert_error(r: &Resp, status: StatusCode, code: &str) -> Option<String> {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.body["error"]["code"], code, "body: {}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(r.body["error"]["details"].is_array());
    r.body["error"]["details"][0]["field"]
        .as_str()
        .map(str::to_string)
}

/// A `multipart/form-data` body: text fields, then the file in field `file` (when given).
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "fbk-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl TestApp {
    /// Uploads a document with a bearer token.
    pub async fn upload(&self, uri: &str, token: &str, name: &str, bytes: &[u8]) -> Resp {
        let (ct, body) = multipart(&[("description", "test evidence")], Some((name, bytes)));
        self.raw(
            Request::builder()
                .method("POST")
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Raw bytes of a response (downloads).
    pub async fn bytes(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024 * 1024)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (status, headers, bytes)
    }
}
