//! `firebreak audit verify`: walks the whole chain in pages against the stored checkpoints and the
//! signed head kept outside the database.

use firebreak_domain::audit::{ChainBreak, ChainVerifier, VerifyReport};
use firebreak_store::{DynStore, HeadFile};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    #[error("cannot verify: {0:#}")]
    Io(anyhow::Error),
}

/// How often verification catches up with checkpoints committed while it runs.
const CATCH_UP_ROUNDS: usize = 64;

pub async fn verify_audit(
    store: &DynStore,
    key: ed25519_dalek::VerifyingKey,
    head: &HeadFile,
) -> Result<VerifyReport, VerifyError> {
    let io = |e: firebreak_store::StoreError| VerifyError::Io(e.into());
    // The head file is read first: anything committed after it is newer, never older.
    // of the file's two slots, the newest with a valid signature (a crash may have torn the other)
    let heads = head.read_all().map_err(VerifyError::Io)?;
    let head_cp = heads
        .iter()
        .find(|c| firebreak_domain::audit::checkpoint_is_valid(&key, c))
        .or(heads.first())
        .cloned();
    let mut v = ChainVerifier::new(key, store.checkpoints_after(0).await.map_err(io)?, head_cp);
    // Entries are verified up to the newest checkpoint loaded; servers may commit meanwhile, so
    // newer checkpoints are fetched and verification continues until it has caught up.
    let mut caught_up = false;
    for _ in 0..CATCH_UP_ROUNDS {
        let limit = v.newest_checkpoint();
        let mut after = v.verified_up_to();
        while after < limit {
            let page = store.audit_entries(after, 2000).await.map_err(io)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in page.iter().take_while(|r| r.seq <= limit) {
                v.push(r)?;
            }
        }
        let newer = store
            .audit_entries(v.verified_up_to(), 1)
            .await
            .map_err(io)?;
        if newer.is_empty() {
            caught_up = true;
            break;
        }
        let before = v.newest_checkpoint();
        v.add_checkpoints(store.checkpoints_after(before).await.map_err(io)?);
        if v.newest_checkpoint() == before {
            // entries after the newest signed checkpoint, and none is coming: forged
            for r in &newer {
                v.push(r)?;
            }
            caught_up = true;
            break;
        }
    }
    if !caught_up {
        v.stop_at_verified();
    }
    Ok(v.finish()?)
}
