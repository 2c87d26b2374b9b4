-- Events from intake (raw + normalized), their dedup keys, and observables linked to events
-- and tickets. Times are milliseconds since the epoch.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_ref TEXT,
    rule_id TEXT,
    fingerprint TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    host TEXT,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    reported_by TEXT NOT NULL,
    ticket_id TEXT REFERENCES tickets(id),
    suppressed_by TEXT,
    resolved_at INTEGER,
    data TEXT NOT NULL,
    raw TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX events_status ON events(status, seq);
CREATE INDEX events_reported_by ON events(reported_by, seq);
CREATE INDEX events_ticket ON events(ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX events_suppressed ON events(suppressed_by) WHERE suppressed_by IS NOT NULL;

CREATE TABLE event_dedup (
    dedup_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE observables (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE INDEX observables_last_seen ON observables(last_seen, id);

CREATE TABLE event_observables (
    observable_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (observable_id, event_id)
) WITHOUT ROWID;

CREATE TABLE ticket_observables (
    ticket_id TEXT NOT NULL REFERENCES tickets(id),
    observable_id TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, observable_id)
) WITHOUT ROWID;
CREATE INDEX ticket_observables_observable ON ticket_observables(observable_id);
