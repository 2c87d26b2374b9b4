//! The backup file: what `firebreak backup` writes and `restore`, `backup verify` and
//! `migrate-store` read.
//!
//! A gzip stream of JSON lines: a header (format, version, backend, the audit key's public half,
//! the head file as it was before the snapshot, optionally the keys), then every table of one
//! consistent snapshot ([`firebreak_store::snapshot`]) as a `table` line, one JSON array per row
//! and an `end_table` line with the row count, and last an `end` line holding the SHA-256 of
//! every byte before it. A file cut short or altered anywhere fails to restore or verify, and
//! a restore is one transaction, so it changes nothing then.
//!
//! Document blobs kept as files (the SQLite default) travel as rows of the `blobs` table (they are
//! already sealed with the document key); a restore writes them back to files or leaves them
//! in the database, as the target is configured.

use crate::documents::BlobStore;
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use firebreak_store::snapshot::{SnapshotItem, SnapshotSink, SnapshotSource, SqlValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "firebreak-backup";
pub const VERSION: u32 = 1;

/// The keys a backup may carry (the files' contents as they are on disk).
#[derive(Clone, Serialize, Deserialize)]
pub struct Keys {
    pub audit_key: String,
    pub document_key: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// RFC 3339.
    pub created_at: String,
    /// The version of Firebreak that wrote it.
    pub firebreak: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The audit key's public half (hex) and id: enough to verify the chain's signatures.
    pub audit_public_key: String,
    pub audit_key_id: String,
    /// The signed head file (`audit-head`) read before the snapshot, base64.
    pub head_file: Option<String>,
    /// The audit and document keys, unless the backup was made with `--without-keys`.
    pub keys: Option<Keys>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Control {
    Header(Box<Header>),
    Table {
        name: String,
        columns: Vec<String>,
    },
    EndTable {
        rows: u64,
    },
    Sequence {
        name: String,
        value: i64,
    },
    End {
        lines: u64,
        rows: u64,
        sha256: String,
    },
}

/// Counts and hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What a backup holds, for the summary line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub tables: Vec<(String, u64)>,
    pub rows: u64,
    /// Blob files (document contents) carried as rows of `blobs`.
    pub blob_files: u64,
    /// Uncompressed and compressed bytes.
    pub raw_bytes: u64,
    pub file_bytes: u64,
}

/// Writes a backup file; a [`SnapshotSink`] for `Store::export_snapshot`.
pub struct BackupWriter {
    out: Hashing<flate2::write::GzEncoder<BufWriter<std::fs::File>>>,
    partial: PathBuf,
    path: PathBuf,
    lines: u64,
    table: Option<(String, u64)>,
    /// Blob files to add to the `blobs` table (the SQLite default keeps them as files).
    blob_dir: Option<PathBuf>,
    blobs_seen: HashSet<String>,
    summary: Summary,
}

fn value_json(v: &SqlValue, out: &mut Vec<u8>) -> std::io::Result<()> {
    match v {
        SqlValue::Null => out.extend_from_slice(b"null"),
        SqlValue::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        SqlValue::Real(f) => serde_json::to_writer(&mut *out, &serde_json::json!({ "r": f }))?,
        SqlValue::Text(s) => serde_json::to_writer(&mut *out, s)?,
        SqlValue::Blob(b) => {
            out.extend_from_slice(b"{\"b\":\"");
            out.extend_from_slice(B64.encode(b).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
    Ok(())
}

fn value_from(v: serde_json::Value) -> anyhow::Result<SqlValue> {
    Ok(match v {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Number(n) => SqlValue::Int(
            n.as_i64()
                .with_context(|| format!("{n} is not a 64-bit integer"))?,
        ),
        serde_json::Value::String(s) => SqlValue::Text(s),
        serde_json::Value::Object(mut m) if m.len() == 1 => {
            if let Some(serde_json::Value::String(b)) = m.remove("b") {
                SqlValue::Blob(B64.decode(b).context("bad base64 in a blob value")?)
            } else if let Some(f) = m.remove("r").and_then(|r| r.as_f64()) {
                SqlValue::Real(f)
            } else {
                bail!("unknown value object")
            }
        }
        other => bail!("unexpected value {other}"),
    })
}

impl BackupWriter {
    /// Starts `path` (written as `path.partial`, renamed by [`BackupWriter::finish`]).
    pub fn create(path: &Path, header: Header, blob_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        if path.exists() {
            bail!("{} exists; choose a new file name", path.display());
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // the file holds every ticket and maybe the keys
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        }
        let gz = flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 20, file),
            flate2::Compression::fast(),
        );
        let mut w = BackupWriter {
            out: Hashing {
                inner: gz,
                hash: Sha256::new(),
                bytes: 0,
            },
            partial,
            path: path.to_path_buf(),
            lines: 0,
            table: None,
            blob_dir,
            blobs_seen: HashSet::new(),
            summary: Summary::default(),
        };
        w.control(&Control::Header(Box::new(header)))?;
        Ok(w)
    }

    fn control(&mut self, c: &Control) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, c)?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        let mut line = Vec::with_capacity(256);
        line.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            value_json(v, &mut line)?;
        }
        line.extend_from_slice(b"]\n");
        self.out.write_all(&line)?;
        self.lines += 1;
        self.summary.rows += 1;
        if let Some(t) = self.table.as_mut() {
            t.1 += 1;
        }
        Ok(())
    }

    /// Every blob file not already in the `blobs` table, as rows of it.
    fn blob_files(&mut self) -> anyhow::Result<()> {
        let Some(dir) = self.blob_dir.clone() else {
            return Ok(());
        };
        let Ok(top) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut subdirs: Vec<PathBuf> = top
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .collect();
        subdirs.sort();
        for sub in subdirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .collect();
            files.sort();
            for f in files {
                let Some(sha) = f.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                    continue;
                };
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                if self.blobs_seen.contains(&sha) {
                    continue;
                }
                let data =
                    std::fs::read(&f).with_context(|| format!("reading blob {}", f.display()))?;
                self.row(&[SqlValue::Text(sha), SqlValue::Blob(data)])?;
                self.summary.blob_files += 1;
            }
        }
        Ok(())
    }

    /// Writes the end line, flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> anyhow::Result<Summary> {
        let sha = hex::encode(self.out.hash.clone().finalize());
        let (lines, rows) = (self.lines, self.summary.rows);
        serde_json::to_writer(
            &mut self.out.inner,
            &Control::End {
                lines,
                rows,
                sha256: sha,
            },
        )?;
        self.out.inner.write_all(b"\n")?;
        self.summary.raw_bytes = self.out.bytes;
        let buf = self.out.inner.finish()?;
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        self.summary.file_bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("renaming into {}", self.path.display()))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(self.summary)
    }

    /// Removes the partial file of a failed backup.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

