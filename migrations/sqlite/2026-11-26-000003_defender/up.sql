-- The Microsoft Defender integration: its configuration (the client secret only encrypted),
-- its sync runs, and the Defender machines it imported with what the Endpoint Summary shows.
CREATE TABLE integration_config (
    name TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    secret_ciphertext BLOB,
    cloud TEXT NOT NULL,
    region TEXT NOT NULL DEFAULT '',
    login_base_url TEXT NOT NULL DEFAULT '',
    api_base_url TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT 0,
    sync_interval_minutes INTEGER NOT NULL DEFAULT 60,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    trigger TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    items_done BIGINT NOT NULL DEFAULT 0,
    items_total BIGINT NOT NULL DEFAULT 0,
    machines BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    merged BIGINT NOT NULL DEFAULT 0,
    stale BIGINT NOT NULL DEFAULT 0,
    api_calls BIGINT NOT NULL DEFAULT 0,
    throttled BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX sync_runs_integration ON sync_runs (integration, id);
-- At most one running sync per integration, across every instance sharing the database.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (integration) WHERE status = 'running';

CREATE TABLE defender_machines (
    machine_id TEXT PRIMARY KEY NOT NULL,
    endpoint_id INTEGER REFERENCES endpoints (id) ON DELETE SET NULL,
    computer_dns_name TEXT NOT NULL DEFAULT '',
    os_platform TEXT NOT NULL DEFAULT '',
    os_version TEXT NOT NULL DEFAULT '',
    os_build TEXT NOT NULL DEFAULT '',
    onboarding_status TEXT NOT NULL DEFAULT '',
    health_status TEXT NOT NULL DEFAULT '',
    risk_score TEXT NOT NULL DEFAULT '',
    exposure_level TEXT NOT NULL DEFAULT '',
    last_ip TEXT NOT NULL DEFAULT '',
    macs TEXT NOT NULL DEFAULT '',
    first_seen BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT NOT NULL DEFAULT 0,
    rbac_group TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    vuln_count INTEGER NOT NULL DEFAULT 0,
    top_vuln_cve TEXT NOT NULL DEFAULT '',
    top_vuln_severity SMALLINT NOT NULL DEFAULT 0,
    top_vuln_description TEXT NOT NULL DEFAULT '',
    top_alert_id TEXT NOT NULL DEFAULT '',
    top_alert_severity SMALLINT NOT NULL DEFAULT 0,
    top_alert_title TEXT NOT NULL DEFAULT '',
    isolated BOOLEAN NOT NULL DEFAULT 0,
    stale BOOLEAN NOT NULL DEFAULT 0,
    stale_reason TEXT NOT NULL DEFAULT '',
    match_note TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);
CREATE INDEX defender_machines_endpoint ON defender_machines (endpoint_id);
-- Matching Defender machines to network endpoints by name.
CREATE INDEX endpoints_fqdn ON endpoints (fqdn);
