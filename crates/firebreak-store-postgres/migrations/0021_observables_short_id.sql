-- SQLite's merged level of observables moves to an index on the id's first 8 characters here.
-- PostgreSQL has one observables table with its primary key; this migration keeps both
-- backends' migration lists identical.
SELECT 1;
