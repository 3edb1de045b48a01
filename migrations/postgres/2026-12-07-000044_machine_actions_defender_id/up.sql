-- Whether a Defender action is already one of our records' is asked before one is adopted
-- (crash recovery, Defender's answer to a repeat).
CREATE INDEX machine_actions_defender_id ON machine_actions (defender_action_id);
