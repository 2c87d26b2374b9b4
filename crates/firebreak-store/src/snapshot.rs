//! Whole-database snapshots: what `firebreak backup`, `restore` and `migrate-store` move.
//!
//! A snapshot is every table's rows in one consistent read (SQLite: one read transaction;
//! PostgreSQL: one `REPEATABLE READ READ ONLY` transaction), in a form both backends share:
//! SQLite's storage classes with SQLite's encodings (timestamps as epoch milliseconds, booleans
//! as 0/1, UUIDs as hyphenated text, text arrays as JSON text). The PostgreSQL backend converts
//! to and from it per column type, so a snapshot of either backend restores into either.
//!
//! Tables are listed here in the order a restore inserts them (parents before children);
//! [`DERIVED`] tables (the queue's counters) are not exported: each backend rebuilds them from
//! the events it restores (PostgreSQL's insert triggers as they go in, SQLite once at the end). A test checks both backends' tables are exactly these.

use serde::{Deserialize, Serialize};

/// Every table a snapshot carries, parents first.
pub const TABLES: &[&str] = &[
    "users",
    "api_tokens",
    "tickets",
    "ticket_tags",
    "ticket_access",
    "audit_log",
    "audit_checkpoints",
    "audit_head",
    "sessions",
    "login_throttle",
    "user_totp",
    "recovery_codes",
    "blobs",
    "documents",
    "workflow_records",
    "events",
    "event_dedup",
    "observables",
    "event_observables",
    "ticket_observables",
    "jobs",
    "indicators",
    "indicator_generation",
];

/// Counter tables kept by triggers on `events`: rebuilt on restore, never exported.
pub const DERIVED: &[&str] = &["event_status_counts", "suppression_stats"];

/// Tables one backend keeps as a second level of a listed table (SQLite's recent dedup keys
/// and new observables, merged into `event_dedup` and `observables` in large steps): (level, table, the columns that identify a row).
/// A key is in one level only. A snapshot carries a level's rows as rows of its table (a row
/// whose key is already in the table is not exported again); a restore puts them there.
/// (SQLite's inverted index of event-observable links is exported as `event_observables` rows
/// too, by that backend's export.)
pub const LEVELS: &[(&str, &str, &[&str])] = &[
    ("event_dedup_pending", "event_dedup", &["dedup_key"]),
    ("observable_pending", "observables", &["id"]),
];

/// Tables one backend keeps for its own storage, whose content snapshots carry in another form:
/// SQLite's compression dictionaries of events (snapshots carry events unpacked, as text).
pub const PRIVATE: &[&str] = &["event_dicts"];

/// One stored value, in SQLite's storage classes.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// Approximate size in bytes (for batching).
    pub fn weight(&self) -> usize {
        match self {
            SqlValue::Null | SqlValue::Int(_) | SqlValue::Real(_) => 8,
            SqlValue::Text(s) => s.len() + 8,
            SqlValue::Blob(b) => b.len() + 8,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Int(_) => "integer",
            SqlValue::Real(_) => "real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "blob",
        }
    }
}

/// One item of a snapshot stream.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotItem {
    /// The rows that follow belong to `name`, with these columns in this order.
    Table {
        name: String,
        columns: Vec<String>,
    },
    Row(Vec<SqlValue>),
    /// The current table is complete.
    EndTable,
    /// A sequence's last handed-out value (PostgreSQL's `ticket_number_seq`: numbers handed out
    /// by rolled-back transactions are never handed out again, also after a restore).
    Sequence {
        name: String,
        value: i64,
    },
}

/// Where an export writes.
pub trait SnapshotSink: Send {
    fn item(&mut self, item: SnapshotItem) -> anyhow::Result<()>;
}

/// Where an import reads.
pub trait SnapshotSource: Send {
    fn next_item(&mut self) -> anyhow::Result<Option<SnapshotItem>>;
}

/// What an import wrote.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// Rows per table, in the order they arrived.
    pub tables: Vec<(String, u64)>,
}

impl ImportReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.1).sum()
    }
}

/// A source over a list of items (tests, small copies).
pub struct VecSource(pub std::collections::VecDeque<SnapshotItem>);

impl SnapshotSource for VecSource {
    fn next_item(&mut self) -> anyhow::Result<Option<SnapshotItem>> {
        Ok(self.0.pop_front())
    }
}

impl SnapshotSink for Vec<SnapshotItem> {
    fn item(&mut self, item: SnapshotItem) -> anyhow::Result<()> {
        self.push(item);
        Ok(())
    }
}

/// Checks an incoming table name and columns against the target's: unknown tables and columns
/// are refused by name (a backup from a newer version), missing nullable columns are allowed.
pub fn check_table(name: &str, columns: &[String]) -> Result<(), String> {
    if !TABLES.contains(&name) {
        return Err(format!(
            "the snapshot holds a table this version does not know: {name:?}"
        ));
    }
    if columns.is_empty() {
        return Err(format!("table {name}: no columns"));
    }
    let mut seen = std::collections::HashSet::new();
    for c in columns {
        if c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("table {name}: bad column name {c:?}"));
        }
        if !seen.insert(c) {
            return Err(format!("table {name}: column {c} twice"));
        }
    }
    Ok(())
}
