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

# Worker runs (mode 'workers') are shared: the creating process dying is normal there; their
# staleness is judged by heartbeat only (every worker renews it).
RUNNING_ON_HOST = "SELECT run_id, pid FROM processing_runs WHERE status = 'running' AND host = %(host)s AND mode = 'single'"

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


# --- workers (`pipeline --worker`): a shared run, a queue of events, claims with leases -----------
# Serializes "find the open run with these options, else create it" across workers.
LOCK_RUN_KEY = "SELECT pg_advisory_xact_lock(hashtextextended(%(run_key)s, 0))"

FIND_OPEN_WORKER_RUN = """
SELECT run_id, window_start, window_end FROM processing_runs
 WHERE run_key = %(run_key)s AND status = 'running' AND mode = 'workers'
 ORDER BY started_at DESC LIMIT 1
"""

WORKER_RUN = """
SELECT run_id, status, mode, run_key, window_start, window_end, finalized_by FROM processing_runs
 WHERE run_id = %(run_id)s
"""

INSERT_WORKER_RUN = """
INSERT INTO processing_runs (run_id, status, window_start, window_end, options, git_sha, environment, host, pid,
                             mode, run_key, ingest_by, ingest_lease_expires_at)
VALUES (%(run_id)s, 'running', %(window_start)s, %(window_end)s, %(options)s, %(git_sha)s, %(environment)s,
        %(host)s, %(pid)s, 'workers', %(run_key)s, %(worker)s, now() + make_interval(secs => %(lease_s)s))
"""

UPSERT_WORKER = """
INSERT INTO pipeline_run_workers (run_id, worker, host, pid) VALUES (%(run_id)s, %(worker)s, %(host)s, %(pid)s)
ON CONFLICT (run_id, worker) DO UPDATE SET last_seen_at = now(), left_at = NULL
"""

RUN_QUEUE_STATE = """
SELECT status, queue_ready_at IS NOT NULL AS ready, finalized_by FROM processing_runs WHERE run_id = %(run_id)s
"""

# Ingestion is leased like an event: the creator holds it; if it dies before the queue is complete,
# the lease runs out and a waiting worker ingests instead (enqueueing is idempotent).
CLAIM_INGEST = """
UPDATE processing_runs
   SET ingest_by = %(worker)s, ingest_lease_expires_at = now() + make_interval(secs => %(lease_s)s)
 WHERE run_id = %(run_id)s AND status = 'running' AND queue_ready_at IS NULL
   AND (ingest_by = %(worker)s OR ingest_lease_expires_at IS NULL OR ingest_lease_expires_at < now())
RETURNING run_id
"""

RELEASE_INGEST = """
UPDATE processing_runs SET ingest_lease_expires_at = now()
 WHERE run_id = %(run_id)s AND ingest_by = %(worker)s AND queue_ready_at IS NULL
"""

ENQUEUE_EVENT = """
INSERT INTO pipeline_run_events (run_id, event_key, seq, payload) VALUES (%(run_id)s, %(event_key)s, %(seq)s, %(payload)s)
ON CONFLICT (run_id, event_key) DO NOTHING
"""

QUEUE_READY = """
UPDATE processing_runs SET queue_ready_at = now(), ingest_stats = %(ingest_stats)s
 WHERE run_id = %(run_id)s AND queue_ready_at IS NULL
"""

# A claim whose lease ran out this many times killed its workers: stop retrying it (poison event).
FAIL_POISON_EVENTS = """
UPDATE pipeline_run_events
   SET status = 'failed', finished_at = now(), had_failures = true,
       error = 'abandoned: ' || attempts || ' worker(s) died or stalled while processing it (last: ' || coalesce(claimed_by, '?') || ')'
 WHERE run_id = %(run_id)s AND status = 'claimed' AND lease_expires_at < now() AND attempts >= %(max_attempts)s
RETURNING event_key, payload, error
"""

