-- Tags the product writes to Defender (issue 22, tags both ways).
-- An admin maps a profile to a Defender tag: every live Defender machine whose endpoint has
-- the profile gets the tag (one row per profile).
CREATE TABLE profile_defender_tags (
    profile TEXT PRIMARY KEY NOT NULL,
    tag TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Each tag the product added to a machine and Defender accepted: only these does it ever
-- remove (a tag a person put there is never recorded here). source: profile or rule.
CREATE TABLE defender_tags_written (
    machine_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    source TEXT NOT NULL,
    written_by TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (machine_id, tag)
);
-- Every call to Defender's tag API, answered or not: the hourly budget counts them.
CREATE TABLE defender_tag_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX defender_tag_calls_at ON defender_tag_calls (at);
