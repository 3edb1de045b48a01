DROP TABLE deliveries;
DROP TABLE destinations;
DROP INDEX events_outbox;
ALTER TABLE events DROP COLUMN txid;
ALTER TABLE events DROP COLUMN data;
