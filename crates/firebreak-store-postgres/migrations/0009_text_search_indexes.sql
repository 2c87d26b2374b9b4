-- Trigram indexes for the text filters (`ILIKE '%text%'` on ticket titles and descriptions and
-- on event titles), so that a search is an index lookup, not a scan. pg_trgm ships with
-- PostgreSQL and is a trusted extension (a database owner may create it); it is created in
-- `public` (never in a schema of the search path, which may be dropped) and used wherever it
-- already is. Where it cannot be created the filters still work, by scanning.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): text filters will scan', SQLERRM;
END
$$;

DO $$
DECLARE
    ns TEXT;
BEGIN
    SELECT extnamespace::regnamespace::text INTO ns FROM pg_extension WHERE extname = 'pg_trgm';
    IF ns IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS tickets_title_trgm ON tickets USING gin (title %s.gin_trgm_ops)', ns);
        EXECUTE format('CREATE INDEX IF NOT EXISTS tickets_description_trgm ON tickets USING gin (description %s.gin_trgm_ops)', ns);
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_title_trgm ON events USING gin (title %s.gin_trgm_ops)', ns);
    END IF;
END
$$;
