-- Dedup keys first seen since the last merge now go into a plain heap table, appended in
-- arrival order: the writer finds them through an index of its own in memory (dedup.rs),
-- rebuilt from this table when the writer starts and whenever another connection has committed
-- (PRAGMA data_version). The keyed second level of 0012 had each new key dirty a random page of
-- a B-tree of up to 300,000 keys, in every commit: about 2 KB written per event at a million
-- events. The writer still merges these rows into event_dedup in key order in large steps, and
-- snapshots carry them as rows of event_dedup.
CREATE TABLE event_dedup_pending (
    dedup_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    last_seen INTEGER NOT NULL
);
INSERT INTO event_dedup_pending (dedup_key, event_id, last_seen)
    SELECT dedup_key, event_id, last_seen FROM event_dedup_recent;
DROP TABLE event_dedup_recent;
