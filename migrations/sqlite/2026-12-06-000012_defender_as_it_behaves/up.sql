-- Defender as it really behaves (issue 19).

-- A machine's vulnerabilities are kept as Defender reports them, one row per (software vendor,
-- product, version, CVE), so that a delta's "Fixed on version 1.0" and "New on version 2.0" of
-- one CVE are two rows and never cancel each other. The CVE-only lists kept so far cannot say
-- which version a CVE was on: they are dropped, and the snapshot that allowed a delta is
-- forgotten, so the first sync after the upgrade fetches every row again.
ALTER TABLE defender_machines RENAME COLUMN vuln_cves TO vuln_rows;
UPDATE defender_machines SET vuln_rows = '';
DELETE FROM app_settings WHERE key = 'defender.vulnerability_snapshot';

-- Isolation as Defender's machine actions say it is (the Machine entity has no such property):
-- beside `isolated`, the latest completed isolation or release (when, by whom, Full or
-- Selective) and one still waiting for its device, as JSON (`defender::machine::Isolation`; the
-- details are shown, never queried).
ALTER TABLE defender_machines ADD COLUMN isolation TEXT NOT NULL DEFAULT '';

-- What a delta record says beyond its CVE: the software it is on (an index into the sync's
-- software list, kept in memory), when the event was found, and the device group it was reported
-- under (a machine that moved between groups is reported under both).
ALTER TABLE defender_sync_vulnerabilities ADD COLUMN software INTEGER NOT NULL DEFAULT 0;
ALTER TABLE defender_sync_vulnerabilities ADD COLUMN event_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE defender_sync_vulnerabilities ADD COLUMN rbac_group TEXT NOT NULL DEFAULT '';
