-- Events out (issue 21). `events` is the outbox: every event is written in the transaction of
-- the change it reports, with its JSON `data`. `txid` is the writing transaction's id: a
-- destination's worker reads only events of transactions older than every one still running
-- (txid_snapshot_xmin), in (txid, id) order, so that an id taken early but committed late is
-- never skipped by its cursor (src/db/models/outbox.rs explains).
ALTER TABLE events ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
ALTER TABLE events ADD COLUMN txid BIGINT NOT NULL DEFAULT txid_current();
CREATE INDEX events_outbox ON events (txid, id);

-- Where events go: a webhook (URL, sealed HMAC secret) or a syslog receiver (host:port).
-- `event_types` is a comma-separated list (empty: all); `min_level` the lowest risk level an
-- event that carries one must have (0: any). (cursor_txid, cursor_id) is the last event this
-- destination has dealt with (delivered or filtered out); only events at or after `created_at`
-- are its own.
CREATE TABLE destinations (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_ciphertext BYTEA,
    event_types TEXT NOT NULL DEFAULT '',
    min_level SMALLINT NOT NULL DEFAULT 0,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    cursor_txid BIGINT NOT NULL DEFAULT 0,
    cursor_id BIGINT NOT NULL DEFAULT 0
);

-- The delivery log: one row per attempt (event_id NULL for a test event).
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    destination_id BIGINT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    event_id BIGINT,
    at BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX deliveries_of_destination ON deliveries (destination_id, id);
