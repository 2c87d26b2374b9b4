-- Compression dictionaries of events (pack.rs). An intake event's raw record and details are
-- stored as one zstd frame compressed with a dictionary trained on a sample of the database's
-- own events, in `events.raw` (a blob; `events.data` then an empty blob): about 250 bytes where
-- the two texts took about 1,700. A dictionary's id is the first 8 bytes of its SHA-256; the
-- writer stores it in the transaction of the first row that uses it. Rows stored before, and
-- rows restored from snapshots (which carry events unpacked), stay text.
CREATE TABLE event_dicts (
    id INTEGER PRIMARY KEY,
    dict BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
