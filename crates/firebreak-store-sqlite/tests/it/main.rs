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

/// The whole suite again with the second levels (event-observable links, dedup keys) merged
/// into their tables after every commit (by default every 300,000 rows): every behaviour then
/// reads from both levels and from the merged one, and snapshots carry both.
mod levels_merged_at_once {
    use super::*;
    use firebreak_store_sqlite::SqliteOptions;

    async fn sqlite_merging() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let signer = Arc::new(AuditSigner::ephemeral());
        let options = SqliteOptions { merge_at: 1 };
        let store: DynStore = Arc::new(
            SqliteStore::open_with(&url, signer.clone(), options)
                .await
                .unwrap(),
        );
        TestStore {
            store,
            signer,
            guard: Box::new(dir),
        }
    }

    firebreak_store::store_conformance_suite!(sqlite_merging);
}

#[tokio::test]
async fn database_is_in_wal_mode_and_opens_from_two_processes() {
    // the writer's own connection refuses to start unless journal_mode=wal and synchronous=FULL;
    // here: the file is in WAL mode for every other connection, and a second store (the CLI while
    // a server runs) opens the same file
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let a = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    let b = SqliteStore::open(&url, Arc::new(AuditSigner::ephemeral()))
        .await
        .unwrap();
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(
        firebreak_store::Store::integrity_check(&a)
            .await
            .unwrap()
            .is_empty()
    );
    firebreak_store::Store::close(&a).await;
    firebreak_store::Store::close(&b).await;
}
