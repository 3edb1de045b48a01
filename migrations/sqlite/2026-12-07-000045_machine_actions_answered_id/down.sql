ALTER TABLE machine_actions DROP COLUMN answered_action_id;
