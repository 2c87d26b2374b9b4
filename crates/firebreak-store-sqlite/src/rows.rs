//! Row decoding and sqlx error mapping for SQLite.

use firebreak_domain::audit::AuditRecord;
use firebreak_domain::ticket::*;
use firebreak_domain::user::User;
use firebreak_store::{
    DocumentRecord, IndicatorRecord, JobRecord, JobStatus, SessionRecord, StoreError, StoreResult,
    ThrottleRecord, TokenRecord, TotpRecord, UserRecord, WorkflowRecord, from_millis,
    roles_from_text, scopes_from_text,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub fn err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(format!("already exists: {}", db.message()));
            }
            // primary result codes: 5 BUSY, 6 LOCKED, 8 READONLY, 10 IOERR, 13 FULL, 14 CANTOPEN
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match primary {
                Some(13) => StoreError::Full(db.message().to_string()),
                Some(5 | 6 | 8 | 10 | 14) => StoreError::Unavailable(db.message().to_string()),
                _ => StoreError::Other(e.into()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.into()),
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(err)
}

fn parse<T>(v: Option<T>, col: &str, raw: &str) -> StoreResult<T> {
    v.ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad stored value {raw:?} in column {col}")))
}

fn id<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let s: String = get(row, col)?;
    parse(s.parse().ok(), col, &s)
}

pub fn ticket(row: &SqliteRow) -> StoreResult<Ticket> {
    let sev: String = get(row, "severity")?;
    let pri: String = get(row, "priority")?;
    let crit: String = get(row, "criticality")?;
    let status: String = get(row, "status")?;
    let kind: String = get(row, "source_kind")?;
    let tags: String = get(row, "tags")?;
    Ok(Ticket {
        id: id(row, "id")?,
        number: get(row, "number")?,
        title: get(row, "title")?,
        description: get(row, "description")?,
        source: Source {
            kind: parse(SourceKind::parse(&kind), "source_kind", &kind)?,
            name: get(row, "source_name")?,
            contact: get(row, "source_contact")?,
        },
        severity: parse(Severity::parse(&sev), "severity", &sev)?,
        priority: parse(Priority::parse(&pri), "priority", &pri)?,
        criticality: parse(Criticality::parse(&crit), "criticality", &crit)?,
        tier: get::<i64>(row, "tier")? as i16,
        status: parse(TicketStatus::parse(&status), "status", &status)?,
        owner: get(row, "owner")?,
        assignee: get(row, "assignee")?,
        restricted: get(row, "restricted")?,
        tags: parse(serde_json::from_str(&tags).ok(), "tags", &tags)?,
        resolution: get(row, "resolution")?,
        problem_category: get(row, "problem_category")?,
        false_positive: get(row, "false_positive")?,
        incident: get(row, "incident")?,
        created_by: get(row, "created_by")?,
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
        escalation_reason: get(row, "escalation_reason")?,
        version: get(row, "version")?,
    })
}

pub fn user(row: &SqliteRow) -> StoreResult<UserRecord> {
    let roles: String = get(row, "roles")?;
    let clearances: String = get(row, "clearances")?;
    Ok(UserRecord {
        user: User {
            id: id(row, "id")?,
            username: get(row, "username")?,
            roles: roles_from_text(&roles),
            title: get(row, "title")?,
            seniority: get::<i64>(row, "seniority")? as i32,
            on_duty: get(row, "on_duty")?,
            email: get(row, "email")?,
            disabled: get(row, "disabled")?,
            clearances: clearances
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: from_millis(get(row, "created_at")?),
        },
        password_hash: get(row, "password_hash")?,
        external_id: get(row, "external_id")?,
    })
}

pub fn token(row: &SqliteRow) -> StoreResult<TokenRecord> {
    token_prefixed(row, "")
}

/// A token whose columns carry `prefix` (joined queries).
pub fn token_prefixed(row: &SqliteRow, p: &str) -> StoreResult<TokenRecord> {
    let col = |c: &str| format!("{p}{c}");
    let scopes: String = get(row, &col("scopes"))?;
    Ok(TokenRecord {
        id: id(row, &col("id"))?,
        user_id: id(row, &col("user_id"))?,
        name: get(row, &col("name"))?,
        token_hash: get(row, &col("token_hash"))?,
        scopes: scopes_from_text(&scopes),
        created_at: from_millis(get(row, &col("created_at"))?),
        expires_at: get::<Option<i64>>(row, &col("expires_at"))?.map(from_millis),
        revoked_at: get::<Option<i64>>(row, &col("revoked_at"))?.map(from_millis),
        last_used_at: get::<Option<i64>>(row, &col("last_used_at"))?.map(from_millis),
    })
}

