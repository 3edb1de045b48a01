-- Machine actions (Run Scan, Isolate, Unisolate). The intent is recorded before the request is
-- sent, under the form's idempotency key, so that a double click or a retried request sends one
-- request and a crash between recording and sending is reconciled instead of repeated.
CREATE TABLE machine_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    endpoint_id INTEGER NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    machine_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL,
    defender_action_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    updated_at BIGINT NOT NULL,
    polled_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX machine_actions_endpoint ON machine_actions (endpoint_id, id);
-- No second action while one is open for the same machine.
CREATE UNIQUE INDEX machine_actions_one_open ON machine_actions (machine_id)
    WHERE status IN ('Requested', 'Pending', 'InProgress');
