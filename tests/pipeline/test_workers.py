"""`opsconsole pipeline --worker`: several workers share one run through one Postgres.

Real embedded PostgreSQL (`pg_url`), real OpenAI SDK against the loopback server, which counts every
call. The queue tests drive engine/pipeline/workqueue.py directly (leases are expired by SQL, so
nothing waits on a clock); the worker tests run three workers as tasks in one process and as three
real subprocesses, one of which is SIGKILLed while it holds an event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

import anyio
import psycopg
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.errors import BadInput
from engine.pipeline.options import PipelineOptions
from engine.pipeline.worker import PipelineWorkerJob
from engine.pipeline.workqueue import MAX_ATTEMPTS, WorkQueue, run_key
from engine.runner import run_job
from engine.stores.postgres import Postgres
from tests.conftest import OPSCONSOLE, subprocess_env
from tests.pipeline.conftest import FAST, OPENAI_KEY, count, opts, rows
from tests.pipeline.fakes import gamma_market

pytestmark = pytest.mark.anyio
N_EVENTS = 8
OPENAI_FAST = [o for o in FAST if o.startswith("openai")]


def execute(pg_url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute(statement, params)


def many_events(n: int = N_EVENTS) -> list[dict[str, Any]]:
    return [gamma_market(str(500 + i), f"Question {i}?", (f"EV{i}", f"Event {i}"), yes=0.3 + i / 100) for i in range(n)]


def meet_first(app: Any, parties: int, seconds: float = 60) -> None:
    """The first `parties` research calls wait for each other: with one event in flight per worker,
    that proves `parties` workers held different events at the same time."""
    original = app.mode_for
    arrived = {"n": 0}
    all_here = threading.Event()
    lock = threading.Lock()

    def mode_for(kind: str, markets: list[dict[str, Any]]) -> str:
        if kind == "research":
            with lock:
                arrived["n"] += 1
                mine = arrived["n"]
                if mine == parties:
                    all_here.set()
            if mine <= parties:
                all_here.wait(seconds)
        return original(kind, markets)

    app.mode_for = mode_for


def worker_opts(**kw: Any) -> PipelineOptions:
    kw.setdefault("suites", ["baseline", "openai"])
    kw.setdefault("experiment_overrides", list(OPENAI_FAST))
    kw.setdefault("event_batch_size", 1)
    kw.setdefault("worker", True)
    return opts(**kw)


async def run_worker(settings: Any, options: PipelineOptions) -> PipelineWorkerJob:
    bus = EventBus()
    job = PipelineWorkerJob(options)
    control = Control(job.name, bus, job.live_settings())
    outcome = await run_job(job, settings, bus, control, handle_signals=False)
    assert outcome.exit_code == 0, outcome.error
    return job


def assert_complete_run(pg_url: str, n_events: int) -> tuple[str, str]:
    (run_id, status, finalized_by, mode), = rows(pg_url, "SELECT run_id, status, finalized_by, mode FROM processing_runs")
    assert (status, mode) == ("completed", "workers") and finalized_by
    assert rows(pg_url, "SELECT status, count(*) FROM pipeline_run_events GROUP BY status") == [("done", n_events)]
    # every event has both forecasts and one research, each written once
    assert count(pg_url, "experiment_results") == 2 * n_events
    assert count(pg_url, "research_artifacts") == n_events
    per_event = rows(pg_url, "SELECT event_key, count(*) FROM experiment_results GROUP BY event_key")
    assert len(per_event) == n_events and {c for _, c in per_event} == {2}
    return run_id, finalized_by


# --- the queue itself ----------------------------------------------------------------------------
@pytest.fixture
async def pg(settings_pg):
    async with Postgres(settings_pg) as db:
        await db.migrate()
        yield db


@pytest.fixture
def settings_pg(pg_url, tmp_path):
    from engine.settings import load_settings

    return load_settings(runtime_dir=tmp_path / "rt", postgres_url=pg_url)


async def _join(pg: Postgres, worker: str, key: str = "k1", run_id: str | None = None) -> WorkQueue:
    q = WorkQueue(pg, worker, lease_s=30)
    await q.create_or_join(key=key, run_id=run_id, new_run_id=f"run-{worker}", window_start=None, window_end=None,
                           options={}, git_sha="x", environment="test")
    return q


def _events(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"E{i}", {"event_key": f"E{i}", "event_id": f"E{i}", "title": "", "slug": None, "markets": []}) for i in range(n)]


async def test_queue_claims_skip_locked_leases_takeover_and_single_finalizer(pg, pg_url):
    a = await _join(pg, "A")
    b = await _join(pg, "B")
    assert a.run_id == b.run_id == "run-A"  # same options key -> B joined A's open run
    other = await _join(pg, "C", key="k2")
    assert other.run_id == "run-C"  # different options -> a run of its own
    assert await a.claim_ingest() and not await b.claim_ingest()  # the creator holds the ingestion lease
    await a.enqueue(_events(3), {"markets_seen": 3}, {"events_done": 0})
    assert (await a.state())[1] is True

    # Claims from two workers at the same time never overlap.
    (ca, _), (cb, _) = await _gather(a.claim(2), b.claim(2))
    assert len(ca) + len(cb) == 3 and not {c.event_key for c in ca} & {c.event_key for c in cb}
    assert (await a.claim(5))[0] == []  # nothing left to claim while the leases are live

    # A dies: its leases run out (made to, by SQL), B takes its events over, A's renewal finds them gone.
    a_keys = sorted(c.event_key for c in ca)
    execute(pg_url, "UPDATE pipeline_run_events SET lease_expires_at = now() - interval '1 second' WHERE claimed_by = 'A'")
    taken, _ = await b.claim(5)
    assert sorted(c.event_key for c in taken) == a_keys and {c.previous for c in taken} == {"A"}
    assert {c.attempts for c in taken} == {2}
    assert await a.heartbeat(a_keys, ingesting=False) == set()
    assert await b.heartbeat(a_keys, ingesting=False) == set(a_keys)

    # A wakes up and finishes one anyway: it is marked done once (holder B); B's later completion is a no-op.
    assert await a.complete(a_keys[0], False, {"events_done": 1}) == "B"
    assert await b.complete(a_keys[0], False, {"events_done": 1}) is None
    for key in [k for k in a_keys[1:]] + [c.event_key for c in cb]:
        assert await b.complete(key, False, {"events_done": 3}) is not None
    assert (await a.counts()).remaining == 0

    built: list[str] = []

    def build(counts, ingest, workers):
        built.append("x")
        return "completed", {"events": counts.done}, {"status": "completed", "workers": sorted(workers)}, None

    results = await _gather(a.finalize(build), b.finalize(build), a.finalize(build))
    assert [r for r in results if r is not None] == [{"status": "completed", "workers": ["A", "B"]}]
    assert built == ["x"]  # the summary was built once, under the row lock
    assert rows(pg_url, "SELECT status, finalized_by FROM processing_runs WHERE run_id = 'run-A'")[0][0] == "completed"


async def test_queue_gives_up_on_a_poison_event_and_release_returns_claims(pg, pg_url):
    a = await _join(pg, "A")
    assert await a.claim_ingest()
    await a.enqueue(_events(2), {}, {})
    claims, _ = await a.claim(2)
    await a.release([claims[1].event_key])  # a graceful give-back is not an attempt
    assert rows(pg_url, "SELECT status, attempts FROM pipeline_run_events WHERE event_key = %s", (claims[1].event_key,)) == [("pending", 0)]
    execute(pg_url, "UPDATE pipeline_run_events SET lease_expires_at = now() - interval '1 second', attempts = %s "
                 "WHERE event_key = %s", (MAX_ATTEMPTS, claims[0].event_key))
    b = await _join(pg, "B")
    claimed, poisoned = await b.claim(5)
    assert [p[0] for p in poisoned] == [claims[0].event_key] and "worker(s) died" in poisoned[0][2]
    assert [c.event_key for c in claimed] == [claims[1].event_key]
    # a run that is not complete cannot be finalized; the failed event counts as finished
    assert await b.finalize(lambda *a: ("completed", {}, {}, None)) is None
    await b.complete(claims[1].event_key, False, {})
    assert (await b.counts()).remaining == 0 and (await b.counts()).failed == 1


async def test_queue_refuses_to_join_a_finished_single_or_different_run(pg, pg_url):
    a = await _join(pg, "A", key=run_key({"x": 1}))
    with pytest.raises(BadInput, match="different options"):
        await _join(pg, "B", key=run_key({"x": 2}), run_id=a.run_id)
    with pytest.raises(BadInput, match="no such run"):
        await _join(pg, "B", key="k", run_id="nope")
    execute(pg_url, "INSERT INTO processing_runs (run_id, status) VALUES ('single-1', 'running')")
    with pytest.raises(BadInput, match="not started with --worker"):
        await _join(pg, "B", key="k", run_id="single-1")
    execute(pg_url, "UPDATE processing_runs SET status = 'completed' WHERE run_id = %s", (a.run_id,))
    with pytest.raises(BadInput, match="already completed"):
        await _join(pg, "B", key=run_key({"x": 1}), run_id=a.run_id)


async def _gather(*coros: Any) -> list[Any]:
    results: list[Any] = [None] * len(coros)

    async def one(i: int, c: Any) -> None:
        results[i] = await c

    async with anyio.create_task_group() as tg:
        for i, c in enumerate(coros):
            tg.start_soon(one, i, c)
    return results


# --- three workers in one process -------------------------------------------------------------------
async def test_three_workers_share_one_run_without_duplicates(make_settings, pg_url, gamma, openai_app):
    gamma.markets = many_events()
    meet_first(openai_app, 3)
    jobs: list[PipelineWorkerJob] = []

    async def one(i: int) -> None:
        jobs.append(await run_worker(make_settings(f"rt{i}"), worker_opts(worker_name=f"w{i}", lease_s=5)))

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(one, i)

    run_id, finalized_by = assert_complete_run(pg_url, N_EVENTS)
    assert openai_app.calls == {"research": N_EVENTS, "forecast": N_EVENTS}  # no LLM call paid twice
    assert len(gamma.requests) >= 1 and count(pg_url, "pipeline_run_workers") == 3
    claimers = rows(pg_url, "SELECT count(DISTINCT claimed_by), max(attempts) FROM pipeline_run_events")[0]
    assert claimers == (3, 1)  # all three took part; no event was claimed twice
    finalizers = [j for j in jobs if j.finalized]
    assert len(finalizers) == 1 and finalizers[0].worker == finalized_by
    final = finalizers[0].summary
    assert final["status"] == "completed" and final["counts"]["events_total"] == N_EVENTS
    assert final["counts"]["events_processed"] == N_EVENTS and final["counts"]["llm_calls"] == 2 * N_EVENTS
    assert final["suites"]["openai"]["forecast_ok"] == N_EVENTS and final["suites"]["baseline"]["forecast_ok"] == N_EVENTS
    assert sum(w["events"] for w in final["workers"].values()) == N_EVENTS
    stored = rows(pg_url, "SELECT summary->'counts'->>'llm_calls', counts->>'events_processed' FROM processing_runs")[0]
    assert stored == (str(2 * N_EVENTS), str(N_EVENTS))
    others = [j.summary for j in jobs if not j.finalized]
    assert {s["status"] for s in others} == {"worker_done"} and {s["run_id"] for s in others} == {run_id}

    # A late worker with the same options finds the run finished and starts a new one: every event is
    # already complete, so it pays for nothing.
    late = await run_worker(make_settings("rt-late"), worker_opts(worker_name="late"))
    assert late.finalized and late.summary["counts"]["events_skipped_complete"] == N_EVENTS
    assert openai_app.calls == {"research": N_EVENTS, "forecast": N_EVENTS}


async def test_worker_refuses_a_suite_it_cannot_run_and_dry_run(make_settings):
    settings = make_settings(openai_api_key=None)
    bus = EventBus()
    job = PipelineWorkerJob(worker_opts())
    outcome = await run_job(job, settings, bus, Control(job.name, bus, job.live_settings()), handle_signals=False)
    assert outcome.exit_code == 4 and "suite openai cannot run on this machine" in outcome.error
    with pytest.raises(BadInput, match="--dry-run"):
        PipelineWorkerJob(worker_opts(dry_run=True))
    with pytest.raises(BadInput, match="--worker-name"):
        PipelineWorkerJob(worker_opts(worker_name="no spaces"))


# --- three real processes, one SIGKILLed while it holds an event -----------------------------------------
async def test_three_worker_processes_one_sigkilled_mid_run(pg_url, gamma, openai_app, tmp_path):
    gamma.markets = many_events()
    meet_first(openai_app, 3)
    hang_market = "505"  # event EV5: its forecast call hangs until the worker holding it is killed
    entered, release = threading.Event(), threading.Event()
    inner = openai_app.mode_for

    def hang(kind: str, markets: list[dict[str, Any]]) -> str:
        if kind == "forecast" and any(m["market_id"] == hang_market for m in markets) and not release.is_set():
            entered.set()
            release.wait(90)
        return inner(kind, markets)

    openai_app.mode_for = hang
    procs = []
    for i in range(3):
        env = subprocess_env(
            OPSCONSOLE_RUNTIME_DIR=str(tmp_path / f"rt{i}"), SUPABASE_DB_URL=pg_url, POLYMARKET_BASE_URL=gamma.url,
            OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=openai_app.url + "/v1", INGESTION_PAGE_SIZE="3",
            PIPELINE_WORKER_LEASE_S="2",
        )
        args = [*OPSCONSOLE, "pipeline", "--worker", "--no-ui", "--suite", "baseline", "--suite", "openai",
                "--event-batch-size", "1", "--window-days", "30",
                *[a for o in OPENAI_FAST for a in ("--experiment-override", o)]]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        assert await _wait(entered.is_set), "no worker reached the EV5 forecast"
        holder = rows(pg_url, "SELECT claimed_by FROM pipeline_run_events WHERE event_key = 'EV5' AND status = 'claimed'")[0][0]
        victim_pid = int(holder.split(":")[1])
        victim = next(p for p in procs if p.pid == victim_pid)
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(30)
        release.set()
        survivors = [p for p in procs if p is not victim]
        outputs = []
        for p in survivors:
            out, err = await anyio.to_thread.run_sync(lambda p=p: p.communicate(timeout=120))
            assert p.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        release.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    run_id, finalized_by = assert_complete_run(pg_url, N_EVENTS)
    assert victim.returncode == -signal.SIGKILL
    # Every call paid once, except the forecast cut by the kill, which the takeover repeated.
    assert openai_app.calls == {"research": N_EVENTS, "forecast": N_EVENTS + 1}
    (attempts, last_holder), = rows(pg_url, "SELECT attempts, claimed_by FROM pipeline_run_events WHERE event_key = 'EV5'")
    assert attempts == 2 and last_holder != holder
    assert rows(pg_url, "SELECT max(attempts) FROM pipeline_run_events WHERE event_key <> 'EV5'")[0][0] == 1
    assert rows(pg_url, "SELECT count(DISTINCT claimed_by) FROM pipeline_run_events")[0][0] >= 2
    assert count(pg_url, "pipeline_run_workers") == 3
    # Finalized exactly once, by a survivor, which says so on stdout; the other printed its share.
    assert finalized_by != holder and str(victim_pid) not in finalized_by
    assert sum("finalized by" in o and "(this worker)" in o for o in outputs) == 1
    assert sum("this worker's share" in o for o in outputs) == 1
    assert all(f"run {run_id}" in o for o in outputs)


async def _wait(cond: Any, seconds: float = 90) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        await anyio.sleep(0.05)
    return False


async def test_ingesting_worker_killed_before_queueing_another_takes_over(pg_url, gamma, openai_app, tmp_path):
    """The creator dies while fetching from Gamma: nothing is queued, its ingestion lease runs out,
    and a worker started with the same options (it joins the open run) ingests and finishes it."""
    gamma.markets = many_events(3)
    entered, release = threading.Event(), threading.Event()
    serve = type(gamma).__call__

    def hang_first(self: Any, *a: Any) -> Any:
        if not release.is_set():
            entered.set()
            release.wait(60)
        return serve(self, *a)

    gamma.__class__ = type("HangingGamma", (type(gamma),), {"__call__": hang_first})

    def start(i: int) -> subprocess.Popen[str]:
        env = subprocess_env(
            OPSCONSOLE_RUNTIME_DIR=str(tmp_path / f"rt{i}"), SUPABASE_DB_URL=pg_url, POLYMARKET_BASE_URL=gamma.url,
            OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=openai_app.url + "/v1", PIPELINE_WORKER_LEASE_S="2",
        )
        args = [*OPSCONSOLE, "pipeline", "--worker", "--no-ui", "--suite", "baseline", "--suite", "openai",
                "--window-days", "30", *[a for o in OPENAI_FAST for a in ("--experiment-override", o)]]
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    creator = start(0)
    second = None
    try:
        assert await _wait(entered.is_set), "the first worker never called Gamma"
        (ingest_by,), = rows(pg_url, "SELECT ingest_by FROM processing_runs")
        creator.send_signal(signal.SIGKILL)
        creator.wait(30)
        release.set()
        second = start(1)
        out, err = await anyio.to_thread.run_sync(lambda: second.communicate(timeout=120))
        assert second.returncode == 0, err[-3000:]
    finally:
        release.set()
        for p in (creator, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    run_id, finalized_by = assert_complete_run(pg_url, 3)
    (new_ingest_by,), = rows(pg_url, "SELECT ingest_by FROM processing_runs")
    assert new_ingest_by == finalized_by != ingest_by and str(creator.pid) in ingest_by
    assert openai_app.calls == {"research": 3, "forecast": 3}
    assert "finalized by" in out and run_id in out
