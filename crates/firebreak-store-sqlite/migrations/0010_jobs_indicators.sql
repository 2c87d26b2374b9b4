-- Durable jobs (playbook runs) claimed by workers under a lease, and threat indicators from
-- local feeds with a generation counter the in-memory matchers watch. Times are milliseconds
-- since the epoch.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    ticket_id TEXT REFERENCES tickets(id),
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    locked_by TEXT,
    locked_until INTEGER,
    last_error TEXT,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL;
-- claims: queued and waiting jobs by due time, running ones by lease end
CREATE INDEX jobs_due ON jobs(status, run_at);
CREATE INDEX jobs_lease ON jobs(locked_until) WHERE status = 'running';
-- listings, newest first
CREATE INDEX jobs_created ON jobs(created_at, id);
CREATE INDEX jobs_ticket ON jobs(ticket_id, created_at, id) WHERE ticket_id IS NOT NULL;

-- `pos` is the stable position `indicator_keys` pages by (AUTOINCREMENT: never reused).
CREATE TABLE indicators (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    confidence INTEGER NOT NULL,
    source TEXT NOT NULL,
    description TEXT,
    valid_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- also the index of lookups by (kind, value) and of listings in (kind, value, source) order
    UNIQUE (kind, value, source)
);
CREATE INDEX indicators_source ON indicators(source);

-- Bumped once by every op that adds, changes or deletes indicators, in its transaction.
CREATE TABLE indicator_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO indicator_generation (id, n) VALUES (1, 0);
