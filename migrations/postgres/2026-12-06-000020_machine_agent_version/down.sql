ALTER TABLE defender_machines DROP COLUMN agent_version;
