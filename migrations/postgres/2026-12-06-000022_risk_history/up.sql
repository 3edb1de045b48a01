-- Risk over time (issue 21): an endpoint's overall risk, Defender exposure and alert levels and
-- vulnerability count per day, written only when they changed since the endpoint's previous row
-- (a day's row is updated in place until the day ends). `day` counts days since 1970-01-01 UTC;
-- `why` is the summary of the highest risk factor then. On SQLite the table is WITHOUT ROWID (the key is the
-- table); here the primary key index serves the same reads.
CREATE TABLE risk_history (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    risk SMALLINT NOT NULL,
    exposure SMALLINT NOT NULL,
    alert SMALLINT NOT NULL,
    vulns INTEGER NOT NULL,
    why TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, day)
);
CREATE INDEX risk_history_day ON risk_history (day);

-- Endpoints per overall risk level at the end of each day (the last snapshot of the day), so that
-- the dashboard's trend and the summary API read a row per day, not the history of every endpoint.
CREATE TABLE risk_day_counts (
    day INTEGER PRIMARY KEY NOT NULL,
    none_count BIGINT NOT NULL,
    low_count BIGINT NOT NULL,
    medium_count BIGINT NOT NULL,
    high_count BIGINT NOT NULL,
    critical_count BIGINT NOT NULL
);
