-- PostgreSQL gets trigram indexes for the text filters here. SQLite has no equivalent index for
-- `LIKE '%text%'` (full-text search is for the search feature); this migration keeps both
-- backends' migration lists identical.
SELECT 1;
