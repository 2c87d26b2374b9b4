-- Sign-in sessions, login throttling, TOTP, recovery codes, token last use, documents and
-- database-held blobs (issue 4).
ALTER TABLE api_tokens ADD COLUMN last_used_at TIMESTAMPTZ;

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    mfa_pending BOOLEAN NOT NULL,
    client_addr TEXT,
    user_agent TEXT,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ
);

CREATE TABLE user_totp (
    user_id UUID PRIMARY KEY REFERENCES users(id),
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    last_step BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id UUID NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE documents (
    id UUID PRIMARY KEY,
    ticket_id UUID NOT NULL REFERENCES tickets(id),
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    description TEXT,
    source TEXT,
    collection_notes TEXT,
    added_by TEXT NOT NULL,
    added_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX documents_ticket ON documents(ticket_id, added_at);
CREATE INDEX documents_sha256 ON documents(sha256);

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
