-- Links from new events to their observables go first into a small second level, merged into
-- event_observables in key order in large steps by the writer (writer.rs, `LEVELS`).
-- Inserting each link straight into event_observables wrote one random page of a large B-tree
-- per link: at a million events, most of the intake's WAL bytes. Readers consult both levels;
-- snapshots carry this table's rows as rows of event_observables.
CREATE TABLE event_observables_recent (
    observable_id TEXT NOT NULL,
    event_id TEXT NOT NULL
);
CREATE INDEX event_observables_recent_observable ON event_observables_recent(observable_id);
