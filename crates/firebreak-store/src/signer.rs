//! The audit signing key (kept outside the database) and the head file `<data dir>/audit-head`,
//! which every committing process replaces atomically with the newest signed chain head.

use anyhow::{Context, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};
use firebreak_domain::audit::{Checkpoint, sign_checkpoint};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Signs chain heads and publishes the newest one to the head file.
pub struct AuditSigner {
    key: SigningKey,
    head: Option<HeadFile>,
    /// The newest seq this process published (skips needless rewrites; serializes writers).
    published: Mutex<i64>,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field(
                "key_id",
                &firebreak_domain::audit::key_id(&self.key.verifying_key()),
            )
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    pub fn new(key: SigningKey, head: Option<HeadFile>) -> Self {
        Self {
            key,
            head,
            published: Mutex::new(0),
        }
    }

    /// A signer with a fixed key and no head file (tests).
    pub fn ephemeral() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Self::new(SigningKey::from_bytes(&seed), None)
    }

    /// Loads the key from `path`, creating it (mode 0600) when `create` and it does not exist.
    pub fn load_key(path: &Path, create: bool) -> anyhow::Result<SigningKey> {
        match fs::read_to_string(path) {
            Ok(text) => parse_key(text.trim())
                .with_context(|| format!("reading audit key {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                write_private(path, format!("{}\n", hex::encode(seed)).as_bytes())
                    .with_context(|| format!("creating audit key {}", path.display()))?;
                Ok(SigningKey::from_bytes(&seed))
            }
            Err(e) => Err(e).with_context(|| format!("reading audit key {}", path.display())),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, seq: i64, hash: &str) -> Checkpoint {
        sign_checkpoint(&self.key, seq, hash)
    }

    /// Publishes a committed checkpoint to the head file, if newer than what is there, before
    /// the commit is acknowledged (once per batch). Failure is logged, not returned: the commit
    /// already happened, and a lagging head file only narrows what `audit verify` can prove,
    /// never makes a good chain look bad.
    pub fn publish(&self, cp: &Checkpoint) {
        let Some(head) = &self.head else { return };
        let Ok(mut published) = self.published.lock() else {
            return;
        };
        if *published >= cp.seq {
            return;
        }
        match head.write_if_newer(cp) {
            Ok(()) => *published = cp.seq,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), path = %head.path.display(), "could not update the audit head file")
            }
        }
    }
}

fn parse_key(text: &str) -> anyhow::Result<SigningKey> {
    let bytes = hex::decode(text).context("the key must be 64 hex digits")?;
    let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("the key must be 32 bytes (64 hex digits)");
    };
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a new file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `<data dir>/audit-head`: the newest signed head, outside the database.
///
/// The file holds two fixed-size slots of one JSON line each. A write goes in place (no rename,
/// no metadata change: it costs microseconds on the commit path) into the slot holding the older
/// head, so a write torn by a crash can only damage that slot: the other still holds a valid,
/// signed head. Readers take the newest slot that parses; `audit verify` the newest whose
/// signature is valid.
#[derive(Debug, Clone)]
pub struct HeadFile {
    path: PathBuf,
    /// The open file, kept across writes (one per process and path).
    file: Arc<Mutex<Option<File>>>,
}

/// Bytes per slot: a checkpoint's JSON (~270 bytes) padded with spaces, then a newline.
const SLOT: usize = 512;

