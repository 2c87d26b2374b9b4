-- Events from intake (raw + normalized), their dedup keys, and observables linked to events
-- and tickets.
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_ref TEXT,
    rule_id TEXT,
    fingerprint TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    host TEXT,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    occurrences BIGINT NOT NULL,
    reported_by TEXT NOT NULL,
    ticket_id UUID REFERENCES tickets(id),
    suppressed_by UUID,
    resolved_at TIMESTAMPTZ,
    data TEXT NOT NULL,
    raw TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX events_status ON events(status, seq);
CREATE INDEX events_reported_by ON events(reported_by, seq);
CREATE INDEX events_ticket ON events(ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX events_suppressed ON events(suppressed_by) WHERE suppressed_by IS NOT NULL;

CREATE TABLE event_dedup (
    dedup_key TEXT PRIMARY KEY,
    event_id UUID NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    -- the dedup window's start given with the last upsert (read through `excluded` by it)
    window_start TIMESTAMPTZ NOT NULL
);

CREATE TABLE observables (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL
);
CREATE INDEX observables_last_seen ON observables(last_seen, id);

CREATE TABLE event_observables (
    observable_id UUID NOT NULL,
    event_id UUID NOT NULL,
    PRIMARY KEY (observable_id, event_id)
);

CREATE TABLE ticket_observables (
    ticket_id UUID NOT NULL REFERENCES tickets(id),
    observable_id UUID NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ticket_id, observable_id)
);
CREATE INDEX ticket_observables_observable ON ticket_observables(observable_id);
