-- Sign-in throttling with growing waits: each key (a user name, or a client address) carries
-- the moment (UTC Unix milliseconds) before which its next attempt is refused, decided when an
-- attempt is counted: a wait of one second must last a second, not until the next second begins.
ALTER TABLE login_failures ADD COLUMN wait_until_ms BIGINT NOT NULL DEFAULT 0;

-- The signed-in user of a session, so that an admin's password reset can end that user's
-- sessions (NULL: nobody signed in). Sessions from before cannot say whose they are: they end
-- (everyone signs in again once, after the upgrade).
DELETE FROM sessions;
ALTER TABLE sessions ADD COLUMN user_id BIGINT;
CREATE INDEX sessions_user_id ON sessions (user_id);

-- The person an API token acts for: the token never does more than that person's current role,
-- and stops working when the person is disabled. NULL for tokens made on the command line.
ALTER TABLE api_tokens ADD COLUMN creator_id BIGINT REFERENCES users (id);
UPDATE api_tokens SET creator_id = (SELECT id FROM users WHERE users.username = api_tokens.created_by);