/// A session whose columns carry `prefix` (joined queries).
pub fn session_prefixed(row: &SqliteRow, p: &str) -> StoreResult<SessionRecord> {
    let col = |c: &str| format!("{p}{c}");
    Ok(SessionRecord {
        id_hash: get(row, &col("id_hash"))?,
        user_id: id(row, &col("user_id"))?,
        csrf_token: get(row, &col("csrf_token"))?,
        created_at: from_millis(get(row, &col("created_at"))?),
        last_seen_at: from_millis(get(row, &col("last_seen_at"))?),
        expires_at: from_millis(get(row, &col("expires_at"))?),
        mfa_pending: get(row, &col("mfa_pending"))?,
        client_addr: get(row, &col("client_addr"))?,
        user_agent: get(row, &col("user_agent"))?,
        revoked_at: get::<Option<i64>>(row, &col("revoked_at"))?.map(from_millis),
    })
}

pub fn throttle(row: &SqliteRow) -> StoreResult<ThrottleRecord> {
    Ok(ThrottleRecord {
        key: get(row, "key")?,
        failures: get(row, "failures")?,
        window_start: from_millis(get(row, "window_start")?),
        locked_until: get::<Option<i64>>(row, "locked_until")?.map(from_millis),
    })
}

pub fn totp(row: &SqliteRow) -> StoreResult<TotpRecord> {
    Ok(TotpRecord {
        user_id: id(row, "user_id")?,
        secret: get(row, "secret")?,
        enabled: get(row, "enabled")?,
        last_step: get(row, "last_step")?,
    })
}

pub fn document(row: &SqliteRow) -> StoreResult<DocumentRecord> {
    Ok(DocumentRecord {
        id: id(row, "id")?,
        ticket_id: id(row, "ticket_id")?,
        sha256: get(row, "sha256")?,
        size: get(row, "size")?,
        filename: get(row, "filename")?,
        content_type: get(row, "content_type")?,
        description: get(row, "description")?,
        source: get(row, "source")?,
        collection_notes: get(row, "collection_notes")?,
        added_by: get(row, "added_by")?,
        added_at: from_millis(get(row, "added_at")?),
    })
}

/// An optional id column (`NULL` or a UUID in text).
fn opt_id<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> StoreResult<Option<T>> {
    match get::<Option<String>>(row, col)? {
        Some(s) => Ok(Some(parse(s.parse().ok(), col, &s)?)),
        None => Ok(None),
    }
}

pub fn record(row: &SqliteRow) -> StoreResult<WorkflowRecord> {
    Ok(WorkflowRecord {
        id: id(row, "id")?,
        kind: get(row, "kind")?,
        ticket_id: opt_id(row, "ticket_id")?,
        parent_id: opt_id(row, "parent_id")?,
        status: get(row, "status")?,
        principal: get(row, "principal")?,
        data: get(row, "data")?,
        version: get(row, "version")?,
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
    })
}

pub fn job(row: &SqliteRow) -> StoreResult<JobRecord> {
    let status: String = get(row, "status")?;
    Ok(JobRecord {
        id: id(row, "id")?,
        kind: get(row, "kind")?,
        idempotency_key: get(row, "idempotency_key")?,
        status: parse(JobStatus::parse(&status), "status", &status)?,
        ticket_id: opt_id(row, "ticket_id")?,
        payload: get(row, "payload")?,
        state: get(row, "state")?,
        attempts: get(row, "attempts")?,
        max_attempts: get(row, "max_attempts")?,
        run_at: from_millis(get(row, "run_at")?),
        locked_by: get(row, "locked_by")?,
        locked_until: get::<Option<i64>>(row, "locked_until")?.map(from_millis),
        last_error: get(row, "last_error")?,
        version: get(row, "version")?,
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
    })
}

