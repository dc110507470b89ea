"""A real crash: the pipeline process is killed (SIGKILL) in the middle of an LLM call.

What completed before the kill was committed the moment it returned, so the rerun pays only for the
call that never finished and what was never started; the dead run's row is finalized as failed.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import OPSCONSOLE, subprocess_env
from tests.pipeline.conftest import OPENAI_KEY, count, opts, rows, run_pipeline

pytestmark = pytest.mark.anyio


async def test_sigkill_mid_run_then_rerun_pays_no_completed_call_twice(make_settings, pg_url, gamma, openai_app, tmp_path):
    entered, release = threading.Event(), threading.Event()
    original = openai_app.mode_for

    def hang_on_e2_forecast(kind, markets):
        if kind == "forecast" and any(m["market_id"] == "201" for m in markets) and not release.is_set():
            entered.set()
            release.wait(60)  # the process dies while we hold its request
        return original(kind, markets)

    openai_app.mode_for = hang_on_e2_forecast
    env = subprocess_env(
        OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt-crash"), SUPABASE_DB_URL=pg_url, POLYMARKET_BASE_URL=gamma.url,
        OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=openai_app.url + "/v1", INGESTION_PAGE_SIZE="2",
    )
    args = [*OPSCONSOLE, "pipeline", "--no-ui", "--suite", "openai", "--event-batch-size", "1", "--window-days", "30",
            *[a for o in opts().experiment_overrides if o.startswith("openai") for a in ("--experiment-override", o)]]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert await _wait(entered), "the pipeline never reached the E2 forecast"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert openai_app.calls == {"research": 2, "forecast": 2}  # E1 research+forecast, E2 research, E2 forecast (cut)
    assert count(pg_url, "research_artifacts") == 2 and count(pg_url, "experiment_results") == 1
    (dead_run,) = rows(pg_url, "SELECT run_id FROM processing_runs WHERE status = 'running'")[0]

    rerun = await run_pipeline(make_settings(), opts(suites=["openai"]))
    assert rerun.summary["status"] == "completed"
    # only E2's forecast (never finished) and E3 (never started) were paid for again
    assert openai_app.calls == {"research": 3, "forecast": 4}
    assert rerun.summary["suites"]["openai"]["research_reused"] == 2
    assert rerun.summary["suites"]["openai"]["forecast_reused"] == 1
    assert count(pg_url, "experiment_results") == 3
    status, error = rows(pg_url, "SELECT status, error FROM processing_runs WHERE run_id = %s", (dead_run,))[0]
    assert status == "failed" and "died without finalizing" in error


async def _wait(flag: threading.Event, seconds: float = 60) -> bool:
    import anyio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if flag.is_set():
            return True
        await anyio.sleep(0.05)
    return False
