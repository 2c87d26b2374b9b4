-- SQLite keeps dedup keys first seen since its last merge in a second level
-- (event_dedup_recent); PostgreSQL upserts event_dedup directly. This migration keeps both
-- backends' migration lists identical.
SELECT 1;
