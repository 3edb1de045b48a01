ALTER TABLE defender_sync_vulnerabilities DROP COLUMN rbac_group;
ALTER TABLE defender_sync_vulnerabilities DROP COLUMN event_ms;
ALTER TABLE defender_sync_vulnerabilities DROP COLUMN software;
ALTER TABLE defender_machines DROP COLUMN isolation;
UPDATE defender_machines SET vuln_rows = '';
ALTER TABLE defender_machines RENAME COLUMN vuln_rows TO vuln_cves;
DELETE FROM app_settings WHERE key = 'defender.vulnerability_snapshot';