impl SnapshotSink for BackupWriter {
    fn item(&mut self, item: SnapshotItem) -> anyhow::Result<()> {
        match item {
            SnapshotItem::Table { name, columns } => {
                self.control(&Control::Table {
                    name: name.clone(),
                    columns,
                })?;
                self.table = Some((name, 0));
            }
            SnapshotItem::Row(values) => {
                if self.table.as_ref().is_some_and(|t| t.0 == "blobs")
                    && let Some(SqlValue::Text(sha)) = values.first()
                {
                    self.blobs_seen.insert(sha.clone());
                }
                self.row(&values)?;
            }
            SnapshotItem::EndTable => {
                if self.table.as_ref().is_some_and(|t| t.0 == "blobs") {
                    self.blob_files()?;
                }
                let (name, rows) = self.table.take().unwrap_or_default();
                self.control(&Control::EndTable { rows })?;
                self.summary.tables.push((name, rows));
            }
            SnapshotItem::Sequence { name, value } => {
                self.control(&Control::Sequence { name, value })?
            }
        }
        Ok(())
    }
}

/// Reads a backup file; a [`SnapshotSource`] for `Store::import_snapshot`. Every line is
/// checked: row counts per table, the line count, and the SHA-256 in the end line; a file that
/// ends early or was altered fails before the import's COMMIT.
pub struct BackupReader {
    input: BufReader<flate2::read::GzDecoder<std::fs::File>>,
    hash: Sha256,
    lines: u64,
    rows: u64,
    table: Option<(String, u64)>,
    ended: bool,
    buf: Vec<u8>,
    path: PathBuf,
}

impl std::fmt::Debug for BackupReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupReader")
            .field("path", &self.path)
            .finish()
    }
}

/// The longest line accepted (a blob row: the largest document, base64).
const MAX_LINE: u64 = 8 << 30;

impl BackupReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> anyhow::Result<(Header, Self)> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut r = BackupReader {
            input: BufReader::with_capacity(1 << 20, flate2::read::GzDecoder::new(file)),
            hash: Sha256::new(),
            lines: 0,
            rows: 0,
            table: None,
            ended: false,
            buf: Vec::new(),
            path: path.to_path_buf(),
        };
        let header = match r.line()? {
            Some(l) if l.first() == Some(&b'{') => match serde_json::from_slice::<Control>(&l) {
                Ok(Control::Header(h)) => *h,
                _ => bail!("{} is not a Firebreak backup", path.display()),
            },
            _ => bail!("{} is not a Firebreak backup", path.display()),
        };
        if header.format != FORMAT {
            bail!("{} is not a Firebreak backup", path.display());
        }
        if header.version > VERSION {
            bail!(
                "{} is a version {} backup; this Firebreak reads up to version {VERSION}",
                path.display(),
                header.version
            );
        }
        Ok((header, r))
    }

    /// The next line without its newline, hashed unless it is the end line.
    fn line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE)
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("reading {} (damaged or cut short?)", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            bail!(
                "{}: the last line is incomplete (cut short?)",
                self.path.display()
            );
        }
        let is_end = self.buf.starts_with(b"{\"t\":\"end\"");
        if !is_end {
            self.hash.update(&self.buf);
            self.lines += 1;
        }
        self.buf.pop();
        Ok(Some(std::mem::take(&mut self.buf)))
    }
}

