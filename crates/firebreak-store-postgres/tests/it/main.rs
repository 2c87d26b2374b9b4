//! The store conformance suite on the real PostgreSQL (`FIREBREAK_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own schema. An unreachable
//! database fails the tests: it is never a skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

use firebreak_store::conformance::TestStore;
use firebreak_store::{AuditSigner, DynStore};
use firebreak_store_postgres::PgStore;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;

fn url() -> String {
    std::env::var("FIREBREAK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn postgres() -> TestStore {
    let url = url();
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is required for these tests (FIREBREAK_TEST_DATABASE_URL): {e}")
    });
    let schema = format!("fbt_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let signer = Arc::new(AuditSigner::ephemeral());
    let store: DynStore = Arc::new(PgStore::open_with(opts, signer.clone(), 8).await.unwrap());
    TestStore {
        store,
        signer,
        guard: Box::new(SchemaGuard { admin, schema }),
    }
}

/// Drops the test's schema when the test ends.
struct SchemaGuard {
    admin: sqlx::PgPool,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (admin, schema) = (self.admin.clone(), self.schema.clone());
        // a runtime of its own: Drop may run inside or outside the test's runtime
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&admin)
                            .await;
                });
            }
        })
        .join();
    }
}

firebreak_store::store_conformance_suite!(postgres);

#[test]
fn both_backends_ship_the_same_migration_versions() {
    assert_eq!(
        firebreak_store_postgres::migration_versions(),
        firebreak_store_sqlite_versions()
    );
}

fn firebreak_store_sqlite_versions() -> Vec<i64> {
    // read the sibling crate's folder: the tidy rule is "same versions in both folders"
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firebreak-store-sqlite/migrations");
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}
