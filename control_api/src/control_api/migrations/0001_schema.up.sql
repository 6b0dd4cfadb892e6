-- Base schema with upstream's table and column names (runtime contract §8).
-- Safe on an empty database and on one created by upstream rayonlabs/chutes-miner:
-- every statement is conditional, and upstream shapes are converted in place.
SET LOCAL TimeZone = 'UTC';

CREATE TABLE IF NOT EXISTS chutes (
    chute_id text PRIMARY KEY,
    validator text NOT NULL,
    name text,
    image text NOT NULL,
    code text NOT NULL,
    filename text NOT NULL,
    ref_str text NOT NULL,
    version text NOT NULL,
    supported_gpus text[] NOT NULL DEFAULT '{}',
    gpu_count integer NOT NULL,
    chutes_version text,
    ban_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS servers (
    server_id text PRIMARY KEY,
    validator text NOT NULL,
    name text NOT NULL,
    ip_address text,
    verification_port integer,
    status text NOT NULL DEFAULT 'Bootstrapping',
    created_at timestamptz NOT NULL DEFAULT now(),
    labels jsonb NOT NULL DEFAULT '{}',
    seed bigint,
    gpu_count integer NOT NULL,
    cpu_per_gpu integer NOT NULL DEFAULT 1,
    memory_per_gpu integer NOT NULL DEFAULT 1,
    hourly_cost double precision NOT NULL,
    locked boolean NOT NULL DEFAULT false,
    CONSTRAINT servers_name_key UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS deployments (
    deployment_id text PRIMARY KEY,
    instance_id text,
    validator text NOT NULL,
    host text,
    port integer,
    chute_id text NOT NULL,
    server_id text NOT NULL,
    version text NOT NULL,
    active boolean NOT NULL DEFAULT false,
    stub boolean NOT NULL DEFAULT false,
    verified_at timestamptz,
    job_id text,
    config_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gpus (
    gpu_id text PRIMARY KEY,
    validator text,
    server_id text NOT NULL REFERENCES servers (server_id) ON DELETE CASCADE,
    deployment_id text REFERENCES deployments (deployment_id) ON DELETE SET NULL,
    device_info jsonb NOT NULL,
    model_short_ref text NOT NULL,
    verified boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS deployment_audit (
    deployment_id text PRIMARY KEY,
    validator text NOT NULL,
    instance_id text,
    chute_id text NOT NULL,
    version text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz,
    deleted_at timestamptz
);

-- Columns this project adds.
ALTER TABLE deployments ADD COLUMN IF NOT EXISTS activated_at timestamptz;
ALTER TABLE deployments ADD COLUMN IF NOT EXISTS terminating_at timestamptz;

-- Upstream stored naive UTC timestamps in places: make every timestamp timestamptz (UTC).
DO $$
DECLARE col record;
BEGIN
    FOR col IN
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema()
          AND table_name IN ('chutes', 'servers', 'deployments', 'deployment_audit')
          AND data_type = 'timestamp without time zone'
    LOOP
        EXECUTE format(
            'ALTER TABLE %I ALTER COLUMN %I TYPE timestamptz USING %I AT TIME ZONE ''UTC''',
            col.table_name, col.column_name, col.column_name);
    END LOOP;
END $$;

-- Upstream may keep supported_gpus as jsonb: convert to text[].
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'chutes'
                 AND column_name = 'supported_gpus' AND data_type = 'jsonb') THEN
        ALTER TABLE chutes RENAME COLUMN supported_gpus TO supported_gpus_jsonb;
        ALTER TABLE chutes ADD COLUMN supported_gpus text[] NOT NULL DEFAULT '{}';
        UPDATE chutes SET supported_gpus = ARRAY(
            SELECT jsonb_array_elements_text(coalesce(supported_gpus_jsonb, '[]'::jsonb)));
        ALTER TABLE chutes DROP COLUMN supported_gpus_jsonb;
    END IF;
END $$;

-- Database defaults instead of client-side ones (upstream set them only in SQLAlchemy).
UPDATE servers SET cpu_per_gpu = 1 WHERE cpu_per_gpu IS NULL;
UPDATE servers SET memory_per_gpu = 1 WHERE memory_per_gpu IS NULL;
UPDATE servers SET locked = false WHERE locked IS NULL;
UPDATE servers SET status = 'Bootstrapping' WHERE status IS NULL;
UPDATE servers SET created_at = now() WHERE created_at IS NULL;
UPDATE servers SET labels = '{}' WHERE labels IS NULL;
UPDATE deployments SET active = false WHERE active IS NULL;
UPDATE deployments SET stub = false WHERE stub IS NULL;
UPDATE deployments SET created_at = now() WHERE created_at IS NULL;
UPDATE gpus SET verified = false WHERE verified IS NULL;
UPDATE chutes SET created_at = now() WHERE created_at IS NULL;
UPDATE chutes SET updated_at = now() WHERE updated_at IS NULL;
UPDATE deployment_audit SET created_at = now() WHERE created_at IS NULL;

ALTER TABLE servers
    ALTER COLUMN cpu_per_gpu SET DEFAULT 1, ALTER COLUMN cpu_per_gpu SET NOT NULL,
    ALTER COLUMN memory_per_gpu SET DEFAULT 1, ALTER COLUMN memory_per_gpu SET NOT NULL,
    ALTER COLUMN locked SET DEFAULT false, ALTER COLUMN locked SET NOT NULL,
    ALTER COLUMN status SET DEFAULT 'Bootstrapping', ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(), ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN labels SET DEFAULT '{}', ALTER COLUMN labels SET NOT NULL;
ALTER TABLE deployments
    ALTER COLUMN active SET DEFAULT false, ALTER COLUMN active SET NOT NULL,
    ALTER COLUMN stub SET DEFAULT false, ALTER COLUMN stub SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(), ALTER COLUMN created_at SET NOT NULL;
ALTER TABLE gpus ALTER COLUMN verified SET DEFAULT false, ALTER COLUMN verified SET NOT NULL;
ALTER TABLE chutes
    ALTER COLUMN created_at SET DEFAULT now(), ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now(), ALTER COLUMN updated_at SET NOT NULL;
ALTER TABLE deployment_audit ALTER COLUMN created_at SET DEFAULT now();

-- deployments -> chutes/servers: RESTRICT (upstream CASCADE), so rows go only via undeploy.
DO $$
DECLARE con record;
BEGIN
    FOR con IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'deployments'::regclass AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE deployments DROP CONSTRAINT %I', con.conname);
    END LOOP;
END $$;
ALTER TABLE deployments
    ADD CONSTRAINT deployments_chute_id_fkey FOREIGN KEY (chute_id)
        REFERENCES chutes (chute_id) ON DELETE RESTRICT,
    ADD CONSTRAINT deployments_server_id_fkey FOREIGN KEY (server_id)
        REFERENCES servers (server_id) ON DELETE RESTRICT;

CREATE UNIQUE INDEX IF NOT EXISTS deployments_instance_id_key
    ON deployments (instance_id) WHERE instance_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS deployments_config_id_key
    ON deployments (config_id) WHERE config_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS gpus_server_id_idx ON gpus (server_id);
CREATE INDEX IF NOT EXISTS gpus_deployment_id_idx ON gpus (deployment_id);
CREATE INDEX IF NOT EXISTS deployments_server_id_idx ON deployments (server_id);
CREATE INDEX IF NOT EXISTS deployment_audit_verified_deleted_idx
    ON deployment_audit (verified_at, deleted_at);
