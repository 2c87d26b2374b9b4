-- New events' links to their observables go into an inverted index (FTS5, contentless, no
-- positions): one row per event, rowid = events.seq, one token per observable (its id as 32
-- hex digits). Each commit writes its postings as one new sorted segment, and FTS5 merges
-- segments incrementally, so a link costs a few bytes written instead of a row in a B-tree
-- keyed by random observable ids (second level of 0011 plus merges into event_observables:
-- about 4 KB written per event at a million events). Readers consult both: event_observables
-- keeps links restored from snapshots and those written before this migration.
CREATE VIRTUAL TABLE event_observable_index USING fts5(
    observables, content = '', columnsize = 0, detail = none
);
-- (term, doc) for every link in the index: what a snapshot exports as event_observables rows
CREATE VIRTUAL TABLE event_observable_terms USING fts5vocab(event_observable_index, instance);
INSERT OR IGNORE INTO event_observables (observable_id, event_id)
    SELECT observable_id, event_id FROM event_observables_recent;
DROP TABLE event_observables_recent;
