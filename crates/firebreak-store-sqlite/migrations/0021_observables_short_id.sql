-- The merged level of observables gets the pending level's key (migration 0019): an index on
-- the id's first 8 characters instead of the unique index on the whole 36-character id.
--
-- New observables are merged from `observable_pending` in id order every 40,000 rows, and each
-- merge wrote every page of the unique id index: its ids are hashes, so 40,000 new ones land
-- on nearly all of its pages. At 830,000 observables that index was ~10,000 pages, and a merge
-- took 250 ms; the cost grew with the table, so a long intake spent a growing share of the
-- writer in merges. Entries of 8 characters take about a third of the pages.
--
-- Uniqueness of an id is the writer's: it is the only writer of both levels, it looks an id up
-- in both (by prefix, then id) before inserting it into the pending level, and a merge moves
-- only ids the merged level does not hold (the others update the row there). Readers name the
-- prefix in their lookups by id, as they do for the pending level.
CREATE TABLE observables_merged (
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
INSERT INTO observables_merged (rowid, id, kind, value, first_seen, last_seen)
    SELECT rowid, id, kind, value, first_seen, last_seen FROM observables ORDER BY rowid;
DROP TABLE observables;
ALTER TABLE observables_merged RENAME TO observables;
CREATE INDEX observables_id8 ON observables(substr(id, 1, 8));
CREATE INDEX observables_last_seen ON observables(last_seen, id);
