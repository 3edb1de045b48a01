-- Every commit that changes a table tells the instances listening on `ea_data_changed`
-- (`src/db/data_version.rs`), so that their pages stop reusing what they read before it without
-- asking the server for its snapshot on each request (issue 23, Q1). One statement-level
-- trigger per table; PostgreSQL delivers a transaction's notifications when it commits and
-- folds identical ones into one. A table added later gets the same trigger in its migration
-- (the test `scaleout.rs` `every_table_tells_the_listeners_of_its_changes` checks).
CREATE FUNCTION ea_data_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ea_data_changed', '');
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables
             WHERE schemaname = current_schema() AND tablename <> '__diesel_schema_migrations'
    LOOP
        EXECUTE format(
            'CREATE TRIGGER ea_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION ea_data_changed()', t);
    END LOOP;
END
$$;
