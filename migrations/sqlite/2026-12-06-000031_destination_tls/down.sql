ALTER TABLE destinations DROP COLUMN format;
ALTER TABLE destinations DROP COLUMN ca_pem;