pub fn indicator(row: &SqliteRow) -> StoreResult<IndicatorRecord> {
    Ok(IndicatorRecord {
        id: id(row, "id")?,
        kind: get(row, "kind")?,
        value: get(row, "value")?,
        confidence: get(row, "confidence")?,
        source: get(row, "source")?,
        description: get(row, "description")?,
        valid_until: get::<Option<i64>>(row, "valid_until")?.map(from_millis),
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
    })
}

pub fn audit(row: &SqliteRow) -> StoreResult<AuditRecord> {
    let ticket_id: Option<String> = get(row, "ticket_id")?;
    Ok(AuditRecord {
        seq: get(row, "seq")?,
        id: id(row, "id")?,
        occurred_at_ms: get(row, "occurred_at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        object_type: get(row, "object_type")?,
        object_id: get(row, "object_id")?,
        ticket_id: match ticket_id {
            Some(s) => Some(parse(s.parse().ok(), "ticket_id", &s)?),
            None => None,
        },
        details: get(row, "details")?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

pub fn event(
    row: &SqliteRow,
    packer: &crate::pack::Packer,
) -> StoreResult<(i64, firebreak_domain::event::Event)> {
    use firebreak_domain::event::{Event, EventDetails};
    let status: String = get(row, "status")?;
    let sev: String = get(row, "severity")?;
    let kind: String = get(row, "source_kind")?;
    let (raw, data) = event_texts(row, packer)?;
    let details: EventDetails = parse(serde_json::from_str(&data).ok(), "data", &data)?;
    let mut e = Event {
        id: id(row, "id")?,
        status: parse(EventStatus::parse(&status), "status", &status)?,
        source: get(row, "source")?,
        source_kind: parse(SourceKind::parse(&kind), "source_kind", &kind)?,
        source_ref: get(row, "source_ref")?,
        rule_id: get(row, "rule_id")?,
        title: get(row, "title")?,
        description: None,
        severity: parse(Severity::parse(&sev), "severity", &sev)?,
        original_severity: None,
        occurred_at: from_millis(get(row, "occurred_at")?),
        received_at: from_millis(get(row, "received_at")?),
        last_seen: from_millis(get(row, "last_seen")?),
        occurrences: get(row, "occurrences")?,
        host: get(row, "host")?,
        observables: vec![],
        assets: vec![],
        tags: vec![],
        fingerprint: get(row, "fingerprint")?,
        fields: serde_json::Map::new(),
        reporter: None,
        reported_by: get(row, "reported_by")?,
        ticket_id: opt_id(row, "ticket_id")?,
        suppressed_by: opt_id(row, "suppressed_by")?,
        classification: None,
        intel: vec![],
        disposition: None,
        resolved_at: get::<Option<i64>>(row, "resolved_at")?.map(from_millis),
        raw,
        version: get(row, "version")?,
    };
    e.set_details(details);
    Ok((get(row, "seq")?, e))
}

pub fn observable(row: &SqliteRow) -> StoreResult<firebreak_store::ObservableRecord> {
    Ok(firebreak_store::ObservableRecord {
        id: id(row, "id")?,
        kind: get(row, "kind")?,
        value: get(row, "value")?,
        first_seen: from_millis(get(row, "first_seen")?),
        last_seen: from_millis(get(row, "last_seen")?),
        events: get(row, "events")?,
        tickets: get(row, "tickets")?,
    })
}

/// An events row's raw record and details as text, unpacked when packed (`pack.rs`): a text
/// `data` wins over the packed frame's copy (an update writes it).
pub fn event_texts(row: &SqliteRow, packer: &crate::pack::Packer) -> StoreResult<(String, String)> {
    use sqlx::{TypeInfo, ValueRef};
    let raw_value = row.try_get_raw("raw").map_err(err)?;
    let packed = !raw_value.is_null() && raw_value.type_info().name() == "BLOB";
    let data_value = row.try_get_raw("data").map_err(err)?;
    let data_text = !data_value.is_null() && data_value.type_info().name() == "TEXT";
    if !packed {
        return Ok((get(row, "raw")?, get(row, "data")?));
    }
    let bytes: Vec<u8> = get(row, "raw")?;
    let (raw, details) = crate::pack::unpack(packer, &bytes)?;
    let data = if data_text {
        get(row, "data")?
    } else {
        details
    };
    Ok((raw, data))
}
