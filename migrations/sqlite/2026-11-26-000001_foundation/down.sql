DROP TABLE endpoint_history;
DROP TABLE endpoint_sources;
DROP TABLE endpoint_ips;
DROP TABLE endpoints;
DROP TABLE audit_log;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
