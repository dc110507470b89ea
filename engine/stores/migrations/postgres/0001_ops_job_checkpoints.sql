-- Checkpoints mirrored from runtime/*.state.json so a job's progress survives the loss of the
-- machine. Same fields as the runbook's checkpoint, plus what an exact resume needs.
CREATE TABLE IF NOT EXISTS ops_job_checkpoints (
    job             text        NOT NULL,
    step            text        NOT NULL,
    batch_idx       integer     NOT NULL DEFAULT 0,
    pairs_done      bigint      NOT NULL DEFAULT 0,
    last_mutations  integer     NOT NULL DEFAULT 0,
    cursor          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    fingerprint     text        NOT NULL DEFAULT '',
    pairs_total     bigint,
    status          text        NOT NULL DEFAULT 'running',
    host            text        NOT NULL DEFAULT '',
    pid             integer,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, step)
);
