-- EDR coverage gaps (issue 21): one row per endpoint that Defender does not protect as it could,
-- recomputed after each Defender sync and every few minutes (src/coverage.rs). `kind` is
-- not_onboarded, blind_spot or defender_flagged; `since` is when the gap opened (kept while the
-- kind stays the same), so that lists show the oldest gaps and the API can say how long.
CREATE TABLE coverage_gaps (
    endpoint_id BIGINT PRIMARY KEY NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    since BIGINT NOT NULL
);
CREATE INDEX coverage_gaps_kind ON coverage_gaps (kind, endpoint_id);
