-- Defender's machine tags, one row each (issue 22), so that the Endpoints list, the API and
-- response rules can filter on a tag exactly. Written with the machine's row at each import;
-- clearing the content hashes makes the next sync write every machine, and so its tags, again.
CREATE TABLE defender_machine_tags (
    machine_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (machine_id, tag)
);
CREATE INDEX defender_machine_tags_tag ON defender_machine_tags (tag);
UPDATE defender_machines SET content_hash = '';
