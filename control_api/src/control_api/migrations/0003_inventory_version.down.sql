-- Drops what 0003 created (the API then renders GET /servers/ on every request).
DO $$
DECLARE tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['servers', 'gpus', 'deployments', 'chutes'] LOOP
        IF to_regclass(tbl) IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER IF EXISTS inventory_version_rows ON %I', tbl);
            EXECUTE format('DROP TRIGGER IF EXISTS inventory_version_truncate ON %I', tbl);
        END IF;
    END LOOP;
END $$;
DROP FUNCTION IF EXISTS inventory_version_bump();
DROP TABLE IF EXISTS inventory_version;
