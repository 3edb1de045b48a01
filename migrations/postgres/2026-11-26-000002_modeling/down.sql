DROP TABLE app_settings;
DROP TABLE jobs;
DROP TABLE events;
DROP TABLE risk_factors;
ALTER TABLE endpoints DROP COLUMN profile_reason;
ALTER TABLE endpoints DROP COLUMN other_profiles;
DROP TABLE profile_assignments;
DROP TABLE profiles;
