-- Pipeline workers (`opsconsole pipeline --worker`): several processes or machines share one run.
-- The run's events are queued in pipeline_run_events and claimed with SELECT ... FOR UPDATE SKIP
-- LOCKED plus a lease; a worker that dies stops renewing its lease and its events become claimable
-- again. The run row records who ingests (also a lease) and who finalized it (exactly once).
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'single';
-- Same work options -> same key: `--worker` without --run-id joins the open run with this key.
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS run_key text;
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS ingest_by text;
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS ingest_lease_expires_at timestamptz;
-- Set once every event of the run is queued; before that no worker may conclude "no work left".
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS queue_ready_at timestamptz;
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS ingest_stats jsonb;
ALTER TABLE processing_runs ADD COLUMN IF NOT EXISTS finalized_by text;
CREATE INDEX IF NOT EXISTS processing_runs_open_key ON processing_runs (run_key) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS pipeline_run_events (
    run_id            text        NOT NULL REFERENCES processing_runs (run_id),
    event_key         text        NOT NULL,
    seq               integer     NOT NULL,          -- ingestion order: claims take the oldest first
    payload           jsonb       NOT NULL,          -- the normalized EventGroup
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'claimed', 'done', 'failed')),
    claimed_by        text,
    lease_expires_at  timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,  -- claims so far; a poison event stops at the cap
    had_failures      boolean     NOT NULL DEFAULT false,
    error             text,
    finished_at       timestamptz,
    PRIMARY KEY (run_id, event_key)
);
CREATE INDEX IF NOT EXISTS pipeline_run_events_claimable ON pipeline_run_events (run_id, seq)
    WHERE status IN ('pending', 'claimed');

-- One row per worker per run: its share of the accounting, written in the same transaction that
-- marks each of its events done, so the finalizer always sums complete figures.
CREATE TABLE IF NOT EXISTS pipeline_run_workers (
    run_id            text        NOT NULL REFERENCES processing_runs (run_id),
    worker            text        NOT NULL,
    host              text        NOT NULL,
    pid               integer     NOT NULL,
    joined_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    left_at           timestamptz,
    stats             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (run_id, worker)
);
