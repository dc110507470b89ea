-- Forecast pipeline (runbook tables). Results are keyed by a run-independent natural key
-- (event_key, experiment_name, config_hash): a rerun finds and reuses them, and two runners racing
-- on one event hit the unique constraint instead of writing a second row.
CREATE TABLE IF NOT EXISTS processing_runs (
    run_id          text        PRIMARY KEY,
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'completed_with_errors', 'stopped', 'failed', 'replayed')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    window_start    timestamptz,
    window_end      timestamptz,
    options         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    counts          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    summary         jsonb,
    git_sha         text        NOT NULL DEFAULT 'unknown',
    environment     text        NOT NULL DEFAULT 'development',
    host            text        NOT NULL DEFAULT '',
    pid             integer,
    error           text
);

CREATE TABLE IF NOT EXISTS processed_events (
    event_key       text        PRIMARY KEY,
    event_id        text,
    title           text        NOT NULL DEFAULT '',
    slug            text,
    payload         jsonb       NOT NULL,
    first_run_id    text        NOT NULL,
    last_run_id     text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS processed_markets (
    market_id       text        PRIMARY KEY,
    event_key       text        NOT NULL REFERENCES processed_events (event_key),
    question        text        NOT NULL,
    condition_id    text,
    slug            text,
    end_date        timestamptz,
    volume          double precision,
    liquidity       double precision,
    payload         jsonb       NOT NULL,
    last_run_id     text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS processed_markets_event_key ON processed_markets (event_key);

CREATE TABLE IF NOT EXISTS processed_contracts (
    market_id       text        NOT NULL REFERENCES processed_markets (market_id),
    outcome_index   integer     NOT NULL,
    outcome         text        NOT NULL,
    price           double precision,
    token_id        text,
    last_run_id     text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_id, outcome_index)
);

-- One row per (run, experiment): what the run selected, with which config, and how it went.
CREATE TABLE IF NOT EXISTS experiment_runs (
    run_id          text        NOT NULL REFERENCES processing_runs (run_id),
    experiment_name text        NOT NULL,
    suite           text        NOT NULL,
    stage           text        NOT NULL CHECK (stage IN ('research', 'forecast')),
    variant         text        NOT NULL,
    config          jsonb       NOT NULL,
    config_hash     text        NOT NULL,
    status          text        NOT NULL DEFAULT 'running',
    counts          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, experiment_name)
);

CREATE TABLE IF NOT EXISTS research_artifacts (
    id              bigserial   PRIMARY KEY,
    event_key       text        NOT NULL REFERENCES processed_events (event_key),
    experiment_name text        NOT NULL,
    suite           text        NOT NULL,
    variant         text        NOT NULL,
    config_hash     text        NOT NULL,
    config          jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    model           text,
    tokens_in       integer     NOT NULL DEFAULT 0,
    tokens_out      integer     NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    run_id          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_key, experiment_name, config_hash)
);

CREATE TABLE IF NOT EXISTS experiment_results (
    id              bigserial   PRIMARY KEY,
    event_key       text        NOT NULL REFERENCES processed_events (event_key),
    experiment_name text        NOT NULL,
    suite           text        NOT NULL,
    stage           text        NOT NULL,
    variant         text        NOT NULL,
    config_hash     text        NOT NULL,
    config          jsonb       NOT NULL,
    probabilities   jsonb       NOT NULL,  -- {market_id: {outcome: p}}, each market sums to 1
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    research_keys   jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- [[experiment_name, config_hash], ...]
    model           text,
    tokens_in       integer     NOT NULL DEFAULT 0,
    tokens_out      integer     NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    run_id          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_key, experiment_name, config_hash)
);

CREATE TABLE IF NOT EXISTS processing_failures (
    id              bigserial   PRIMARY KEY,
    run_id          text        NOT NULL REFERENCES processing_runs (run_id),
    market_id       text,       -- NULL when the market came without an id (never a made-up one)
    event_key       text,
    experiment_name text,
    stage           text        NOT NULL,
    reason          text        NOT NULL,
    retriable       boolean     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS processing_failures_run ON processing_failures (run_id);
