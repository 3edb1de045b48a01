-- Foundation: people, sessions, API tokens, the audit log and the endpoint inventory.
-- Times are UTC Unix seconds (BIGINT) so both backends sort and compare them the same way.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT ''
);

CREATE TABLE endpoints (
    id BIGSERIAL PRIMARY KEY,
    mac TEXT UNIQUE,
    mac_vendor TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL DEFAULT '',
    fqdn TEXT NOT NULL DEFAULT '',
    os_name TEXT NOT NULL DEFAULT '',
    os_version TEXT NOT NULL DEFAULT '',
    os_build TEXT NOT NULL DEFAULT '',
    dhcp_vendor_class TEXT NOT NULL DEFAULT '',
    dhcp_params TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '',
    match_score SMALLINT NOT NULL DEFAULT 0,
    risk_level SMALLINT NOT NULL DEFAULT 0,
    sources TEXT NOT NULL DEFAULT '',
    custom_data TEXT NOT NULL DEFAULT '{}',
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX endpoints_last_seen ON endpoints (last_seen, id);
CREATE INDEX endpoints_hostname ON endpoints (hostname, id);
CREATE INDEX endpoints_ip ON endpoints (ip, id);
CREATE INDEX endpoints_mac_sort ON endpoints (mac, id);
CREATE INDEX endpoints_risk ON endpoints (risk_level, id);
CREATE INDEX endpoints_profile ON endpoints (profile, id);
CREATE INDEX endpoints_os ON endpoints (os_name, id);

CREATE TABLE endpoint_ips (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    ip TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, ip)
);
CREATE INDEX endpoint_ips_ip ON endpoint_ips (ip);

CREATE TABLE endpoint_sources (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, source)
);
CREATE INDEX endpoint_sources_source ON endpoint_sources (source, endpoint_id);

CREATE TABLE endpoint_history (
    id BIGSERIAL PRIMARY KEY,
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT NOT NULL,
    new_value TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX endpoint_history_endpoint ON endpoint_history (endpoint_id, id);
