-- Sign-in sessions, login throttling, TOTP, recovery codes, token last use, documents and
-- database-held blobs (issue 4).
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    mfa_pending INTEGER NOT NULL,
    client_addr TEXT,
    user_agent TEXT,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
);

CREATE TABLE user_totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    last_step INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets(id),
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    description TEXT,
    source TEXT,
    collection_notes TEXT,
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX documents_ticket ON documents(ticket_id, added_at);
CREATE INDEX documents_sha256 ON documents(sha256);

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
