-- Drops what 0005 created and puts back 0003's bump, which keeps no change log (the
-- scheduler then re-reads its whole snapshot after every change).
CREATE OR REPLACE FUNCTION inventory_version_bump() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('control_api.inventory_bumped', true), '') = '' THEN
        PERFORM set_config('control_api.inventory_bumped', 'on', true);
        UPDATE inventory_version SET version = version + 1;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TABLE IF EXISTS inventory_changes;
