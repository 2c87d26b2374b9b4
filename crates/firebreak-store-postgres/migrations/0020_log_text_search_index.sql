-- A trigram index on the text of incident-log entries (`log.*` audit entries), for the search
-- (`ILIKE '%text%'` on `details::jsonb ->> 'text'`, the expression the query uses). Partial: the
-- other entries (one per intake batch, every change) are not indexed, so intake pays nothing.
-- Events' host and source and observables' values get no such index: a GIN index on tables
-- every intake batch writes would slow intake, and the search scans them newest first, stopped
-- by its limit. Like 0009, it is skipped where pg_trgm is not installed (the search then scans).
DO $$
DECLARE
    ns TEXT;
BEGIN
    SELECT extnamespace::regnamespace::text INTO ns FROM pg_extension WHERE extname = 'pg_trgm';
    IF ns IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS audit_log_log_text_trgm ON audit_log '
            'USING gin ((details::jsonb ->> ''text'') %s.gin_trgm_ops) WHERE action LIKE ''log.%%''', ns);
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'no trigram index on incident-log text (%): the search scans them', SQLERRM;
END
$$;
