-- Maintained counters for the queue's counts and the suppression rules' hits, kept by triggers
-- in the same transaction as every change to events (a page never counts the events table).
CREATE TABLE event_status_counts (
    status TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO event_status_counts (status, n) SELECT status, COUNT(*) FROM events GROUP BY status;

CREATE TABLE suppression_stats (
    rule_id TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    last_hit INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO suppression_stats (rule_id, events, occurrences, last_hit)
    SELECT suppressed_by, COUNT(*), SUM(occurrences), MAX(last_seen) FROM events
    WHERE suppressed_by IS NOT NULL GROUP BY suppressed_by;

CREATE TRIGGER events_counters_insert AFTER INSERT ON events BEGIN
    INSERT INTO event_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    INSERT INTO suppression_stats (rule_id, events, occurrences, last_hit)
        SELECT NEW.suppressed_by, 1, NEW.occurrences, NEW.last_seen WHERE NEW.suppressed_by IS NOT NULL
        ON CONFLICT (rule_id) DO UPDATE SET events = events + 1,
            occurrences = occurrences + excluded.occurrences, last_hit = max(last_hit, excluded.last_hit);
END;

CREATE TRIGGER events_counters_status AFTER UPDATE OF status ON events
WHEN OLD.status <> NEW.status BEGIN
    UPDATE event_status_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO event_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER events_counters_suppression AFTER UPDATE OF occurrences, last_seen, suppressed_by ON events
WHEN OLD.suppressed_by IS NOT NULL OR NEW.suppressed_by IS NOT NULL BEGIN
    UPDATE suppression_stats SET events = events - 1, occurrences = occurrences - OLD.occurrences
        WHERE rule_id = OLD.suppressed_by;
    INSERT INTO suppression_stats (rule_id, events, occurrences, last_hit)
        SELECT NEW.suppressed_by, 1, NEW.occurrences, NEW.last_seen WHERE NEW.suppressed_by IS NOT NULL
        ON CONFLICT (rule_id) DO UPDATE SET events = events + 1,
            occurrences = occurrences + excluded.occurrences, last_hit = max(last_hit, excluded.last_hit);
END;

CREATE TRIGGER events_counters_delete AFTER DELETE ON events BEGIN
    UPDATE event_status_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE suppression_stats SET events = events - 1, occurrences = occurrences - OLD.occurrences
        WHERE rule_id = OLD.suppressed_by;
END;
