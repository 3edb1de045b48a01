-- Failed sign-ins per key (user name and address, or user name alone), in the database so that
-- a lock-out holds on every instance behind a load balancer, not only on the one that counted.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_at BIGINT NOT NULL
);
CREATE INDEX login_failures_last_at ON login_failures (last_at);
