-- SQLite keeps new events' observable links in an FTS5 inverted index (event_observable_index);
-- PostgreSQL inserts them into event_observables directly. This migration keeps both backends'
-- migration lists identical.
SELECT 1;
