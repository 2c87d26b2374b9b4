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

pub async fn verify_audit(store: &DynStore, key: ed25519_dalek::VerifyingKey, head: &HeadFile) -> Result<VerifyReport, VerifyError> {
    // The head file is read first: anything committed after it is newer, never older.
    let head_cp = head.read().map_err(VerifyError::Io)?;
    let cps = store.checkpoints().await.map_err(|e| VerifyError::Io(e.into()))?;
    let mut v = ChainVerifier::new(key, cps, head_cp);
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 2000).await.map_err(|e| VerifyError::Io(e.into()))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push(r)?;
        }
    }
    Ok(v.finish()?)
}
