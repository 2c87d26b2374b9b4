//! Row decoding and sqlx error mapping for PostgreSQL.

use firebreak_domain::audit::AuditRecord;
use firebreak_domain::ids::{AuditId, DocumentId, TicketId, TokenId, UserId};
use firebreak_domain::ticket::*;
use firebreak_domain::user::User;
use firebreak_store::{
    DocumentRecord, IndicatorRecord, JobRecord, JobStatus, SessionRecord, StoreError, StoreResult,
    ThrottleRecord, TokenRecord, TotpRecord, UserRecord, WorkflowRecord, roles_from_text,
    scopes_from_text, to_millis,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

pub fn err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(format!("already exists: {}", db.message()));
            }
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "53100" => StoreError::Full(db.message().to_string()),
                "22021" | "22P05" | "54000" => StoreError::Invalid(db.message().to_string()),
                "40001" | "40P01" => StoreError::Conflict("concurrent update; retry".into()),
                c if c.starts_with("08")
                    || c.starts_with("57")
                    || c.starts_with("53")
                    || c == "25006" =>
                {
                    StoreError::Unavailable(db.message().to_string())
                }
                _ => StoreError::Other(e.into()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.into()),
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(err)
}

fn parse<T>(v: Option<T>, col: &str, raw: &str) -> StoreResult<T> {
    v.ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad stored value {raw:?} in column {col}")))
}

pub fn ticket(row: &PgRow) -> StoreResult<Ticket> {
    let sev: String = get(row, "severity")?;
    let pri: String = get(row, "priority")?;
    let crit: String = get(row, "criticality")?;
    let status: String = get(row, "status")?;
    let kind: String = get(row, "source_kind")?;
    Ok(Ticket {
        id: TicketId(get::<Uuid>(row, "id")?),
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
        tier: get(row, "tier")?,
        status: parse(TicketStatus::parse(&status), "status", &status)?,
        owner: get(row, "owner")?,
        assignee: get(row, "assignee")?,
        restricted: get(row, "restricted")?,
        tags: get(row, "tags")?,
        resolution: get(row, "resolution")?,
        problem_category: get(row, "problem_category")?,
        false_positive: get(row, "false_positive")?,
        incident: get(row, "incident")?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        escalation_reason: get(row, "escalation_reason")?,
        version: get(row, "version")?,
    })
}

pub fn user(row: &PgRow) -> StoreResult<UserRecord> {
    let roles: String = get(row, "roles")?;
    let clearances: String = get(row, "clearances")?;
    Ok(UserRecord {
        user: User {
            id: UserId(get::<Uuid>(row, "id")?),
            username: get(row, "username")?,
            roles: roles_from_text(&roles),
            title: get(row, "title")?,
            seniority: get(row, "seniority")?,
            on_duty: get(row, "on_duty")?,
            email: get(row, "email")?,
            disabled: get(row, "disabled")?,
            clearances: clearances
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: get(row, "created_at")?,
        },
        password_hash: get(row, "password_hash")?,
        external_id: get(row, "external_id")?,
    })
}

pub fn token(row: &PgRow) -> StoreResult<TokenRecord> {
    token_prefixed(row, "")
}

/// A token whose columns carry `prefix` (joined queries).
pub fn token_prefixed(row: &PgRow, p: &str) -> StoreResult<TokenRecord> {
    let col = |c: &str| format!("{p}{c}");
    let scopes: String = get(row, &col("scopes"))?;
    Ok(TokenRecord {
        id: TokenId(get::<Uuid>(row, &col("id"))?),
        user_id: UserId(get::<Uuid>(row, &col("user_id"))?),
        name: get(row, &col("name"))?,
        token_hash: get(row, &col("token_hash"))?,
        scopes: scopes_from_text(&scopes),
        created_at: get(row, &col("created_at"))?,
        expires_at: get(row, &col("expires_at"))?,
        revoked_at: get(row, &col("revoked_at"))?,
        last_used_at: get(row, &col("last_used_at"))?,
    })
}

