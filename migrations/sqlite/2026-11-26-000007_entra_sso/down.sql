DROP TABLE user_identities;
DROP TABLE sso_config;
