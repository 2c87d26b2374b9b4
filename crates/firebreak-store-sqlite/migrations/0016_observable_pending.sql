-- Observables first seen since the last merge go into a small second level, merged into
-- `observables` in id order in large steps by the writer (writer.rs, `LEVELS`). An id is in one
-- level only: an observable found in `observables` is updated there. Observable ids are hashes,
-- so inserting each new one straight into `observables` dirtied a random page of its id index
-- per observable, in every commit: about 2 KB written per event at a million EVE events, where
-- most addresses are new. Readers read both levels; snapshots carry this table's rows as rows
-- of `observables`.
CREATE TABLE observable_pending (
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE UNIQUE INDEX observable_pending_id ON observable_pending(id);
CREATE INDEX observable_pending_last_seen ON observable_pending(last_seen, id);
