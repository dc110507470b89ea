"""Pipeline crash with several events in flight: the process is SIGKILLed while three events each
have an LLM call outstanding at the loopback OpenAI server. The rerun repeats at most those three
calls (every finished call was committed when it returned), writes no duplicate rows, and the
killed run is marked as not completed.

(tests/pipeline/test_crash.py covers the one-event-in-flight case.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from tests.conftest import OPSCONSOLE, subprocess_env
from tests.pipeline.conftest import (  # noqa: F401  (fixtures used by name)
    OPENAI_KEY, anyio_backend, count, gamma, gemini_app, make_settings, openai_app, opts, rows, run_pipeline,
)
from tests.pipeline.fakes import gamma_market, markets_in

pytestmark = pytest.mark.anyio

EVENTS = 6
WINDOW = 3


def _calls(bodies: list[dict]) -> Counter[tuple[str, tuple[str, ...]]]:
    """Each LLM call as (kind, market ids it was about)."""
    return Counter((b["kind"], tuple(sorted(m["market_id"] for m in markets_in(b.get("input") or "")))) for b in bodies)


async def test_sigkill_with_several_events_in_flight_repeats_only_the_calls_in_flight(
    make_settings, pg_url, gamma, openai_app, tmp_path  # noqa: F811
) -> None:
    gamma.markets = [gamma_market(f"{i}01", f"Question {i}?", (f"E{i}", f"Event {i}"), yes=0.1 * i) for i in range(1, EVENTS + 1)]
    held, first_forecast_done = threading.Semaphore(0), threading.Event()
    release = threading.Event()
    lock = threading.Lock()
    forecasts = [0]
    finished: list[str] = []  # market of the one forecast that completed (whichever event came first)
    original = openai_app.mode_for

    def hold_forecasts_after_the_first(kind, markets):
        # The first forecast completes (one event fully done); every later one is held open, so the
        # window fills with events whose forecast call is in flight.
        if kind == "forecast" and not release.is_set():
            with lock:
                forecasts[0] += 1
                hold = forecasts[0] > 1
            if hold:
                held.release()
                release.wait(60)
            else:
                finished.extend(m["market_id"] for m in markets)
                first_forecast_done.set()
        return original(kind, markets)

    openai_app.mode_for = hold_forecasts_after_the_first
    env = subprocess_env(
        OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt-crash"), SUPABASE_DB_URL=pg_url, POLYMARKET_BASE_URL=gamma.url,
        OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=openai_app.url + "/v1", INGESTION_PAGE_SIZE="2",
    )
    args = [*OPSCONSOLE, "pipeline", "--no-ui", "--suite", "openai", "--event-batch-size", str(WINDOW), "--window-days", "30",
            *[a for o in opts().experiment_overrides if o.startswith("openai") for a in ("--experiment-override", o)]]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        in_flight = 0
        deadline = time.monotonic() + 90
        while in_flight < WINDOW and time.monotonic() < deadline and proc.poll() is None:
            if held.acquire(timeout=0.1):
                in_flight += 1
        assert in_flight == WINDOW, f"only {in_flight} forecast call(s) in flight; pipeline exit {proc.poll()}"
        time.sleep(0.2)  # nothing more can start: the window is full of held events
        with openai_app.lock:
            before = _calls(openai_app.bodies)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert first_forecast_done.is_set()
    # At the kill: 1 event done, 3 in flight (research stored, forecast outstanding), 2 never started.
    assert openai_app.calls == {"research": 1 + WINDOW, "forecast": 1 + WINDOW}
    assert count(pg_url, "research_artifacts") == 1 + WINDOW and count(pg_url, "experiment_results") == 1
    (dead_run,) = rows(pg_url, "SELECT run_id FROM processing_runs WHERE status = 'running'")[0]  # not completed

    rerun = await run_pipeline(make_settings(), opts(suites=["openai"], event_batch_size=WINDOW))
    assert rerun.summary["status"] == "completed", (rerun.outcome, json.dumps(rerun.summary)[:3000], [getattr(e, "reason", "") for e in rerun.events if type(e).__name__ == "Failure"])
    with openai_app.lock:
        after = _calls(openai_app.bodies) - before
    repeated = sum((before & after).values())
    print(f"\nLLM calls before the kill: {sum(before.values())}, in flight at the kill: {WINDOW}, "
          f"rerun: {sum(after.values())}, repeated: {repeated}")
    assert repeated <= WINDOW
    assert all(kind == "forecast" for kind, _ in (before & after))  # only the outstanding forecasts
    markets = {f"{i}01" for i in range(1, EVENTS + 1)}
    started = {ids[0] for kind, ids in before if kind == "research"}
    assert after == Counter({**{("research", (m,)): 1 for m in markets - started},
                             **{("forecast", (m,)): 1 for m in markets - set(finished)}})
    # No duplicate rows: one research artifact and one result per event.
    assert count(pg_url, "research_artifacts") == EVENTS and count(pg_url, "experiment_results") == EVENTS
    for table in ("research_artifacts", "experiment_results"):
        assert rows(pg_url, f"SELECT event_key, experiment_name, count(*) FROM {table} "
                            "GROUP BY 1, 2 HAVING count(*) > 1") == []
    status, error = rows(pg_url, "SELECT status, error FROM processing_runs WHERE run_id = %s", (dead_run,))[0]
    assert status != "completed" and "died without finalizing" in error, (status, error)
    assert json.dumps(rerun.summary)  # the rerun's summary is complete and serializable
