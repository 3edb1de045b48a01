-- The Defender client (sensor) version a machine reports (`agentVersion` on the Machine entity),
-- kept because Microsoft documents some actions on macOS and Linux only from client 101.98.84
-- (https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts). Empty until the
-- next sync fills it: an empty version means "not reported", and Defender decides.
ALTER TABLE defender_machines ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
