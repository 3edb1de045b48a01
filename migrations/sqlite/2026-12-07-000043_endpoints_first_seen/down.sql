DROP INDEX endpoints_first_seen;