impl HeadFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every parseable head in the file, newest first.
    pub fn read_all(&self) -> anyhow::Result<Vec<Checkpoint>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        Ok(parse_slots(&bytes))
    }

    /// The newest parseable head.
    pub fn read(&self) -> anyhow::Result<Option<Checkpoint>> {
        Ok(self.read_all()?.into_iter().next())
    }

    /// Writes `cp` unless the file already holds a head at least as new; an exclusive lock
    /// serializes the processes sharing the data dir. No fsync: the file must survive the process
    /// (kill -9); after a power loss an older head only narrows what verification proves.
    pub fn write_if_newer(&self, cp: &Checkpoint) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut guard = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("head file lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(
                File::options()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&self.path)?,
            );
        }
        let Some(file) = guard.as_ref() else {
            anyhow::bail!("head file not open")
        };
        file.lock()?;
        let res = (|| -> anyhow::Result<()> {
            let mut buf = vec![0u8; 2 * SLOT];
            let n = read_up_to(file, &mut buf)?;
            let slots: Vec<Option<Checkpoint>> = buf[..n].chunks(SLOT).map(parse_slot).collect();
            let seq_of = |i: usize| slots.get(i).and_then(|s| s.as_ref()).map_or(-1, |c| c.seq);
            if seq_of(0).max(seq_of(1)) >= cp.seq {
                return Ok(());
            }
            let slot = if seq_of(0) <= seq_of(1) { 0 } else { 1 };
            let mut line = serde_json::to_vec(cp)?;
            anyhow::ensure!(line.len() < SLOT, "checkpoint too large for a head slot");
            line.resize(SLOT - 1, b' ');
            line.push(b'\n');
            file.write_all_at(&line, (slot * SLOT) as u64)?;
            Ok(())
        })();
        file.unlock()?;
        res
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn parse_slot(bytes: &[u8]) -> Option<Checkpoint> {
    serde_json::from_slice(bytes.trim_ascii()).ok()
}

fn parse_slots(bytes: &[u8]) -> Vec<Checkpoint> {
    let mut v: Vec<Checkpoint> = bytes.chunks(SLOT).filter_map(parse_slot).collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.seq));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_slot_leaves_the_other_head_readable() {
        let dir = tempfile::tempdir().unwrap();
        let signer = AuditSigner::ephemeral();
        let head = HeadFile::new(dir.path().join("audit-head"));
        head.write_if_newer(&signer.sign(1, "a")).unwrap();
        head.write_if_newer(&signer.sign(2, "b")).unwrap();
        head.write_if_newer(&signer.sign(3, "c")).unwrap(); // overwrites slot of seq 1
        let mut bytes = fs::read(head.path()).unwrap();
        assert_eq!(bytes.len(), 2 * SLOT);
        // tear the newest slot
        let newest = if bytes[..SLOT].windows(3).any(|w| w == b"\"c\"") {
            0
        } else {
            1
        };
        bytes[newest * SLOT + 10] = b'#';
        fs::write(head.path(), &bytes).unwrap();
        let all = HeadFile::new(head.path()).read_all().unwrap();
        assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn head_file_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let signer = AuditSigner::ephemeral();
        let head = HeadFile::new(dir.path().join("audit-head"));
        head.write_if_newer(&signer.sign(5, "a")).unwrap();
        head.write_if_newer(&signer.sign(3, "b")).unwrap();
        assert_eq!(head.read().unwrap().unwrap().seq, 5);
        head.write_if_newer(&signer.sign(6, "c")).unwrap();
        assert_eq!(head.read().unwrap().unwrap().hash, "c");
    }

    #[test]
    fn publishing_writes_the_newest_head_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let head = HeadFile::new(dir.path().join("audit-head"));
        let signer = AuditSigner::new(SigningKey::from_bytes(&[3; 32]), Some(head.clone()));
        for seq in [1, 5, 3] {
            signer.publish(&signer.sign(seq, &format!("h{seq}")));
        }
        let cp = head.read().unwrap().unwrap();
        assert_eq!((cp.seq, cp.hash.as_str()), (5, "h5"));
        assert!(firebreak_domain::audit::checkpoint_is_valid(
            &signer.verifying_key(),
            &cp
        ));
    }

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let k1 = AuditSigner::load_key(&path, true).unwrap();
        let k2 = AuditSigner::load_key(&path, false).unwrap();
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        assert!(AuditSigner::load_key(&dir.path().join("missing"), false).is_err());
    }
}
