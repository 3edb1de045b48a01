ALTER TABLE jobs DROP COLUMN heartbeat_at;
ALTER TABLE sync_runs DROP COLUMN heartbeat_at;
