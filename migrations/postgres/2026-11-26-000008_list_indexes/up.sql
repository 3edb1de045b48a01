-- The Endpoints list's common views are served by an index in their own order, so a page
-- reads its rows and stops instead of sorting every match: a risk level, a profile or an OS
-- (the dashboard's links) by last seen, and a risk level by host name. Sorting by risk keeps
-- its own index (risk_level, id).
DROP INDEX endpoints_profile;
DROP INDEX endpoints_os;
CREATE INDEX endpoints_risk_last_seen ON endpoints (risk_level, last_seen, id);
CREATE INDEX endpoints_risk_hostname ON endpoints (risk_level, hostname, id);
CREATE INDEX endpoints_profile ON endpoints (profile, last_seen, id);
CREATE INDEX endpoints_os ON endpoints (os_name, last_seen, id);
