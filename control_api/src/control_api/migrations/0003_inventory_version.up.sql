-- Inventory version: one counter that every committed change to servers, gpus, deployments or
-- chutes moves, so the API can serve GET /servers/ from rendered bytes while it is unchanged
-- (any process may write: the version lives here, not in one API process).
--
-- The bump is a DEFERRABLE INITIALLY DEFERRED constraint trigger: it runs at COMMIT, once per
-- transaction (a transaction-local setting remembers it), so the counter row is locked only
-- for the end of the commit. A bump at statement time would hold that lock until commit and
-- serialize (or deadlock) concurrent writers of different tables. Same transaction as the
-- data: a reader sees the new version exactly when it sees the new rows. Writers at
-- REPEATABLE READ or above may see a serialization failure on the counter row at commit and
-- should retry (this project's writers use READ COMMITTED). TRUNCATE bumps at once.
CREATE TABLE IF NOT EXISTS inventory_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch uuid NOT NULL DEFAULT gen_random_uuid(),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO inventory_version DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION inventory_version_bump() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('control_api.inventory_bumped', true), '') = '' THEN
        PERFORM set_config('control_api.inventory_bumped', 'on', true);
        UPDATE inventory_version SET version = version + 1;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DO $$
DECLARE tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['servers', 'gpus', 'deployments', 'chutes'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS inventory_version_rows ON %I', tbl);
        EXECUTE format('DROP TRIGGER IF EXISTS inventory_version_truncate ON %I', tbl);
        EXECUTE format(
            'CREATE CONSTRAINT TRIGGER inventory_version_rows'
            ' AFTER INSERT OR UPDATE OR DELETE ON %I DEFERRABLE INITIALLY DEFERRED'
            ' FOR EACH ROW EXECUTE FUNCTION inventory_version_bump()', tbl);
        EXECUTE format(
            'CREATE TRIGGER inventory_version_truncate AFTER TRUNCATE ON %I'
            ' FOR EACH STATEMENT EXECUTE FUNCTION inventory_version_bump()', tbl);
    END LOOP;
END $$;