# The heart of the queue: oldest claimable events, skipping rows another worker is claiming right now.
CLAIM_EVENTS = """
WITH picked AS (
    SELECT event_key, claimed_by AS previous
      FROM pipeline_run_events
     WHERE run_id = %(run_id)s
       AND (status = 'pending' OR (status = 'claimed' AND lease_expires_at < now()))
     ORDER BY seq
     LIMIT %(n)s
       FOR UPDATE SKIP LOCKED
)
UPDATE pipeline_run_events e
   SET status = 'claimed', claimed_by = %(worker)s,
       lease_expires_at = now() + make_interval(secs => %(lease_s)s), attempts = e.attempts + 1
  FROM picked
 WHERE e.run_id = %(run_id)s AND e.event_key = picked.event_key
RETURNING e.event_key, e.seq, e.payload, e.attempts, picked.previous
"""

RENEW_LEASES = """
UPDATE pipeline_run_events SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
 WHERE run_id = %(run_id)s AND claimed_by = %(worker)s AND status = 'claimed' AND event_key = ANY(%(keys)s)
RETURNING event_key
"""

RENEW_INGEST = """
UPDATE processing_runs SET ingest_lease_expires_at = now() + make_interval(secs => %(lease_s)s)
 WHERE run_id = %(run_id)s AND ingest_by = %(worker)s AND queue_ready_at IS NULL
"""

WORKER_SEEN = "UPDATE pipeline_run_workers SET last_seen_at = now() WHERE run_id = %(run_id)s AND worker = %(worker)s"

RUN_HEARTBEAT = "UPDATE processing_runs SET heartbeat_at = now() WHERE run_id = %(run_id)s AND status = 'running'"

# Whoever finishes an event first marks it done; a worker that lost its lease and finishes later
# changes nothing (its results hit the unique keys). Returns who held the claim.
COMPLETE_EVENT = """
UPDATE pipeline_run_events
   SET status = 'done', finished_at = now(), had_failures = %(had_failures)s, lease_expires_at = NULL
 WHERE run_id = %(run_id)s AND event_key = %(event_key)s AND status = 'claimed'
RETURNING claimed_by
"""

SAVE_WORKER_STATS = """
UPDATE pipeline_run_workers SET stats = %(stats)s, last_seen_at = now()
 WHERE run_id = %(run_id)s AND worker = %(worker)s
"""

WORKER_LEFT = """
UPDATE pipeline_run_workers SET stats = %(stats)s, last_seen_at = now(), left_at = now()
 WHERE run_id = %(run_id)s AND worker = %(worker)s
"""

# Give back claims on the way out (stop after abort, failure): not an attempt that counts as poison.
RELEASE_CLAIMS = """
UPDATE pipeline_run_events
   SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL, attempts = greatest(attempts - 1, 0)
 WHERE run_id = %(run_id)s AND claimed_by = %(worker)s AND status = 'claimed' AND event_key = ANY(%(keys)s)
"""

QUEUE_COUNTS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'claimed') AS claimed,
       count(*) FILTER (WHERE status = 'done') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE had_failures) AS with_failures
  FROM pipeline_run_events WHERE run_id = %(run_id)s
"""

LOCK_RUN_ROW = "SELECT status, ingest_stats, queue_ready_at IS NOT NULL AS ready FROM processing_runs WHERE run_id = %(run_id)s FOR UPDATE"

WORKER_STATS = "SELECT worker, stats FROM pipeline_run_workers WHERE run_id = %(run_id)s ORDER BY joined_at, worker"

FINALIZE_WORKER_RUN = """
UPDATE processing_runs
   SET status = %(status)s, finished_at = now(), heartbeat_at = now(), counts = %(counts)s,
       summary = %(summary)s, error = %(error)s, finalized_by = %(worker)s
 WHERE run_id = %(run_id)s AND status = 'running'
RETURNING run_id
"""
