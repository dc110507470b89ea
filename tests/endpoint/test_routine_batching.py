"""Routine events (progress, checkpoints, DEBUG lines) share a write to each client; anything
else is written at once, after what was gathered before it. Nothing is lost or reordered."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import endpoint as endpoint_module
from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import JobEndpoint
from engine.endpoint_client import connect
from engine.events import CheckpointSaved, Failure, JobState, LogLine, MutationInfo, MutationStatus, Progress, StateChanged

pytestmark = pytest.mark.anyio
JOB = "batching"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _checkpoint(i: int) -> CheckpointSaved:
    return CheckpointSaved(job=JOB, step="D", where="local", cursor={"n": i}, batch_idx=i)


async def _serving(rt: Path, bus: EventBus) -> JobEndpoint:
    rt.mkdir()
    control: Control[object] = Control(JOB, bus)  # type: ignore[type-var]
    control.state = JobState.RUNNING
    ep = JobEndpoint(JOB, bus, control, rt)
    assert await ep.open()
    return ep


def test_which_events_are_routine() -> None:
    stuck = MutationInfo(database="d", table="t", mutation_id="m", command="c", create_time="", age_s=1.0,
                         parts_to_do=1, latest_fail_reason="Too many mutations")
    assert Progress(job=JOB, step="D", done=1, total=2).routine()
    assert _checkpoint(1).routine()
    assert LogLine(job=JOB, level="DEBUG", message="x").routine()
    assert MutationStatus(job=JOB, pending=1).routine()
    assert not MutationStatus(job=JOB, pending=1, details=(stuck,)).routine()  # a failing mutation is news
    assert not LogLine(job=JOB, level="INFO", message="x").routine()
    assert not StateChanged(job=JOB, state=JobState.PAUSED).routine()
    assert not Failure(job=JOB, where="batch 3", reason="boom").routine()


async def test_routine_events_share_a_write_and_a_state_change_goes_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "ROUTINE_EVERY_S", 5.0)  # longer than the test: only the state flushes
    rt = tmp_path / "rt"
    bus = EventBus()
    ep = await _serving(rt, bus)
    writes: list[int] = []  # events per write, after the hello and snapshot
    original = ep._send

    async def send(client: object, data: bytes) -> None:
        if b'"kind":"event"' in data:
            writes.append(data.count(b"\n"))
        await original(client, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ep, "_send", send)
    try:
        async with connect(rt, JOB) as client:
            for i in range(20):
                bus.publish(_checkpoint(i))
                await anyio.sleep(0.005)
            assert writes == []  # gathered, not written one by one
            bus.publish(StateChanged(job=JOB, state=JobState.PAUSED))
            with anyio.fail_after(10):
                seen = []
                async for event in client.events():
                    seen.append(event)
                    if isinstance(event, StateChanged):
                        break
            assert [e.batch_idx for e in seen if isinstance(e, CheckpointSaved)] == list(range(20))
            assert writes == [21]
    finally:
        await ep.aclose()


async def test_a_lone_routine_event_is_not_held_longer_than_the_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "ROUTINE_EVERY_S", 0.3)
    rt = tmp_path / "rt"
    bus = EventBus()
    ep = await _serving(rt, bus)
    try:
        async with connect(rt, JOB) as client:
            bus.publish(_checkpoint(7))
            with anyio.fail_after(10):
                async for event in client.events():
                    assert isinstance(event, CheckpointSaved) and event.batch_idx == 7
                    break
    finally:
        await ep.aclose()
