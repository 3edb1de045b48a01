-- Events out (issue 21); see the PostgreSQL migration. SQLite has one writer at a time, so ids
-- become visible in commit order: `txid` stays 0 and the cursor's order is the id's.
ALTER TABLE events ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
ALTER TABLE events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
CREATE INDEX events_outbox ON events (txid, id);

CREATE TABLE destinations (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_ciphertext BLOB,
    event_types TEXT NOT NULL DEFAULT '',
    min_level SMALLINT NOT NULL DEFAULT 0,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    cursor_txid BIGINT NOT NULL DEFAULT 0,
    cursor_id BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    destination_id BIGINT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    event_id BIGINT,
    at BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX deliveries_of_destination ON deliveries (destination_id, id);
