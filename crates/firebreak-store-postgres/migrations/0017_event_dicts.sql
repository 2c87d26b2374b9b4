-- SQLite only: its events' compression dictionaries (event_dicts). PostgreSQL compresses large
-- values itself (TOAST).
SELECT 1;
