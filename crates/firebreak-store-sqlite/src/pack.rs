//! Events' raw record and details, compressed together with a zstd dictionary trained on the
//! database's own events (migration 0017).
//!
//! An intake event's raw record (a Suricata line, ~780 bytes) and its details JSON (~950 bytes)
//! were most of the bytes SQLite wrote per event, and they repeat each other and every other
//! event of their kind: compressed one row at a time with a dictionary trained on a sample of
//! rows they shrink about sevenfold, where plain zstd or LZ4 manage 1.6-2.1x. The work is done
//! on the intake's threads ([`Packer::pack`], through `Store::prepare_event`), never on the
//! writer's.
//!
//! - Until a dictionary exists, rows are stored as text and sampled; once enough rows are
//!   gathered ([`SAMPLES`]) a thread trains one ([`DICT_BYTES`]). The newest dictionary of the
//!   database is taken up again when the store opens.
//! - A dictionary's id is the first 8 bytes of its SHA-256 (two processes never give one id to
//!   different dictionaries). The writer stores a dictionary in `event_dicts` in the transaction
//!   of the first row that uses it, so a committed row's dictionary is always committed.
//! - A packed row: `raw` holds a packed value (a tag, the dictionary id, the lengths, then one
//!   zstd frame, with its checksum, of the raw record followed by the details), `data` an empty
//!   blob. An update of the details writes `data` as text again, which then wins over the
//!   frame's copy.
//! - Snapshots carry rows unpacked (text), so they restore into either backend; a restored row
//!   stays text.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use firebreak_store::{NewEvent, StoreError, StoreResult};

/// Rows sampled before a dictionary is trained.
pub(crate) const SAMPLES: usize = 2_000;
/// Size of a trained dictionary.
pub(crate) const DICT_BYTES: usize = 32 * 1024;
/// Samples past which a dictionary is trained on a thread of its own (fewer: made at once).
const TRAIN_IN_BACKGROUND: usize = 64;
/// Bytes of one row a sample keeps (a mail of megabytes trains no better than its start).
const SAMPLE_BYTES: usize = 16 * 1024;
/// Bytes of samples past which a dictionary is trained whatever their number.
const SAMPLES_BYTES: usize = 100 * DICT_BYTES;
/// zstd's fastest level: with a dictionary it keeps ~7x on events at ~4 µs per row.
const LEVEL: i32 = 1;
/// First byte of a packed value (never the first byte of UTF-8 text).
const TAG: u8 = 0xFB;
const HEADER: usize = 1 + 8 + 4 + 4;

/// A dictionary: its id and bytes.
#[derive(Clone)]
pub(crate) struct Dict {
    pub id: i64,
    pub bytes: Arc<Vec<u8>>,
}

impl Dict {
    pub fn new(bytes: Vec<u8>) -> Self {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(&bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        Self {
            id: i64::from_le_bytes(id),
            bytes: Arc::new(bytes),
        }
    }
}

/// A dictionary from `samples`: trained by zstd, or, when zstd finds too little to train on
/// (a few rows), the samples themselves as a raw-content dictionary.
fn make_dict(samples: &[Vec<u8>]) -> Dict {
    match zstd::dict::from_samples(samples, DICT_BYTES) {
        Ok(bytes) => Dict::new(bytes),
        Err(e) => {
            tracing::debug!(error = %e, "sqlite event dictionary not trained: the samples are");
            let mut bytes: Vec<u8> = samples.concat();
            bytes.truncate(DICT_BYTES);
            Dict::new(bytes)
        }
    }
}

#[derive(Default)]
struct Sampling {
    samples: Vec<Vec<u8>>,
    bytes: usize,
    training: bool,
}

/// One store's dictionaries: the one new rows are packed with, and every one met so far.
pub(crate) struct Packer {
    current: RwLock<Option<Dict>>,
    known: RwLock<HashMap<i64, Dict>>,
    sampling: Mutex<Sampling>,
    /// rows sampled before a dictionary is made
    samples: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Self::new(SAMPLES)
    }
}

