-- What the later pages of a sync say about the machines it staged: their vulnerabilities and
-- their active alerts, staged as they arrive like the machines themselves, so that nothing a
-- sync holds in memory grows with the tenant. Emptied with defender_sync_staging.

-- The later pages name machines by id.
CREATE UNIQUE INDEX defender_sync_staging_machine ON defender_sync_staging (machine_id);
-- With mac_key and name_key, all that finding re-imaged duplicates reads (not the records).
ALTER TABLE defender_sync_staging ADD COLUMN last_seen BIGINT NOT NULL DEFAULT 0;

-- A machine's CVEs: every row of the bulk listing on a full sync; on a delta sync Defender's
-- changes, applied in order of arrival to the machine's stored list.
CREATE TABLE defender_sync_vulnerabilities (
    seq INTEGER NOT NULL,      -- the staged machine
    ord INTEGER NOT NULL,      -- the order of arrival
    cve INTEGER NOT NULL,      -- the CVE, as its index in the sync's catalog (kept in memory)
    fixed BOOLEAN NOT NULL,    -- a "Fixed" change: the CVE leaves the machine's list
    PRIMARY KEY (seq, ord)
) WITHOUT ROWID;

-- The active alerts of the staged machines; the import keeps the most severe of each.
CREATE TABLE defender_sync_alerts (
    seq INTEGER NOT NULL,
    alert_id TEXT NOT NULL,
    level SMALLINT NOT NULL,   -- as risk levels are stored: 0 = None … 4 = Critical
    updated_ms BIGINT,         -- the last update (or creation) in Unix milliseconds
    title TEXT NOT NULL,
    PRIMARY KEY (seq, alert_id)
) WITHOUT ROWID;
