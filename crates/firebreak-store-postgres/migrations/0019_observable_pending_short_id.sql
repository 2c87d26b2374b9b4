-- SQLite only: its second level of new observables is looked up by a short prefix of the id.
-- PostgreSQL has no second level.
SELECT 1;
