-- Step D's remote checkpoint mirrors the whole local document (runbook fields, cursor, fingerprint,
-- batch size), so a resume can start from Postgres alone when the local file is lost.
ALTER TABLE ops_job_checkpoints ADD COLUMN IF NOT EXISTS batch_size integer;
ALTER TABLE ops_job_checkpoints ADD COLUMN IF NOT EXISTS state jsonb NOT NULL DEFAULT '{}'::jsonb;
