-- SQLite only: its new observables go to a second level first (observable_pending).
-- PostgreSQL keeps one table.
SELECT 1;
