DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE g.tgname = 'ea_data_changed'
    LOOP
        EXECUTE format('DROP TRIGGER ea_data_changed ON %I', t);
    END LOOP;
END
$$;
DROP FUNCTION ea_data_changed();
