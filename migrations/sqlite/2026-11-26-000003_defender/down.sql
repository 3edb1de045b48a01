DROP INDEX endpoints_fqdn;
DROP TABLE defender_machines;
DROP TABLE sync_runs;
DROP TABLE integration_config;
