-- Forecast scoring (`opsconsole score`): one row per stored forecast of one resolved market.
-- The natural key is the result's own key plus the market, so a rerun upserts the same rows; the
-- upsert only touches a row when what it was scored from (probability, payouts) changed, so an
-- unchanged rerun writes nothing and a corrected resolution updates exactly its market's rows.
-- Numbered 0020 (not 0012) to leave room for pipeline migrations being written in parallel.
CREATE TABLE IF NOT EXISTS forecast_scores (
    event_key         text             NOT NULL,
    experiment_name   text             NOT NULL,
    config_hash       text             NOT NULL,
    market_id         text             NOT NULL,
    result_id         bigint           NOT NULL,
    suite             text             NOT NULL,
    variant           text             NOT NULL,
    status            text             NOT NULL CHECK (status IN ('scored', 'void')),
    probability       double precision NOT NULL,  -- stored p of outcome index 0 ("Yes")
    outcome           smallint,                   -- y: 1 resolved to index 0, 0 to index 1; NULL when void
    payout_yes        double precision NOT NULL,
    payout_no         double precision NOT NULL,
    brier             double precision,           -- NULL when void
    log_loss          double precision,           -- NULL when void
    forecast_at       timestamptz      NOT NULL,  -- experiment_results.created_at
    closed_at         timestamptz,                -- Gamma closedTime (else endDate)
    tokens            double precision NOT NULL DEFAULT 0,  -- the result's tokens, shared across its markets
    cost_usd          double precision NOT NULL DEFAULT 0,  -- likewise
    resolution_source text             NOT NULL,
    scored_at         timestamptz      NOT NULL DEFAULT now(),
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (event_key, experiment_name, config_hash, market_id)
);
CREATE INDEX IF NOT EXISTS forecast_scores_market ON forecast_scores (market_id);
