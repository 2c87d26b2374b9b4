-- Users, API tokens, tickets and the hash-chained audit log.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    title TEXT,
    seniority INTEGER NOT NULL DEFAULT 0,
    on_duty INTEGER NOT NULL DEFAULT 1,
    email TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    clearances TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_name TEXT,
    source_contact TEXT,
    severity TEXT NOT NULL,
    priority TEXT NOT NULL,
    criticality TEXT NOT NULL,
    tier INTEGER NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    assignee TEXT,
    restricted INTEGER NOT NULL,
    tags TEXT NOT NULL,
    resolution TEXT,
    problem_category TEXT,
    false_positive INTEGER NOT NULL,
    incident INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX tickets_status ON tickets(status, number);
CREATE INDEX tickets_severity ON tickets(severity, number);
CREATE INDEX tickets_criticality ON tickets(criticality, number);
CREATE INDEX tickets_assignee ON tickets(assignee, number);

CREATE TABLE ticket_tags (
    tag TEXT NOT NULL,
    ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, ticket_id)
) WITHOUT ROWID;
CREATE INDEX ticket_tags_ticket ON ticket_tags(ticket_id);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    ticket_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_ticket ON audit_log(ticket_id, seq);

-- Signed chain heads: one per committing transaction, signed with a key outside the database.
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The current head, the row every appending transaction locks; verification ignores it.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
