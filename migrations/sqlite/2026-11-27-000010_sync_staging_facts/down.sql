DROP TABLE defender_sync_alerts;
DROP TABLE defender_sync_vulnerabilities;
DROP INDEX defender_sync_staging_machine;
ALTER TABLE defender_sync_staging DROP COLUMN last_seen;
