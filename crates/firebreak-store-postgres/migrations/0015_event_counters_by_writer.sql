-- SQLite only: its writer now adds the counters of new events itself (no insert trigger).
-- PostgreSQL keeps its trigger.
SELECT 1;
