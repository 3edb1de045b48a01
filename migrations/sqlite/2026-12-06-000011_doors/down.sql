ALTER TABLE api_tokens DROP COLUMN creator_id;
DROP INDEX sessions_user_id;
ALTER TABLE sessions DROP COLUMN user_id;
ALTER TABLE login_failures DROP COLUMN wait_until_ms;
