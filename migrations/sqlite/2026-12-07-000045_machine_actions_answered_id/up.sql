-- The id Defender answered a request with when its answer could not tell whose action that was
-- (neither scope nor comment): the follower takes that action from Defender's listing when
-- nothing there says it is someone else's.
ALTER TABLE machine_actions ADD COLUMN answered_action_id TEXT NOT NULL DEFAULT '';
