-- Deployment audit trail (upstream migration 20241228093101_instance_trail, timestamptz).
-- Upstream's own triggers on deployments are replaced so no event is recorded twice.
DO $$
DECLARE trg record;
BEGIN
    FOR trg IN
        SELECT tgname FROM pg_trigger
        WHERE tgrelid = 'deployments'::regclass AND NOT tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON deployments', trg.tgname);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION deployment_audit_on_insert() RETURNS trigger AS $$
BEGIN
    INSERT INTO deployment_audit (deployment_id, validator, chute_id, version, created_at)
    VALUES (NEW.deployment_id, NEW.validator, NEW.chute_id, NEW.version, now())
    ON CONFLICT (deployment_id) DO NOTHING;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION deployment_audit_on_verify() RETURNS trigger AS $$
BEGIN
    IF OLD.verified_at IS NULL AND NEW.verified_at IS NOT NULL THEN
        UPDATE deployment_audit
        SET verified_at = NEW.verified_at, instance_id = NEW.instance_id
        WHERE deployment_id = NEW.deployment_id AND verified_at IS NULL;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION deployment_audit_on_delete() RETURNS trigger AS $$
BEGIN
    UPDATE deployment_audit SET deleted_at = now()
    WHERE deployment_id = OLD.deployment_id AND deleted_at IS NULL;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deployment_audit_insert AFTER INSERT ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployment_audit_on_insert();
CREATE TRIGGER deployment_audit_verify AFTER UPDATE OF verified_at ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployment_audit_on_verify();
CREATE TRIGGER deployment_audit_delete BEFORE DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployment_audit_on_delete();
