-- Maintained counters for the queue's counts and the suppression rules' hits, kept by
-- statement-level triggers in the same transaction as every change to events (a page never
-- counts the events table). Rows are spread over 16 shards by backend so that concurrent
-- writers (several nodes) do not queue on one counter row; readers sum the shards.
CREATE TABLE event_status_counts (
    status TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (status, shard)
);
INSERT INTO event_status_counts (status, shard, n) SELECT status, 0, COUNT(*) FROM events GROUP BY status;

CREATE TABLE suppression_stats (
    rule_id UUID NOT NULL,
    shard SMALLINT NOT NULL,
    events BIGINT NOT NULL,
    occurrences BIGINT NOT NULL,
    last_hit TIMESTAMPTZ,
    PRIMARY KEY (rule_id, shard)
);
INSERT INTO suppression_stats (rule_id, shard, events, occurrences, last_hit)
    SELECT suppressed_by, 0, COUNT(*), SUM(occurrences), MAX(last_seen) FROM events
    WHERE suppressed_by IS NOT NULL GROUP BY suppressed_by;

CREATE FUNCTION firebreak_event_counters() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s SMALLINT := (pg_backend_pid() % 16)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event_status_counts (status, shard, n)
            SELECT status, s, COUNT(*) FROM new_rows GROUP BY status
            ON CONFLICT (status, shard) DO UPDATE SET n = event_status_counts.n + excluded.n;
        INSERT INTO suppression_stats (rule_id, shard, events, occurrences, last_hit)
            SELECT suppressed_by, s, COUNT(*), SUM(occurrences), MAX(last_seen) FROM new_rows
            WHERE suppressed_by IS NOT NULL GROUP BY suppressed_by
            ON CONFLICT (rule_id, shard) DO UPDATE SET events = suppression_stats.events + excluded.events,
                occurrences = suppression_stats.occurrences + excluded.occurrences,
                last_hit = GREATEST(suppression_stats.last_hit, excluded.last_hit);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO event_status_counts (status, shard, n)
            SELECT status, s, SUM(d) FROM (
                SELECT status, -1 AS d FROM old_rows UNION ALL SELECT status, 1 FROM new_rows
            ) x GROUP BY status HAVING SUM(d) <> 0
            ON CONFLICT (status, shard) DO UPDATE SET n = event_status_counts.n + excluded.n;
        INSERT INTO suppression_stats (rule_id, shard, events, occurrences, last_hit)
            SELECT rule_id, s, SUM(de), SUM(dn), MAX(last) FROM (
                SELECT suppressed_by AS rule_id, -1 AS de, -occurrences AS dn, NULL::timestamptz AS last
                    FROM old_rows WHERE suppressed_by IS NOT NULL
                UNION ALL
                SELECT suppressed_by, 1, occurrences, last_seen FROM new_rows WHERE suppressed_by IS NOT NULL
            ) x GROUP BY rule_id
            ON CONFLICT (rule_id, shard) DO UPDATE SET events = suppression_stats.events + excluded.events,
                occurrences = suppression_stats.occurrences + excluded.occurrences,
                last_hit = GREATEST(suppression_stats.last_hit, excluded.last_hit);
    ELSE
        INSERT INTO event_status_counts (status, shard, n)
            SELECT status, s, -COUNT(*) FROM old_rows GROUP BY status
            ON CONFLICT (status, shard) DO UPDATE SET n = event_status_counts.n + excluded.n;
        INSERT INTO suppression_stats (rule_id, shard, events, occurrences, last_hit)
            SELECT suppressed_by, s, -COUNT(*), -SUM(occurrences), NULL FROM old_rows
            WHERE suppressed_by IS NOT NULL GROUP BY suppressed_by
            ON CONFLICT (rule_id, shard) DO UPDATE SET events = suppression_stats.events + excluded.events,
                occurrences = suppression_stats.occurrences + excluded.occurrences;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_counters_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION firebreak_event_counters();
CREATE TRIGGER events_counters_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION firebreak_event_counters();
CREATE TRIGGER events_counters_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION firebreak_event_counters();
