"""Every SQL statement of the pipeline store, in one place."""

INSERT_RUN = """
INSERT INTO processing_runs (run_id, status, window_start, window_end, options, git_sha, environment, host, pid)
VALUES (%(run_id)s, 'running', %(window_start)s, %(window_end)s, %(options)s, %(git_sha)s, %(environment)s, %(host)s, %(pid)s)
ON CONFLICT (run_id) DO NOTHING
"""

HEARTBEAT_RUN = "UPDATE processing_runs SET heartbeat_at = now(), counts = %(counts)s WHERE run_id = %(run_id)s AND status = 'running'"

FINISH_RUN = """
UPDATE processing_runs
   SET status = %(status)s, finished_at = now(), heartbeat_at = now(), counts = %(counts)s,
       summary = %(summary)s, error = %(error)s
 WHERE run_id = %(run_id)s
"""

# A run whose process died (kill -9, machine loss) cannot finalize itself; the next run does it.
ABANDON_STALE_RUNS = """
UPDATE processing_runs
   SET status = 'failed', finished_at = now(),
       error = 'abandoned: no heartbeat since ' || heartbeat_at::text || ' (the process died)'
 WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %(stale_s)s)
RETURNING run_id
"""

RUNNING_ON_HOST = "SELECT run_id, pid FROM processing_runs WHERE status = 'running' AND host = %(host)s"

ABANDON_RUN = """
UPDATE processing_runs
   SET status = 'failed', finished_at = now(), error = %(error)s
 WHERE run_id = %(run_id)s AND status = 'running'
"""

INSERT_REPLAY_RUN = """
INSERT INTO processing_runs (run_id, status, finished_at, git_sha, environment, host, pid, error)
VALUES (%(run_id)s, 'replayed', now(), %(git_sha)s, %(environment)s, %(host)s, %(pid)s,
        'created by replay: the original run left no row')
ON CONFLICT (run_id) DO NOTHING
"""

UPSERT_EXPERIMENT_RUN = """
INSERT INTO experiment_runs (run_id, experiment_name, suite, stage, variant, config, config_hash, status, counts)
VALUES (%(run_id)s, %(name)s, %(suite)s, %(stage)s, %(variant)s, %(config)s, %(config_hash)s, %(status)s, %(counts)s)
ON CONFLICT (run_id, experiment_name) DO UPDATE
   SET status = EXCLUDED.status, counts = EXCLUDED.counts, updated_at = now()
"""

UPSERT_EVENT = """
INSERT INTO processed_events (event_key, event_id, title, slug, payload, first_run_id, last_run_id)
VALUES (%(event_key)s, %(event_id)s, %(title)s, %(slug)s, %(payload)s, %(run_id)s, %(run_id)s)
ON CONFLICT (event_key) DO UPDATE
   SET title = EXCLUDED.title, slug = EXCLUDED.slug, payload = EXCLUDED.payload,
       last_run_id = EXCLUDED.last_run_id, updated_at = now()
"""

UPSERT_MARKET = """
INSERT INTO processed_markets (market_id, event_key, question, condition_id, slug, end_date, volume, liquidity, payload, last_run_id)
VALUES (%(market_id)s, %(event_key)s, %(question)s, %(condition_id)s, %(slug)s, %(end_date)s, %(volume)s, %(liquidity)s, %(payload)s, %(run_id)s)
ON CONFLICT (market_id) DO UPDATE
   SET event_key = EXCLUDED.event_key, question = EXCLUDED.question, condition_id = EXCLUDED.condition_id,
       slug = EXCLUDED.slug, end_date = EXCLUDED.end_date, volume = EXCLUDED.volume, liquidity = EXCLUDED.liquidity,
       payload = EXCLUDED.payload, last_run_id = EXCLUDED.last_run_id, updated_at = now()
"""

UPSERT_CONTRACT = """
INSERT INTO processed_contracts (market_id, outcome_index, outcome, price, token_id, last_run_id)
VALUES (%(market_id)s, %(outcome_index)s, %(outcome)s, %(price)s, %(token_id)s, %(run_id)s)
ON CONFLICT (market_id, outcome_index) DO UPDATE
   SET outcome = EXCLUDED.outcome, price = EXCLUDED.price, token_id = EXCLUDED.token_id,
       last_run_id = EXCLUDED.last_run_id, updated_at = now()
"""

INSERT_ARTIFACT = """
INSERT INTO research_artifacts (event_key, experiment_name, suite, variant, config_hash, config, payload,
                                model, tokens_in, tokens_out, cost_usd, run_id)
VALUES (%(event_key)s, %(name)s, %(suite)s, %(variant)s, %(config_hash)s, %(config)s, %(payload)s,
        %(model)s, %(tokens_in)s, %(tokens_out)s, %(cost_usd)s, %(run_id)s)
ON CONFLICT (event_key, experiment_name, config_hash) DO NOTHING
RETURNING id
"""

INSERT_RESULT = """
INSERT INTO experiment_results (event_key, experiment_name, suite, stage, variant, config_hash, config, probabilities,
                                payload, research_keys, model, tokens_in, tokens_out, cost_usd, run_id)
VALUES (%(event_key)s, %(name)s, %(suite)s, %(stage)s, %(variant)s, %(config_hash)s, %(config)s, %(probabilities)s,
        %(payload)s, %(research_keys)s, %(model)s, %(tokens_in)s, %(tokens_out)s, %(cost_usd)s, %(run_id)s)
ON CONFLICT (event_key, experiment_name, config_hash) DO NOTHING
RETURNING id
"""

FIND_ARTIFACTS = """
SELECT experiment_name, config_hash, payload FROM research_artifacts
 WHERE event_key = %(event_key)s AND experiment_name = ANY(%(names)s)
"""

FIND_RESULTS = """
SELECT experiment_name, config_hash FROM experiment_results
 WHERE event_key = %(event_key)s AND experiment_name = ANY(%(names)s)
"""

INSERT_FAILURE = """
INSERT INTO processing_failures (run_id, market_id, event_key, experiment_name, stage, reason, retriable)
VALUES (%(run_id)s, %(market_id)s, %(event_key)s, %(experiment_name)s, %(stage)s, %(reason)s, %(retriable)s)
"""

RUN_EXISTS = "SELECT run_id, status FROM processing_runs WHERE run_id = %(run_id)s"
