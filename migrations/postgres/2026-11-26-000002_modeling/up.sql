-- Modeling and risk: profiles (standard ones mirror the shipped library; integrations own
-- theirs), integration profile assignments, risk factors, events, and background jobs.
CREATE TABLE profiles (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX profiles_owner ON profiles (owner);

CREATE TABLE profile_assignments (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    profile_id BIGINT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    score SMALLINT NOT NULL,
    PRIMARY KEY (endpoint_id, profile_id)
);
CREATE INDEX profile_assignments_profile ON profile_assignments (profile_id);

ALTER TABLE endpoints ADD COLUMN other_profiles TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN profile_reason TEXT NOT NULL DEFAULT '';

CREATE TABLE risk_factors (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    level SMALLINT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, source)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    endpoint_id BIGINT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    requested_by TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_kind ON jobs (kind, id);

CREATE TABLE app_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
