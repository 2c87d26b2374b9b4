-- SQLite only: its writer counts a repeat on the event's row alone and judges the dedup window
-- on the event's `last_seen`. PostgreSQL keeps the key's `last_seen` current in its upsert.
SELECT 1;
