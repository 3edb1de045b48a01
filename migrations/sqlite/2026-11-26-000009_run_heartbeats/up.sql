-- A running sync or job writes its heartbeat every 30 seconds. On PostgreSQL several instances
-- share the database, so one cannot mark "running" rows interrupted at start; a row whose
-- heartbeat stopped long ago belongs to a process that died, and the next start takes over.
ALTER TABLE sync_runs ADD COLUMN heartbeat_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN heartbeat_at BIGINT NOT NULL DEFAULT 0;
