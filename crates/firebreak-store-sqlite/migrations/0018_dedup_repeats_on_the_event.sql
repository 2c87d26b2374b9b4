-- No schema change. From this version the writer counts a repeat inside the dedup window on
-- the event's row alone (`occurrences`, `last_seen`) and judges the window on the event's
-- `last_seen`; a key's row in event_dedup / event_dedup_pending is written only when the key
-- moves to a new event, so its `last_seen` is the time of that move or later. This migration
-- is here so that an older binary, which judged the window on the key's `last_seen`, refuses
-- a database written by this one instead of splitting events early.
SELECT 1;
