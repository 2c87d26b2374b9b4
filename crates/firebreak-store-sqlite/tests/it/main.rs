//! The store conformance suite on SQLite, plus SQLite-specific durability checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a panic"
)]

use firebreak_store::conformance::TestStore;
use firebreak_store::{AuditSigner, DynStore};
use firebreak_store_sqlite::SqliteStore;
use std::sync::Arc;

async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let signer = Arc::new(AuditSigner::ephemeral());
    let store: DynStore = Arc::new(SqliteStore::open(&url, signer.clone()).await.unwrap());
    TestStore {
        store,
        signer,
        guard: Box::new(dir),
    }
}

firebreak_store::store_conformance_suite!(sqlite);

#[tokio::test]
async fn sqlite_is_opened_with_wal_and_full_sync() {
    // open() refuses to start otherwise; a second open of the same file also works (CLI + server)
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let a = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    let b = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    assert!(a.integrity_check().await.unwrap().is_empty());
    firebreak_store::Store::close(&a).await;
    firebreak_store::Store::close(&b).await;
}
