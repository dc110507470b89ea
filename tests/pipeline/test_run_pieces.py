"""The pieces both pipeline runners compose: PipelineConfig, RunState (+ pause_point, ProviderPool)
and EventProcessor. Whole runs are covered by test_pipeline_runs.py and test_workers.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import psycopg
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.errors import BadInput
from engine.events import Event, Failure, JobState, LogLine
from engine.pipeline.config import PipelineConfig
from engine.pipeline.event_processor import EventProcessor
from engine.pipeline.experiments import Experiment
from engine.pipeline.forecast import StrategyError
from engine.pipeline.job import PipelineJob
from engine.pipeline.normalize import group_by_event, normalize_market
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.run_state import ProviderPool, RunState, pause_point
from engine.pipeline.worker import PipelineWorkerJob
from engine.runner import JobContext
from engine.settings import load_settings
from engine.stores.postgres import Postgres
from tests.pipeline.conftest import FAST, anyio_backend, opts  # noqa: F401  (fixture used by name)
from tests.pipeline.fakes import gamma_market

pytestmark = pytest.mark.anyio


def test_config_is_validated_up_front_and_frozen():
    options = opts(suites=["baseline"])
    config = PipelineConfig.build(options)
    options.experiment_overrides.append("openai:forecast:gpt5.model=changed-later")
    options.stage = "research"
    # The run keeps what was asked when it was built, whatever the caller does with its object.
    assert config.options.experiment_overrides == FAST and config.options.stage == "both"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.options = options  # type: ignore[misc]
    with pytest.raises(BadInput, match="unknown experiment"):
        PipelineConfig.build(opts(experiment_overrides=["openai:forecast:nope.model=x"]))
    with pytest.raises(BadInput, match="unknown key"):
        PipelineJob(opts(experiment_overrides=["openai:forecast:gpt5.modle=x"]))
    with pytest.raises(BadInput, match="unknown key"):
        PipelineWorkerJob(opts(worker=True, experiment_overrides=["openai:forecast:gpt5.modle=x"]))


def test_both_runners_share_the_job_identity():
    single, worker = PipelineJob(opts()), PipelineWorkerJob(opts(worker=True, worker_name="w1"))
    assert (single.name, worker.name) == ("pipeline", "pipeline-worker-w1")
    assert single.live_settings().experiment_overrides == worker.live_settings().experiment_overrides == FAST
    assert single.options is single.config.options and single.summary is None and single.state is None


async def _until(predicate: Any) -> None:
    with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
        while not predicate():
            await anyio.sleep(0.01)


async def test_pause_point_drains_the_work_in_hand_then_holds():
    control: Control[Any] = Control("t", EventBus())
    control.started()
    busy = {"n": 2}
    passed: list[bool] = []

    async def runner() -> None:
        passed.append(await pause_point(control, lambda: busy["n"]))

    assert await pause_point(control, lambda: busy["n"])  # not paused: passes at once, busy or not
    assert control.pause()
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await anyio.wait_all_tasks_blocked()
        assert control.state is not JobState.PAUSED and not passed  # still waiting for the 2 in flight
        busy["n"] = 0
        await _until(lambda: control.state is JobState.PAUSED)
        assert not passed  # drained, now holding
        control.resume()
    assert passed == [True]

    control.pause()
    async with anyio.create_task_group() as tg:
        busy["n"] = 1
        tg.start_soon(runner)
        await anyio.wait_all_tasks_blocked()
        control.stop()  # stop does not wait for the drain
    assert passed == [True, False]


def test_provider_warm_up_keeps_the_error_for_the_first_event(tmp_path):
    pool = ProviderPool(load_settings(runtime_dir=tmp_path / "rt"))
    odd = Experiment("odd", "forecast", "v1", "nosuch_strategy", {})
    pool.warm_up([odd, Experiment("baseline", "forecast", "prices", "market_prices", {})])
    assert list(pool.startup_errors) == ["nosuch"] and "no provider" in pool.startup_errors["nosuch"]
    with pytest.raises(StrategyError, match="no provider"):
        pool.get(odd)  # the event that needs it gets the same error, and reports it against itself


async def test_an_event_crash_whose_failure_rows_cannot_be_saved_is_logged(tmp_path, pg_url):
    settings = load_settings(runtime_dir=tmp_path / "rt", postgres_url=pg_url)
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    ctx = JobContext("pipeline", settings, Control("pipeline", bus), bus)
    config = PipelineConfig.build(opts(suites=["baseline"]))
    group, = group_by_event([normalize_market(gamma_market("101", "Fed cuts?", ("E1", "Fed"))),
                             normalize_market(gamma_market("102", "Fed holds?", ("E1", "Fed")))])
    async with Postgres(settings) as pg:
        state = RunState.begin(config, ctx, config.select_available(settings), "run-1", None)
        state.repo = PipelineRepository(pg)
        await state.repo.migrate()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE processing_failures CASCADE")  # a real store error on the save
        await EventProcessor(state).crashed(group, RuntimeError("store went away"))
    assert state.stats.failures_total == 2
    assert [e.where for e in events if isinstance(e, Failure)] == ["101", "102"]
    warnings = [e.message for e in events if isinstance(e, LogLine) and e.level == "WARNING"]
    assert any("event E1: could not save its 2 failure row(s)" in m for m in warnings), warnings
