-- SQLite keeps dedup keys pending a merge in a heap table indexed in its writer's memory
-- (event_dedup_pending); PostgreSQL upserts event_dedup directly. This migration keeps both
-- backends' migration lists identical.
SELECT 1;
