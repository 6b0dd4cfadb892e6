-- GPU claims (runtime contract §8.4) made structural, so no code path can double-book a GPU:
--
-- 1. A claimed GPU is never handed to another deployment: gpus.deployment_id only moves
--    NULL -> id (claim) and id -> NULL (release). Any UPDATE that would move it from one
--    deployment to another fails (SQLSTATE 23P01, exclusion_violation), whatever the query.
-- 2. Only a verified GPU can be claimed (upstream counted unverified GPUs as capacity).
-- 3. A GPU and the deployment holding it are on the same server: a composite foreign key
--    (deployment_id, server_id) -> deployments. The existing single-column key keeps
--    ON DELETE SET NULL; this one is checked after it (MATCH SIMPLE: a NULL passes).
--
-- Claims themselves are one conditional UPDATE (control_api/db/claims.py); READ COMMITTED
-- re-evaluates `deployment_id IS NULL` on the newest row version after a concurrent claimer
-- commits, so of two racing claimers exactly one gets a GPU; the guard below holds even for a
-- query that forgets that condition.
SET LOCAL TimeZone = 'UTC';

CREATE OR REPLACE FUNCTION gpus_claim_guard() RETURNS trigger AS $$
BEGIN
    IF NEW.deployment_id IS NOT NULL
       AND NEW.deployment_id IS DISTINCT FROM OLD.deployment_id THEN
        IF OLD.deployment_id IS NOT NULL THEN
            RAISE EXCEPTION 'GPU % is claimed by deployment %', OLD.gpu_id, OLD.deployment_id
                USING ERRCODE = 'exclusion_violation';
        END IF;
        IF NOT NEW.verified THEN
            RAISE EXCEPTION 'GPU % is not verified and cannot be claimed', NEW.gpu_id
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS gpus_claim_guard ON gpus;
CREATE TRIGGER gpus_claim_guard BEFORE UPDATE OF deployment_id ON gpus
    FOR EACH ROW EXECUTE FUNCTION gpus_claim_guard();

-- An INSERT of an already-claimed GPU goes through the same rules.
DROP TRIGGER IF EXISTS gpus_claim_guard_insert ON gpus;
CREATE OR REPLACE FUNCTION gpus_claim_guard_insert() RETURNS trigger AS $$
BEGIN
    IF NEW.deployment_id IS NOT NULL AND NOT NEW.verified THEN
        RAISE EXCEPTION 'GPU % is not verified and cannot be claimed', NEW.gpu_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER gpus_claim_guard_insert BEFORE INSERT ON gpus
    FOR EACH ROW EXECUTE FUNCTION gpus_claim_guard_insert();

-- Rows that break rule 3 (possible under upstream) lose their claim before the key is added.
UPDATE gpus g SET deployment_id = NULL
FROM deployments d
WHERE d.deployment_id = g.deployment_id AND d.server_id <> g.server_id;

ALTER TABLE gpus DROP CONSTRAINT IF EXISTS gpus_deployment_same_server_fkey;
ALTER TABLE deployments DROP CONSTRAINT IF EXISTS deployments_deployment_server_key;
ALTER TABLE deployments ADD CONSTRAINT deployments_deployment_server_key
    UNIQUE (deployment_id, server_id);
ALTER TABLE gpus ADD CONSTRAINT gpus_deployment_same_server_fkey
    FOREIGN KEY (deployment_id, server_id) REFERENCES deployments (deployment_id, server_id)
    ON UPDATE RESTRICT ON DELETE NO ACTION;