impl SnapshotSource for BackupReader {
    fn next_item(&mut self) -> anyhow::Result<Option<SnapshotItem>> {
        if self.ended {
            return Ok(None);
        }
        let Some(line) = self.line()? else {
            bail!(
                "{} ends without its end line (cut short?)",
                self.path.display()
            );
        };
        let at = self.lines;
        if line.first() == Some(&b'[') {
            let values: Vec<serde_json::Value> =
                serde_json::from_slice(&line).with_context(|| format!("line {at}: not a row"))?;
            let values = values
                .into_iter()
                .map(value_from)
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("line {at}"))?;
            let Some(t) = self.table.as_mut() else {
                bail!("line {at}: a row outside any table");
            };
            t.1 += 1;
            self.rows += 1;
            return Ok(Some(SnapshotItem::Row(values)));
        }
        let c: Control =
            serde_json::from_slice(&line).with_context(|| format!("line {at}: unreadable"))?;
        Ok(Some(match c {
            Control::Header(_) => bail!("line {at}: a second header"),
            Control::Table { name, columns } => {
                self.table = Some((name.clone(), 0));
                SnapshotItem::Table { name, columns }
            }
            Control::EndTable { rows } => {
                let Some((name, n)) = self.table.take() else {
                    bail!("line {at}: end of a table that did not start");
                };
                if n != rows {
                    bail!("table {name}: {n} rows where the backup says {rows}");
                }
                SnapshotItem::EndTable
            }
            Control::Sequence { name, value } => SnapshotItem::Sequence { name, value },
            Control::End {
                lines,
                rows,
                sha256,
            } => {
                let ours = hex::encode(self.hash.clone().finalize());
                if ours != sha256 || lines != self.lines || rows != self.rows {
                    bail!(
                        "{}: the content does not match its checksum (altered or damaged)",
                        self.path.display()
                    );
                }
                self.ended = true;
                return Ok(None);
            }
        }))
    }
}

/// What the blob check of a restore or verification found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlobReport {
    pub blobs: u64,
    /// Blobs opened with the document key and checked against their SHA-256.
    pub verified: u64,
    pub documents: u64,
    /// Problems (a document without content, a blob that fails its check), at most 50.
    pub problems: Vec<String>,
}

/// Wraps a source on its way into a store: writes `blobs` rows to files when the target keeps
/// blobs in a directory, checks every blob against its SHA-256 when the document key is known,
/// and checks every document has its content.
pub struct BlobPass<S: SnapshotSource> {
    inner: S,
    to_dir: Option<PathBuf>,
    check: Option<BlobStore>,
    table: Option<String>,
    sha_col: Option<usize>,
    id_col: Option<usize>,
    blobs: HashSet<String>,
    documents: Vec<(String, String)>,
    report: std::sync::Arc<std::sync::Mutex<BlobReport>>,
}

impl<S: SnapshotSource> BlobPass<S> {
    /// `to_dir`: the target's blob directory (rows become files there); `key`: the document
    /// key, to open each blob. The report is complete once the source is exhausted.
    pub fn new(
        inner: S,
        to_dir: Option<PathBuf>,
        key: Option<[u8; 32]>,
    ) -> anyhow::Result<(Self, std::sync::Arc<std::sync::Mutex<BlobReport>>)> {
        let check = match key {
            Some(k) => Some(BlobStore::new(k, None)?),
            None => None,
        };
        let report = std::sync::Arc::new(std::sync::Mutex::new(BlobReport::default()));
        Ok((
            BlobPass {
                inner,
                to_dir,
                check,
                table: None,
                sha_col: None,
                id_col: None,
                blobs: HashSet::new(),
                documents: Vec::new(),
                report: report.clone(),
            },
            report,
        ))
    }

    fn problem(&self, p: String) {
        if let Ok(mut r) = self.report.lock()
            && r.problems.len() < 50
        {
            r.problems.push(p);
        }
    }

