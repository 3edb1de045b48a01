-- Response rules (issue 22): a condition over the endpoint and an action; each time a rule
-- meets an endpoint it records a decision, which waits for a second person's approval when the
-- rule asks for one, and then is sent once (its id is the machine action's idempotency key).
CREATE TABLE response_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    condition TEXT NOT NULL,
    action TEXT NOT NULL,
    requires_approval BOOLEAN NOT NULL,
    cooldown_minutes INTEGER NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT FALSE,
    author TEXT NOT NULL,
    -- Everyone who wrote a version of the rule or enabled it, one per line: none of them may
    -- approve its decisions.
    editors TEXT NOT NULL DEFAULT '',
    -- Moved on by every change and every enabling: a decision acts only for the version that made it.
    version INTEGER NOT NULL DEFAULT 1,
    -- The last dry run of the rule as it is now (reset by every change): enabling needs one.
    dry_run_at BIGINT,
    dry_run_count BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE rule_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id BIGINT NOT NULL REFERENCES response_rules (id) ON DELETE CASCADE,
    rule_version INTEGER NOT NULL,
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    -- awaiting_approval, approved, declined, expired, sent, refused
    state TEXT NOT NULL,
    -- What the rule saw when it matched (JSON), for the approver and the audit log.
    matched TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    decided_at BIGINT,
    decided_by TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    sent_at BIGINT,
    action_id BIGINT
);
CREATE INDEX rule_decisions_rule_endpoint ON rule_decisions (rule_id, endpoint_id, created_at);
CREATE INDEX rule_decisions_state ON rule_decisions (state);
-- One open decision per rule and endpoint, even when two instances evaluate at once.
CREATE UNIQUE INDEX rule_decisions_open ON rule_decisions (rule_id, endpoint_id)
    WHERE state IN ('awaiting_approval', 'approved');
CREATE INDEX rule_decisions_sent ON rule_decisions (sent_at);
