-- Dedup keys first seen since the last merge go into a small second level, merged into
-- event_dedup in key order in large steps by the writer (writer.rs, `LEVELS`). A key is in one
-- level only: a key found in event_dedup is updated there. Inserting each new key straight
-- into event_dedup wrote one random page of a large B-tree per event. Snapshots carry this
-- table's rows as rows of event_dedup.
CREATE TABLE event_dedup_recent (
    dedup_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
