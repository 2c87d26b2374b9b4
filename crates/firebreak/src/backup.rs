//! `firebreak backup`, `backup verify`, `restore` and `migrate-store`.

use crate::config::{Settings, redact_url};
use crate::{Opened, open};
use anyhow::{Context, bail};
use firebreak_app::backup::{
    BackupReader, BackupWriter, BlobPass, BlobReport, Header, Summary, document_key, read_keys,
};
use firebreak_app::verify::{VerifyError, verify_audit};
use firebreak_store::snapshot::ImportReport;
use firebreak_store::{AuditSigner, DynStore, HeadFile};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// Writes a backup of the opened database to `output`.
async fn write_backup(
    o: &Opened,
    output: &Path,
    with_keys: bool,
) -> anyhow::Result<(Summary, Header)> {
    // the head file first: anything the snapshot holds is as new or newer
    let head = match std::fs::read(o.head.path()) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading the audit head file"),
    };
    let keys = if with_keys {
        Some(read_keys(
            &o.settings.audit_key_file,
            &o.settings.document_key_file,
        )?)
    } else {
        None
    };
    let header = Header::new(o.store.backend(), &o.signer.verifying_key(), head, keys);
    let mut w = BackupWriter::create(output, header.clone(), o.settings.blob_dir.clone())?;
    if let Err(e) = o.store.export_snapshot(&mut w).await {
        w.abandon();
        return Err(anyhow::Error::from(e).context("reading the database"));
    }
    Ok((w.finish()?, header))
}

