-- The dashboard counts the endpoints first seen on each of the last 14 days: a range count on
-- this index instead of reading every endpoint's first_seen.
CREATE INDEX endpoints_first_seen ON endpoints (first_seen);
