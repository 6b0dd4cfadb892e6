-- Drops what 0004 created (claims then rely on the conditional UPDATE alone).
ALTER TABLE gpus DROP CONSTRAINT IF EXISTS gpus_deployment_same_server_fkey;
ALTER TABLE deployments DROP CONSTRAINT IF EXISTS deployments_deployment_server_key;
DROP TRIGGER IF EXISTS gpus_claim_guard ON gpus;
DROP TRIGGER IF EXISTS gpus_claim_guard_insert ON gpus;
DROP FUNCTION IF EXISTS gpus_claim_guard();
DROP FUNCTION IF EXISTS gpus_claim_guard_insert();
