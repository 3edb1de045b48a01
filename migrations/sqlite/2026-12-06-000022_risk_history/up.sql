-- Risk over time (issue 21): an endpoint's overall risk, Defender exposure and alert levels and
-- vulnerability count per day, written only when they changed since the endpoint's previous row
-- (a day's row is updated in place until the day ends). `day` counts days since 1970-01-01 UTC;
-- `why` is the summary of the highest risk factor then. WITHOUT ROWID on SQLite: the key is the
-- table, so 100,000 endpoints over a year stay small.
CREATE TABLE risk_history (
    endpoint_id INTEGER NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    risk SMALLINT NOT NULL,
    exposure SMALLINT NOT NULL,
    alert SMALLINT NOT NULL,
    vulns INTEGER NOT NULL,
    why TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, day)
) WITHOUT ROWID;
CREATE INDEX risk_history_day ON risk_history (day);
