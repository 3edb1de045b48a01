-- Entra ID sign-in: its configuration (the client secret only encrypted) and the link from an
-- Entra identity (tenant id + object id, never the name) to the local user it signs in as.
CREATE TABLE sso_config (
    name TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    secret_ciphertext BLOB,
    authority TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT NOT NULL DEFAULT '',
    admin_values TEXT NOT NULL DEFAULT '',
    operator_values TEXT NOT NULL DEFAULT '',
    analyst_values TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE user_identities (
    provider TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (provider, tenant_id, object_id)
);
CREATE INDEX user_identities_user ON user_identities (user_id);