/// A session whose columns carry `prefix` (joined queries).
pub fn session_prefixed(row: &PgRow, p: &str) -> StoreResult<SessionRecord> {
    let col = |c: &str| format!("{p}{c}");
    Ok(SessionRecord {
        id_hash: get(row, &col("id_hash"))?,
        user_id: UserId(get::<Uuid>(row, &col("user_id"))?),
        csrf_token: get(row, &col("csrf_token"))?,
        created_at: get(row, &col("created_at"))?,
        last_seen_at: get(row, &col("last_seen_at"))?,
        expires_at: get(row, &col("expires_at"))?,
        mfa_pending: get(row, &col("mfa_pending"))?,
        client_addr: get(row, &col("client_addr"))?,
        user_agent: get(row, &col("user_agent"))?,
        revoked_at: get(row, &col("revoked_at"))?,
    })
}

pub fn throttle(row: &PgRow) -> StoreResult<ThrottleRecord> {
    Ok(ThrottleRecord {
        key: get(row, "key")?,
        failures: get(row, "failures")?,
        window_start: get(row, "window_start")?,
        locked_until: get(row, "locked_until")?,
    })
}

pub fn totp(row: &PgRow) -> StoreResult<TotpRecord> {
    Ok(TotpRecord {
        user_id: UserId(get::<Uuid>(row, "user_id")?),
        secret: get(row, "secret")?,
        enabled: get(row, "enabled")?,
        last_step: get(row, "last_step")?,
    })
}

pub fn document(row: &PgRow) -> StoreResult<DocumentRecord> {
    Ok(DocumentRecord {
        id: DocumentId(get::<Uuid>(row, "id")?),
        ticket_id: TicketId(get::<Uuid>(row, "ticket_id")?),
        sha256: get(row, "sha256")?,
        size: get(row, "size")?,
        filename: get(row, "filename")?,
        content_type: get(row, "content_type")?,
        description: get(row, "description")?,
        source: get(row, "source")?,
        collection_notes: get(row, "collection_notes")?,
        added_by: get(row, "added_by")?,
        added_at: get(row, "added_at")?,
    })
}

pub fn record(row: &PgRow) -> StoreResult<WorkflowRecord> {
    Ok(WorkflowRecord {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        ticket_id: get::<Option<Uuid>>(row, "ticket_id")?.map(TicketId),
        parent_id: get(row, "parent_id")?,
        status: get(row, "status")?,
        principal: get(row, "principal")?,
        data: get(row, "data")?,
        version: get(row, "version")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn job(row: &PgRow) -> StoreResult<JobRecord> {
    let status: String = get(row, "status")?;
    Ok(JobRecord {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        idempotency_key: get(row, "idempotency_key")?,
        status: parse(JobStatus::parse(&status), "status", &status)?,
        ticket_id: get::<Option<Uuid>>(row, "ticket_id")?.map(TicketId),
        payload: get(row, "payload")?,
        state: get(row, "state")?,
        attempts: get(row, "attempts")?,
        max_attempts: get(row, "max_attempts")?,
        run_at: get(row, "run_at")?,
        locked_by: get(row, "locked_by")?,
        locked_until: get(row, "locked_until")?,
        last_error: get(row, "last_error")?,
        version: get(row, "version")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn indicator(row: &PgRow) -> StoreResult<IndicatorRecord> {
    Ok(IndicatorRecord {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        value: get(row, "value")?,
        confidence: get(row, "confidence")?,
        source: get(row, "source")?,
        description: get(row, "description")?,
        valid_until: get(row, "valid_until")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn audit(row: &PgRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: get(row, "seq")?,
        id: AuditId(get::<Uuid>(row, "id")?),
        occurred_at_ms: to_millis(get::<OffsetDateTime>(row, "occurred_at")?),
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        object_type: get(row, "object_type")?,
        object_id: get(row, "object_id")?,
        ticket_id: get::<Option<Uuid>>(row, "ticket_id")?.map(TicketId),
        details: get(row, "details")?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}
