-- The queue's counters (event_status_counts, suppression_stats) for new events are now added
-- by the writer, once per status and rule for a whole intake batch, and by a snapshot import
-- once for all its events. The insert trigger made every events insert open a statement
-- journal (a copy of each page it touched) and flush the event-observable index's pending
-- terms to a new segment. The update and delete triggers stay: those changes are few.
DROP TRIGGER events_counters_insert;
