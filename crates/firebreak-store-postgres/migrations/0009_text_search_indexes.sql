-- Trigram indexes for the text filters (`ILIKE '%text%'` on ticket titles and descriptions and
-- on event titles), so that a search is an index lookup, not a scan. pg_trgm ships with
-- PostgreSQL and is a trusted extension (a database owner may create it); where it cannot be
-- created the filters still work, by scanning.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): text filters will scan', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX IF NOT EXISTS tickets_title_trgm ON tickets USING gin (title gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS tickets_description_trgm ON tickets USING gin (description gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS events_title_trgm ON events USING gin (title gin_trgm_ops);
    END IF;
END
$$;
