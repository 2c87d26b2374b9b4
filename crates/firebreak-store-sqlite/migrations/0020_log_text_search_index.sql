-- PostgreSQL gets a trigram index on incident-log text here (for the search). SQLite has no
-- index for `LIKE '%text%'`; this migration keeps both backends' migration lists identical.
SELECT 1;
