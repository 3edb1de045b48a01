DROP INDEX endpoints_risk_last_seen;
DROP INDEX endpoints_risk_hostname;
DROP INDEX endpoints_profile;
DROP INDEX endpoints_os;
CREATE INDEX endpoints_profile ON endpoints (profile, id);
CREATE INDEX endpoints_os ON endpoints (os_name, id);
