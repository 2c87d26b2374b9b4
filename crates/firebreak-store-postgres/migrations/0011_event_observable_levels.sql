-- SQLite keeps new event-observable links in a second level (event_observables_recent) merged
-- in large steps; PostgreSQL inserts them directly (one sorted UNNEST per intake batch). This
-- migration keeps both backends' migration lists identical.
SELECT 1;