thread_local! {
    /// This thread's compressor, with the dictionary it was made for.
    static COMPRESSOR: RefCell<Option<(i64, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<(i64, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(None) };
    /// The writer thread's packer, and the dictionaries it has stored in `event_dicts` since
    /// it last had to forget (a rollback, another process's commit, an import).
    static WRITER: RefCell<(Option<Arc<Packer>>, HashSet<i64>)> =
        RefCell::new((None, HashSet::new()));
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(anyhow::anyhow!("event compression: {e}"))
}

impl Packer {
    pub fn new(samples: usize) -> Self {
        Self {
            current: RwLock::new(None),
            known: RwLock::new(HashMap::new()),
            sampling: Mutex::new(Sampling::default()),
            samples: samples.max(1),
        }
    }

    /// Takes `dict` up: known from now on, and the one new rows are packed with when `current`.
    pub fn add(&self, dict: Dict, current: bool) {
        if let Ok(mut k) = self.known.write() {
            k.insert(dict.id, dict.clone());
        }
        if current && let Ok(mut c) = self.current.write() {
            *c = Some(dict);
        }
    }

    pub fn get(&self, id: i64) -> Option<Dict> {
        self.known.read().ok()?.get(&id).cloned()
    }

    fn current(&self) -> Option<Dict> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Packs `item` (its details serialized first if they are not yet), or samples it while
    /// there is no dictionary. A row that cannot be packed is stored as text.
    pub fn pack(self: &Arc<Self>, item: &mut NewEvent) -> StoreResult<()> {
        if item.details.is_none() {
            item.details = Some(item.details()?.into_owned());
        }
        if let Err(e) = self.try_pack(item) {
            tracing::warn!(error = %e, "event stored uncompressed");
            item.packed = None;
        }
        Ok(())
    }

    fn try_pack(self: &Arc<Self>, item: &mut NewEvent) -> StoreResult<()> {
        let details = item.details.as_deref().unwrap_or_default();
        let raw = item.event.raw.as_str();
        let Some(dict) = self.current() else {
            self.sample(raw, details);
            return Ok(());
        };
        let (Ok(raw_len), Ok(total)) = (
            u32::try_from(raw.len()),
            u32::try_from(raw.len() + details.len()),
        ) else {
            return Ok(()); // 4 GiB or more: stored as text
        };
        let mut plain = Vec::with_capacity(raw.len() + details.len());
        plain.extend_from_slice(raw.as_bytes());
        plain.extend_from_slice(details.as_bytes());
        // the header, then the frame written right after it
        let mut out = Vec::with_capacity(HEADER + zstd::zstd_safe::compress_bound(plain.len()));
        out.push(TAG);
        out.extend_from_slice(&dict.id.to_le_bytes());
        out.extend_from_slice(&raw_len.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        let mut out = std::io::Cursor::new(out);
        out.set_position(HEADER as u64);
        COMPRESSOR.with_borrow_mut(|c| -> StoreResult<usize> {
            if c.as_ref().is_none_or(|(id, _)| *id != dict.id) {
                let mut z =
                    zstd::bulk::Compressor::with_dictionary(LEVEL, &dict.bytes).map_err(other)?;
                // a damaged frame must fail to unpack, never give another row
                z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .map_err(other)?;
                *c = Some((dict.id, z));
            }
            let (_, z) = c.as_mut().ok_or_else(|| other("no compressor"))?;
            z.compress_to_buffer(plain.as_slice(), &mut out)
                .map_err(other)
        })?;
        item.packed = Some(out.into_inner());
        Ok(())
    }

    fn sample(self: &Arc<Self>, raw: &str, details: &str) {
        let Ok(mut s) = self.sampling.lock() else {
            return;
        };
        // another thread's dictionary may have come since this one looked
        if s.training || self.current().is_some() {
            return;
        }
        let mut row = Vec::with_capacity((raw.len() + details.len()).min(SAMPLE_BYTES));
        row.extend_from_slice(raw.as_bytes());
        row.extend_from_slice(details.as_bytes());
        row.truncate(SAMPLE_BYTES);
        s.bytes += row.len();
        s.samples.push(row);
        if s.samples.len() < self.samples && s.bytes < SAMPLES_BYTES {
            return;
        }
        s.bytes = 0;
        let samples = std::mem::take(&mut s.samples);
        if samples.len() <= TRAIN_IN_BACKGROUND {
            self.add(make_dict(&samples), true);
            return;
        }
        s.training = true;
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("sqlite-zdict".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let dict = make_dict(&samples);
                tracing::debug!(
                    id = dict.id,
                    bytes = dict.bytes.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "sqlite event dictionary made"
                );
                me.add(dict, true);
                if let Ok(mut s) = me.sampling.lock() {
                    s.training = false;
                }
            });
        if spawned.is_err() {
            s.training = false;
        }
    }
}

/// Loads the dictionaries of `rows`' packed values that `packer` has not met (written by
/// another process, or before this one started).
pub(crate) async fn load_dicts(
    packer: &Packer,
    read: &sqlx::SqlitePool,
    rows: &[sqlx::sqlite::SqliteRow],
) -> StoreResult<()> {
    use sqlx::{Row, TypeInfo, ValueRef};
    let mut missing = Vec::new();
    for row in rows {
        let v = row.try_get_raw("raw").map_err(crate::rows::err)?;
        if v.is_null() || v.type_info().name() != "BLOB" {
            continue;
        }
        let bytes: &[u8] = row.try_get("raw").map_err(crate::rows::err)?;
        if let Some(id) = packed_dict(bytes)
            && packer.get(id).is_none()
            && !missing.contains(&id)
        {
            missing.push(id);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut conn = read.acquire().await.map_err(crate::rows::err)?;
    for id in missing {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT dict FROM event_dicts WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(crate::rows::err)?;
        if let Some(bytes) = bytes {
            add_checked(packer, id, bytes)?;
        }
    }
    Ok(())
}

/// Loads every dictionary of the database (a snapshot reads every row).
pub(crate) async fn load_all_dicts(
    packer: &Packer,
    conn: &mut sqlx::SqliteConnection,
) -> StoreResult<()> {
    let all: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT id, dict FROM event_dicts")
        .fetch_all(&mut *conn)
        .await
        .map_err(crate::rows::err)?;
    for (id, bytes) in all {
        if packer.get(id).is_none() {
            add_checked(packer, id, bytes)?;
        }
    }
    Ok(())
}

/// The dictionary of a row of `event_dicts`, checked against its id.
fn checked(id: i64, bytes: Vec<u8>) -> StoreResult<Dict> {
    let dict = Dict::new(bytes);
    if dict.id != id {
        return Err(other(format!(
            "dictionary {id} does not match its contents"
        )));
    }
    Ok(dict)
}

fn add_checked(packer: &Packer, id: i64, bytes: Vec<u8>) -> StoreResult<()> {
    packer.add(checked(id, bytes)?, false);
    Ok(())
}

/// When the store opens: the dictionary of the newest packed rows packs new ones again (no
/// training after a restart once a packed row has committed; `created_at` is the first such
/// row's receipt). One zstd does not take, or that does not match its id, is left aside and a
/// new one is trained.
pub(crate) async fn take_up_newest(
    packer: &Packer,
    conn: &mut sqlx::SqliteConnection,
) -> StoreResult<()> {
    let newest: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, dict FROM event_dicts ORDER BY created_at DESC, id LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(crate::rows::err)?;
    let Some((id, bytes)) = newest else {
        return Ok(());
    };
    match checked(id, bytes) {
        Ok(dict) if zstd::bulk::Compressor::with_dictionary(LEVEL, &dict.bytes).is_ok() => {
            packer.add(dict, true);
        }
        _ => tracing::warn!(
            id,
            "event dictionary damaged: left aside, a new one is trained"
        ),
    }
    Ok(())
}

/// On the writer thread: the packer whose dictionaries it stores.
pub(crate) fn set_writer_packer(packer: Arc<Packer>) {
    WRITER.with_borrow_mut(|w| w.0 = Some(packer));
}

/// On the writer thread: what is known stored may not be (a rollback, an import).
pub(crate) fn forget_stored() {
    WRITER.with_borrow_mut(|w| w.1.clear());
}

/// On the writer thread, inside the transaction inserting `item`: its packed form when the
/// writer knows the dictionary (stored in `event_dicts` first, once), else `None` (the event is
/// stored as text).
pub(crate) fn stored_form<'a>(
    conn: &rusqlite::Connection,
    item: &'a NewEvent,
    at: i64,
) -> StoreResult<Option<&'a [u8]>> {
    let Some(packed) = item.packed.as_deref() else {
        return Ok(None);
    };
    let Some(id) = packed_dict(packed) else {
        return Ok(None);
    };
    WRITER.with_borrow_mut(|(packer, stored)| {
        if stored.contains(&id) {
            return Ok(Some(packed));
        }
        let Some(dict) = packer.as_ref().and_then(|p| p.get(id)) else {
            return Ok(None);
        };
        conn.prepare_cached(
            "INSERT INTO event_dicts (id, dict, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| s.execute(rusqlite::params![id, dict.bytes.as_slice(), at]))
        .map_err(crate::writer::err)?;
        stored.insert(id);
        Ok(Some(packed))
    })
}

/// The dictionary id of a packed value, or `None` for anything else.
pub(crate) fn packed_dict(value: &[u8]) -> Option<i64> {
    if value.len() < HEADER || value[0] != TAG {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&value[1..9]);
    Some(i64::from_le_bytes(id))
}

/// The raw record and the details of a packed value.
pub(crate) fn unpack(packer: &Packer, value: &[u8]) -> StoreResult<(String, String)> {
    let id = packed_dict(value).ok_or_else(|| other("not a packed value"))?;
    let dict = packer
        .get(id)
        .ok_or_else(|| other(format!("dictionary {id} is missing")))?;
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&value[at..at + 4]);
        u32::from_le_bytes(b) as usize
    };
    let (raw_len, total) = (word(9), word(13));
    // the frame says how long it is: a damaged header must not make us allocate gigabytes
    if !matches!(
        zstd::zstd_safe::get_frame_content_size(&value[HEADER..]),
        Ok(Some(n)) if n == total as u64
    ) {
        return Err(other("a packed value's lengths do not match its frame"));
    }
    let plain = DECOMPRESSOR.with_borrow_mut(|d| -> StoreResult<Vec<u8>> {
        if d.as_ref().is_none_or(|(i, _)| *i != id) {
            let z = zstd::bulk::Decompressor::with_dictionary(&dict.bytes).map_err(other)?;
            *d = Some((id, z));
        }
        let (_, z) = d.as_mut().ok_or_else(|| other("no decompressor"))?;
        z.decompress(&value[HEADER..], total).map_err(other)
    })?;
    if plain.len() != total || raw_len > total {
        return Err(other("a packed value's lengths do not match"));
    }
    let mut raw = plain;
    let details = raw.split_off(raw_len);
    Ok((
        String::from_utf8(raw).map_err(other)?,
        String::from_utf8(details).map_err(other)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize) -> NewEvent {
        let at = time::OffsetDateTime::now_utc();
        let mut event = firebreak_store::conformance::sample_event(&format!("event {i}"), at);
        event.raw = format!(
            r#"{{"timestamp":"2026-12-06T10:00:{:02}.000000+0000","flow_id":{},"src_ip":"10.0.{}.{}","alert":{{"signature_id":{},"signature":"ET SCAN sample {}"}}}}"#,
            i % 60,
            1_000_000 + i * 7919,
            i % 200,
            i % 250,
            2_000_000 + i % 40,
            i % 40
        );
        NewEvent {
            event,
            dedup_key: format!("k{i}"),
            window_start: at,
            resolve: false,
            details: None,
            packed: None,
        }
    }

    fn wait_for_dictionary(packer: &Packer) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while packer.current().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no dictionary trained"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Rows are sampled until a dictionary is trained, then packed; unpacking gives back the
    /// raw record and the details byte for byte; a value that is not packed, a dictionary not
    /// met and a damaged frame are errors, never another row.
    #[test]
    fn rows_round_trip_through_a_trained_dictionary() {
        let packer = Arc::new(Packer::default());
        for i in 0..SAMPLES {
            let mut it = item(i);
            packer.pack(&mut it).unwrap();
            assert!(it.packed.is_none(), "no dictionary yet");
            assert!(it.details.is_some());
        }
        wait_for_dictionary(&packer);
        let mut it = item(SAMPLES + 1);
        packer.pack(&mut it).unwrap();
        let packed = it.packed.clone().unwrap();
        let plain = it.event.raw.len() + it.details.as_ref().unwrap().len();
        assert!(
            packed.len() * 3 < plain,
            "{} of {plain} bytes",
            packed.len()
        );
        let (raw, details) = unpack(&packer, &packed).unwrap();
        assert_eq!(raw, it.event.raw);
        assert_eq!(Some(details), it.details);
        assert!(unpack(&packer, b"{\"a\":1}").is_err());
        // another store that never met the dictionary cannot read it until told of it
        let other = Packer::default();
        assert!(unpack(&other, &packed).is_err());
        let id = packed_dict(&packed).unwrap();
        other.add(packer.get(id).unwrap(), false);
        assert_eq!(unpack(&other, &packed).unwrap().0, it.event.raw);
        let mut bad = packed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(unpack(&packer, &bad).is_err());
        let mut bad = packed.clone();
        bad[HEADER + 6] ^= 0x55;
        assert!(unpack(&packer, &bad).is_err());
        // a header claiming 4 GiB is refused before anything is allocated
        let mut bad = packed;
        bad[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&packer, &bad).is_err());
    }

    /// Large rows (mail, long lines) are sampled by their first 16 KiB, and a dictionary is
    /// trained once the samples reach their byte budget, long before 2,000 rows.
    #[test]
    fn large_rows_train_within_a_byte_budget() {
        let packer = Arc::new(Packer::default());
        let rows = SAMPLES_BYTES / SAMPLE_BYTES;
        for i in 0..rows {
            let mut it = item(i);
            it.event.raw = format!("{}{}", it.event.raw, "x".repeat(1 << 20));
            packer.pack(&mut it).unwrap();
        }
        {
            let s = packer.sampling.lock().unwrap();
            assert!(
                s.samples.is_empty() && s.bytes == 0,
                "handed over to training"
            );
        }
        wait_for_dictionary(&packer);
        let mut it = item(rows + 1);
        it.event.raw = format!("{}{}", it.event.raw, "x".repeat(1 << 20));
        packer.pack(&mut it).unwrap();
        let (raw, _) = unpack(&packer, it.packed.as_ref().unwrap()).unwrap();
        assert_eq!(raw, it.event.raw);
    }

    /// A handful of samples is too little for zstd to train on: the samples themselves become
    /// the dictionary, at once, and rows still round-trip.
    #[test]
    fn a_few_samples_make_a_raw_dictionary() {
        let packer = Arc::new(Packer::new(3));
        for i in 0..3 {
            packer.pack(&mut item(i)).unwrap();
        }
        assert!(packer.current().is_some());
        let mut it = item(7);
        packer.pack(&mut it).unwrap();
        let (raw, details) = unpack(&packer, it.packed.as_ref().unwrap()).unwrap();
        assert_eq!((raw, Some(details)), (it.event.raw, it.details));
    }
}