    fn blob(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        let (Some(SqlValue::Text(sha)), Some(SqlValue::Blob(data))) =
            (values.first(), values.get(1))
        else {
            bail!("a blobs row without a content address and content");
        };
        if let Some(check) = &self.check {
            // opening reads every chunk and checks the SHA-256 before handing out a reader
            match check.open_verified(Some(data.clone()), sha) {
                Ok(_) => {
                    if let Ok(mut r) = self.report.lock() {
                        r.verified += 1;
                    }
                }
                Err(e) => self.problem(format!("blob {sha}: {e}")),
            }
        }
        if let Some(dir) = &self.to_dir {
            let path = dir.join(&sha[..2]).join(sha);
            if !path.exists() {
                std::fs::create_dir_all(dir.join(&sha[..2]))?;
                let tmp = dir.join("tmp").join(format!("restore-{sha}"));
                std::fs::create_dir_all(dir.join("tmp"))?;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(data)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
            }
        }
        self.blobs.insert(sha.clone());
        if let Ok(mut r) = self.report.lock() {
            r.blobs += 1;
        }
        Ok(())
    }
}

impl<S: SnapshotSource> SnapshotSource for BlobPass<S> {
    fn next_item(&mut self) -> anyhow::Result<Option<SnapshotItem>> {
        loop {
            let Some(item) = self.inner.next_item()? else {
                for (doc, sha) in std::mem::take(&mut self.documents) {
                    if !self.blobs.contains(&sha) {
                        self.problem(format!("document {doc}: its content {sha} is missing"));
                    }
                }
                return Ok(None);
            };
            match &item {
                SnapshotItem::Table { name, columns } => {
                    self.table = Some(name.clone());
                    self.sha_col = columns.iter().position(|c| c == "sha256");
                    self.id_col = columns.iter().position(|c| c == "id");
                }
                SnapshotItem::Row(values) if self.table.as_deref() == Some("blobs") => {
                    self.blob(values)?;
                    if self.to_dir.is_some() {
                        // the target keeps blobs as files: the row does not go in
                        continue;
                    }
                }
                SnapshotItem::Row(values) if self.table.as_deref() == Some("documents") => {
                    if let (Some(SqlValue::Text(id)), Some(SqlValue::Text(sha))) = (
                        self.id_col.and_then(|c| values.get(c)),
                        self.sha_col.and_then(|c| values.get(c)),
                    ) {
                        self.documents.push((id.clone(), sha.clone()));
                        if let Ok(mut r) = self.report.lock() {
                            r.documents += 1;
                        }
                    }
                }
                _ => {}
            }
            return Ok(Some(item));
        }
    }
}

/// The keys as stored in their files, for `Header::keys`.
pub fn read_keys(audit_key_file: &Path, document_key_file: &Path) -> anyhow::Result<Keys> {
    Ok(Keys {
        audit_key: std::fs::read_to_string(audit_key_file)
            .with_context(|| format!("reading {}", audit_key_file.display()))?
            .trim()
            .to_string(),
        document_key: match std::fs::read_to_string(document_key_file) {
            Ok(k) => k.trim().to_string(),
            // no document was ever stored on this install: nothing is sealed with it
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", document_key_file.display()));
            }
        },
    })
}

/// The document key from a backup's keys, when it has one.
pub fn document_key(keys: &Keys) -> anyhow::Result<Option<[u8; 32]>> {
    if keys.document_key.is_empty() {
        return Ok(None);
    }
    let raw = hex::decode(&keys.document_key).context("the backup's document key is not hex")?;
    Ok(Some(raw.try_into().map_err(|_| {
        anyhow::anyhow!("the backup's document key is not 32 bytes")
    })?))
}

impl Header {
    /// A header for a backup of `backend` now.
    pub fn new(
        backend: &str,
        key: &ed25519_dalek::VerifyingKey,
        head_file: Option<Vec<u8>>,
        keys: Option<Keys>,
    ) -> Self {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            created_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            firebreak: env!("CARGO_PKG_VERSION").into(),
            backend: backend.into(),
            audit_public_key: hex::encode(key.as_bytes()),
            audit_key_id: firebreak_domain::audit::key_id(key),
            head_file: head_file.map(|b| B64.encode(b)),
            keys,
        }
    }

    /// The key that signed the backup's audit chain.
    pub fn verifying_key(&self) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
        let raw: [u8; 32] = hex::decode(&self.audit_public_key)
            .ok()
            .and_then(|r| r.try_into().ok())
            .context("the backup's audit public key is malformed")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .context("the backup's audit public key is malformed")?;
        if firebreak_domain::audit::key_id(&key) != self.audit_key_id {
            bail!("the backup's audit public key does not match its key id");
        }
        Ok(key)
    }

    /// The head file's bytes as they were when the backup started.
    pub fn head_file_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.head_file
            .as_deref()
            .map(|h| B64.decode(h).context("the backup's head file is malformed"))
            .transpose()
    }
}
