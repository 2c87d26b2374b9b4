//! HTTP behaviour through the real router (`oneshot`), on a fresh SQLite database per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

mod bad_input;
mod matrix;
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
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store: DynStore = Arc::new(
            firebreak_store_sqlite::SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
                .await
                .unwrap(),
        );
        let app = App::new(store, AppConfig::default());
        Self {
            router: firebreak_server::router(app.clone()),
            app,
            _dir: dir,
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

    pub async fn raw(&self, req: Request<Body>) -> Resp {
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
