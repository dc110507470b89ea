"""The job runtime in-process: Control (pause/resume/stop/live settings) and the event bus."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.errors import BadInput, ExitCode, LockHeld
from engine.events import CheckpointSaved, JobState, LogLine, Progress, StateChanged
from engine.jobs.selftest import SelftestJob
from engine.runner import run_job
from engine.settings import load_settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


@pytest.mark.anyio
async def test_pause_holds_after_a_checkpoint_then_resume_and_stop(tmp_path: Path) -> None:
    settings = load_settings(runtime_dir=tmp_path / "rt")
    bus = EventBus()
    sub = bus.subscribe()
    job = SelftestJob(units=10_000, unit_seconds=0.002)
    control = Control(job.name, bus, job.live_settings())
    state_file = settings.runtime / "selftest.state.json"
    outcome = None

    async def drive() -> None:
        nonlocal outcome
        outcome = await run_job(job, settings, bus, control, handle_signals=False)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await _wait_for(lambda: state_file.exists() and json.loads(state_file.read_text())["done"] >= 5)
        assert control.pause()
        assert control.state is JobState.PAUSING  # shown at once, before the unit finishes
        await _wait_for(lambda: control.state is JobState.PAUSED)
        held = json.loads(state_file.read_text())["done"]
        await anyio.sleep(0.1)
        assert json.loads(state_file.read_text())["done"] == held  # really holding

        control.update_live({"unit_seconds": 0.001})
        with pytest.raises(BadInput):
            control.update_live({"unit_seconds": -1})
        with pytest.raises(BadInput):
            control.update_live({"no_such_setting": 1})
        assert control.live.unit_seconds == 0.001

        assert control.resume()
        await _wait_for(lambda: json.loads(state_file.read_text())["done"] > held + 3)
        assert control.stop()
    assert outcome is not None
    assert outcome.state is JobState.STOPPED and outcome.exit_code is ExitCode.OK
    final = json.loads(state_file.read_text())["done"]
    assert held < final < 10_000

    events = sub.drain()
    states = [e.state for e in events if isinstance(e, StateChanged)]
    assert states == [JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.RUNNING, JobState.STOPPING, JobState.STOPPED]
    log = (settings.runtime / "selftest.console.log").read_text()
    assert "STATE   selftest paused" in log and "state=stopped exit=0" in log
    assert not (settings.runtime / "selftest.pid").exists()


@pytest.mark.anyio
async def test_a_second_runner_of_the_same_job_is_refused(tmp_path: Path) -> None:
    settings = load_settings(runtime_dir=tmp_path / "rt")
    bus = EventBus()
    first = Control("selftest", bus, SelftestJob().live_settings())

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_job(SelftestJob(units=10_000, unit_seconds=0.01), settings, bus, first, handle_signals=False))
        await _wait_for(lambda: first.state is JobState.RUNNING)
        with pytest.raises(LockHeld) as err:
            await run_job(SelftestJob(), settings, EventBus(), handle_signals=False)
        assert err.value.exit_code == ExitCode.LOCKED
        first.stop()


@pytest.mark.anyio
async def test_a_failing_job_reports_failed_and_releases_its_lock(tmp_path: Path) -> None:
    settings = load_settings(runtime_dir=tmp_path / "rt")

    class Broken(SelftestJob):
        async def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
            raise RuntimeError("disk on fire")

    outcome = await run_job(Broken(), settings, EventBus(), handle_signals=False)
    assert outcome.state is JobState.FAILED and outcome.exit_code is ExitCode.FAILED
    assert "disk on fire" in outcome.error
    assert "Traceback" in (settings.runtime / "selftest.console.log").read_text()  # details kept in the log
    again = await run_job(SelftestJob(units=1, unit_seconds=0), settings, EventBus(), handle_signals=False)
    assert again.state is JobState.DONE


@pytest.mark.anyio
async def test_slow_consumer_gets_latest_progress_and_every_log_line() -> None:
    bus = EventBus()
    slow = bus.subscribe()
    for i in range(1000):
        bus.publish(Progress(job="j", step="D", done=i, total=1000))
        if i % 100 == 0:
            bus.publish(LogLine(job="j", level="INFO", message=f"log {i}"))
    bus.publish(CheckpointSaved(job="j", step="D", where="local", cursor={"i": 999}))
    events = slow.drain()
    progress = [e for e in events if isinstance(e, Progress)]
    logs = [e.message for e in events if isinstance(e, LogLine)]
    assert [p.done for p in progress] == [999]  # coalesced to the newest
    assert logs == [f"log {i}" for i in range(0, 1000, 100)]  # never dropped, in order
    assert isinstance(events[-1], CheckpointSaved)


@pytest.mark.anyio
async def test_each_subscriber_has_its_own_queue() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish(LogLine(job="j", level="INFO", message="one"))
    assert len(a.drain()) == 1
    bus.publish(LogLine(job="j", level="INFO", message="two"))
    assert [e.message for e in b.drain()] == ["one", "two"]


def test_control_ignores_actions_that_do_not_apply() -> None:
    control = Control("j", EventBus())
    assert not control.resume()  # nothing paused
    control.started()
    assert control.stop()
    assert not control.stop()  # idempotent
    assert not control.pause()  # stopping: pause no longer applies


@pytest.mark.anyio
async def test_job_start_keeps_runtime_traversable_for_the_embedded_postgres(tmp_path: Path) -> None:
    """The embedded server runs as its own OS user under runtime/postgres: a job starting while it
    runs must not take away traversal of runtime/ (it used to chmod it 0700)."""
    import os
    import stat

    settings = load_settings(runtime_dir=tmp_path / "rt")
    await run_job(SelftestJob(units=1, unit_seconds=0), settings, EventBus(), handle_signals=False)
    mode = stat.S_IMODE(os.stat(settings.runtime).st_mode)
    assert mode == 0o711  # others may traverse, not list; files inside are 0600


@pytest.mark.anyio
async def test_a_gathering_reader_wakes_for_news_or_its_deadline_not_for_each_routine_event() -> None:
    """The job socket's writers gather routine events (progress, checkpoints) for up to 0.1 s per
    client: they must not be woken by each one, only by news (a state change) or the deadline."""
    bus = EventBus()
    sub = bus.subscribe()

    def checkpoint(i: int) -> CheckpointSaved:
        return CheckpointSaved(job="j", step="D", where="local", cursor={}, batch_idx=i)

    async def publish_routine_then_news() -> None:
        for i in range(20):
            bus.publish(checkpoint(i))
            await anyio.sleep(0.002)
        bus.publish(StateChanged(job="j", state=JobState.PAUSED))

    got: list[object] = []
    wakeups = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_routine_then_news)
        deadline = anyio.current_time() + 30
        while not any(isinstance(e, StateChanged) for e in got):
            got += await sub.receive_batch_by(deadline)
            wakeups += 1
    assert [e.batch_idx for e in got if isinstance(e, CheckpointSaved)] == list(range(20))
    assert wakeups <= 2  # woken per checkpoint, it would be about 20

    async def one_more() -> None:
        await anyio.sleep(0.05)
        bus.publish(checkpoint(99))

    late = anyio.current_time() + 0.3
    async with anyio.create_task_group() as tg:
        tg.start_soon(one_more)
        gathered = await sub.receive_batch_by(late)
    assert [e.batch_idx for e in gathered] == [99]  # not woken by it: handed over at the deadline
    assert anyio.current_time() >= late
