-- Users, API tokens, tickets and the hash-chained audit log.
CREATE TABLE users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    title TEXT,
    seniority INTEGER NOT NULL DEFAULT 0,
    on_duty BOOLEAN NOT NULL DEFAULT TRUE,
    email TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    clearances TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- Ticket numbers: unique across every node; a rolled-back insert leaves a gap, never a duplicate.
CREATE SEQUENCE ticket_number_seq;

CREATE TABLE tickets (
    id UUID PRIMARY KEY,
    number BIGINT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_name TEXT,
    source_contact TEXT,
    severity TEXT NOT NULL,
    priority TEXT NOT NULL,
    criticality TEXT NOT NULL,
    tier SMALLINT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    assignee TEXT,
    restricted BOOLEAN NOT NULL,
    tags TEXT[] NOT NULL,
    resolution TEXT,
    problem_category TEXT,
    false_positive BOOLEAN NOT NULL,
    incident BOOLEAN NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX tickets_status ON tickets(status, number);
CREATE INDEX tickets_severity ON tickets(severity, number);
CREATE INDEX tickets_criticality ON tickets(criticality, number);
CREATE INDEX tickets_assignee ON tickets(assignee, number);

CREATE TABLE ticket_tags (
    tag TEXT NOT NULL,
    ticket_id UUID NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, ticket_id)
);
CREATE INDEX ticket_tags_ticket ON ticket_tags(ticket_id);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    id UUID NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    ticket_id UUID,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_ticket ON audit_log(ticket_id, seq);

-- Signed chain heads: one per committing transaction, signed with a key outside the database.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The current head, the row every appending transaction locks (FOR UPDATE); verification ignores it.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
