-- Durable jobs (playbook runs) claimed by workers under a lease (`FOR UPDATE SKIP LOCKED`), and
-- threat indicators from local feeds with a generation counter the in-memory matchers watch.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    ticket_id UUID REFERENCES tickets(id),
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at TIMESTAMPTZ NOT NULL,
    locked_by TEXT,
    locked_until TIMESTAMPTZ,
    last_error TEXT,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL;
-- claims: queued and waiting jobs by due time, running ones by lease end
CREATE INDEX jobs_due ON jobs(status, run_at);
CREATE INDEX jobs_lease ON jobs(locked_until) WHERE status = 'running';
-- listings, newest first
CREATE INDEX jobs_created ON jobs(created_at, id);
CREATE INDEX jobs_ticket ON jobs(ticket_id, created_at, id) WHERE ticket_id IS NOT NULL;

-- `pos` is the stable position `indicator_keys` pages by. Kind, value and source compare
-- byte-wise (COLLATE "C"), as on SQLite, whatever the database's collation: listings and their
-- cursors order the same on both backends.
CREATE TABLE indicators (
    pos BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    kind TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    confidence INTEGER NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    description TEXT,
    valid_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    -- also the index of lookups by (kind, value) and of listings in (kind, value, source) order
    UNIQUE (kind, value, source)
);
CREATE INDEX indicators_source ON indicators(source);

-- Bumped once by every op that adds, changes or deletes indicators, in its transaction (a
-- sequence would not do: its value is visible before the data it announces is committed).
CREATE TABLE indicator_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO indicator_generation (id, n) VALUES (1, 0);