pub async fn backup(
    settings: Settings,
    output: &Path,
    with_keys: bool,
) -> anyhow::Result<ExitCode> {
    if !settings.audit_key_file.exists() {
        bail!(
            "no audit key at {}: nothing was ever written here, or FIREBREAK_AUDIT_KEY_FILE is not set as for the server",
            settings.audit_key_file.display()
        );
    }
    let o = open(settings, false).await?;
    let started = Instant::now();
    let res = write_backup(&o, output, with_keys).await;
    o.store.close().await;
    let (s, _) = res?;
    println!(
        "backup written to {}: {} rows in {} tables, {} document blob files, {} ({} uncompressed) in {:.1} s",
        output.display(),
        s.rows,
        s.tables.len(),
        s.blob_files,
        mib(s.file_bytes),
        mib(s.raw_bytes),
        started.elapsed().as_secs_f64()
    );
    if with_keys {
        println!(
            "it holds the audit and document keys: keep it as safe as the data dir (--without-keys leaves them out)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a verification found.
struct Checked {
    import: ImportReport,
    entries: i64,
    checkpoints: usize,
    blobs: BlobReport,
}

/// Restores the file into `store` and checks the result: the chain against the backup's key
/// and head file, the database's structure, every document's content. `Err` for a file that
/// cannot be read back; `Ok(Err(..))` for what verification found wrong.
async fn restore_and_check(
    store: &DynStore,
    path: &Path,
    blob_dir: Option<PathBuf>,
    doc_key: Option<[u8; 32]>,
    key: ed25519_dalek::VerifyingKey,
    head: &HeadFile,
) -> anyhow::Result<Result<Checked, Vec<String>>> {
    let (_, reader) = BackupReader::open(path)?;
    let (pass, blob_report) = BlobPass::new(reader, blob_dir, doc_key)?;
    let import = match store.import_snapshot(Box::new(pass)).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(vec![format!("{:#}", anyhow::Error::from(e))])),
    };
    if let Some(cp) = store.last_checkpoint().await?
        && head.read()?.is_none()
    {
        head.write_if_newer(&cp)?;
    }
    let mut problems = Vec::new();
    let (mut entries, mut checkpoints) = (0, 0);
    match verify_audit(store, key, head).await {
        Ok(r) => {
            entries = r.last_seq;
            checkpoints = r.checkpoints;
            if r.head_file_seq.is_none() && r.entries > 0 {
                problems.push(
                    "the backup has no audit head file, so removal of the newest entries cannot be ruled out".into(),
                );
            }
        }
        Err(VerifyError::Broken(b)) => problems.push(format!(
            "audit chain broken at entry {}: {}",
            b.seq, b.reason
        )),
        Err(e) => return Err(e.into()),
    }
    problems.extend(store.integrity_check().await?);
    let blobs = blob_report
        .lock()
        .map_err(|_| anyhow::anyhow!("blob report poisoned"))?
        .clone();
    problems.extend(blobs.problems.iter().cloned());
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    Ok(Ok(Checked {
        import,
        entries,
        checkpoints,
        blobs,
    }))
}

fn describe(c: &Checked) -> String {
    format!(
        "{} rows in {} tables, audit chain of {} entries with {} signed checkpoints verified, {} documents with their content ({} of {} blobs opened and checked with the document key)",
        c.import.rows(),
        c.import.tables.len(),
        c.entries,
        c.checkpoints,
        c.blobs.documents,
        c.blobs.verified,
        c.blobs.blobs
    )
}

fn report_problems(what: &str, problems: &[String]) -> ExitCode {
    println!("{what} FAILED VERIFICATION:");
    for p in problems {
        println!("  - {p}");
    }
    ExitCode::from(1)
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `backup verify PATH`: restores into a scratch SQLite database and checks it.
pub async fn verify(path: &Path, scratch: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (header, _) = BackupReader::open(path)?;
    let key = header.verifying_key()?;
    let base = scratch.unwrap_or_else(std::env::temp_dir);
    let dir = Scratch(base.join(format!(
        "firebreak-verify-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    )));
    std::fs::create_dir_all(&dir.0)
        .with_context(|| format!("creating scratch dir {}", dir.0.display()))?;
    let head = HeadFile::new(dir.0.join("audit-head"));
    if let Some(bytes) = header.head_file_bytes()? {
        std::fs::write(head.path(), bytes)?;
    }
    // the scratch database signs nothing: a throwaway key
    let signer = Arc::new(AuditSigner::new(
        AuditSigner::load_key(&dir.0.join("scratch.key"), true)?,
        None,
    ));
    let url = format!("sqlite://{}", dir.0.join("verify.db").display());
    let store: DynStore = Arc::new(firebreak_store_sqlite::SqliteStore::open(&url, signer).await?);
    let doc_key = match &header.keys {
        Some(k) => document_key(k)?,
        None => None,
    };
    let res = restore_and_check(&store, path, None, doc_key, key, &head).await;
    store.close().await;
    match res? {
        Ok(c) => {
            println!(
                "backup intact: {} ({} backup of {}, Firebreak {}): {}; {:.1} s",
                path.display(),
                header.backend,
                header.created_at,
                header.firebreak,
                describe(&c),
                started.elapsed().as_secs_f64()
            );
            if header.keys.is_none() {
                println!(
                    "the backup holds no keys: document contents were checked for presence, not opened"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(report_problems(&path.display().to_string(), &problems)),
    }
}

/// Puts a key from the backup where the settings expect it; an existing different key is an
/// error (it would not open this data).
fn place_key(path: &Path, content: &str, what: &str) -> anyhow::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(have) if have.trim() == content.trim() => Ok(()),
        Ok(_) => bail!(
            "{} already holds a different {what}; restore into a new data dir, or remove it if it belongs to nothing",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            firebreak_store::write_private(path, content.trim().as_bytes())
                .with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `restore PATH`: into the configured database, which must hold nothing yet.
pub async fn restore(settings: Settings, path: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (header, _) = BackupReader::open(path)?;
    let key = header.verifying_key()?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    match &header.keys {
        Some(k) => {
            place_key(&settings.audit_key_file, &k.audit_key, "audit key")?;
            if !k.document_key.is_empty() {
                place_key(&settings.document_key_file, &k.document_key, "document key")?;
            }
        }
        None if !settings.audit_key_file.exists() => bail!(
            "the backup holds no keys (made with --without-keys): put its audit key at {} (or set FIREBREAK_AUDIT_KEY_FILE), and its document key at {}",
            settings.audit_key_file.display(),
            settings.document_key_file.display()
        ),
        None => {}
    }
    let blob_dir = settings.blob_dir.clone();
    let doc_key_file = settings.document_key_file.clone();
    let o = open(settings, false).await?;
    let res = async {
        if firebreak_domain::audit::key_id(&o.signer.verifying_key()) != header.audit_key_id {
            bail!(
                "the audit key {} is not the one that signed this backup (key id {}): point FIREBREAK_AUDIT_KEY_FILE at the backup's key",
                o.settings.audit_key_file.display(),
                header.audit_key_id
            );
        }
        if o.store.holds_data().await? {
            bail!(
                "{} already holds data; restore into an empty database (a new data dir, or a new PostgreSQL database)",
                redact_url(&o.settings.database_url)
            );
        }
        let doc_key = if doc_key_file.exists() {
            Some(firebreak_app::documents::load_or_create_key(&doc_key_file)?)
        } else {
            None
        };
        restore_and_check(&o.store, path, blob_dir, doc_key, key, &o.head).await
    }
    .await;
    o.store.close().await;
    match res? {
        Ok(c) => {
            println!(
                "restored {} ({} backup of {}) into {}: {}; {:.1} s",
                path.display(),
                header.backend,
                header.created_at,
                redact_url(&o.settings.database_url),
                describe(&c),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(report_problems(
            &format!("restore of {}", path.display()),
            &problems,
        )),
    }
}

/// `migrate-store --to URL`: copies everything into another (empty) database, keeping ids,
/// numbers and the audit chain, then verifies the copy.
pub async fn migrate_store(
    settings: Settings,
    to: &str,
    to_blob_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if to == settings.database_url {
        bail!("--to names the database Firebreak already uses");
    }
    if !(to.starts_with("postgres://")
        || to.starts_with("postgresql://")
        || to.starts_with("sqlite:"))
    {
        bail!("--to must be a postgres:// or sqlite:// URL");
    }
    let o = open(settings, false).await?;
    let tmp = o.settings.data_dir.join(format!(
        "migrate-{}.fbk",
        time::OffsetDateTime::now_utc().unix_timestamp()
    ));
    let res = async {
        let (summary, _) = write_backup(&o, &tmp, false).await?;
        println!(
            "read {} rows from {} ({:.1} s)",
            summary.rows,
            redact_url(&o.settings.database_url),
            started.elapsed().as_secs_f64()
        );
        let target: DynStore = if to.starts_with("sqlite:") {
            Arc::new(firebreak_store_sqlite::SqliteStore::open(to, o.signer.clone()).await?)
        } else {
            Arc::new(
                firebreak_store_postgres::PgStore::open(to, o.signer.clone())
                    .await
                    .with_context(|| format!("opening {}", redact_url(to)))?,
            )
        };
        let out = async {
            if target.holds_data().await? {
                bail!(
                    "{} already holds data; migrate into an empty database",
                    redact_url(to)
                );
            }
            let doc_key = if o.settings.document_key_file.exists() {
                Some(firebreak_app::documents::load_or_create_key(
                    &o.settings.document_key_file,
                )?)
            } else {
                None
            };
            let checked = restore_and_check(
                &target,
                &tmp,
                to_blob_dir.clone(),
                doc_key,
                o.signer.verifying_key(),
                &o.head,
            )
            .await?;
            Ok((summary, checked))
        }
        .await;
        target.close().await;
        out
    }
    .await;
    let _ = std::fs::remove_file(&tmp);
    o.store.close().await;
    let (summary, checked) = res?;
    match checked {
        Ok(c) => {
            let copied: Vec<(String, u64)> = c.import.tables.clone();
            if copied != summary.tables {
                bail!(
                    "row counts differ between source and copy: {:?} vs {:?}",
                    summary.tables,
                    copied
                );
            }
            println!(
                "copied into {}: {}; {:.1} s",
                redact_url(to),
                describe(&c),
                started.elapsed().as_secs_f64()
            );
            println!(
                "start the nodes with FIREBREAK_DATABASE_URL={} FIREBREAK_AUDIT_KEY_FILE={} FIREBREAK_DOCUMENT_KEY_FILE={}{}",
                redact_url(to),
                o.settings.audit_key_file.display(),
                o.settings.document_key_file.display(),
                to_blob_dir
                    .map(|d| format!(" FIREBREAK_BLOB_DIR={}", d.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(report_problems(
            &format!("the copy in {}", redact_url(to)),
            &problems,
        )),
    }
}
