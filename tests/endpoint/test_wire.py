"""The wire format: the same records as `--log-format json`, decoded back into typed events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest

from console.headless import JsonRenderer
from engine import wire
from engine.bus import EventBus
from engine.control import Control
from engine.endpoint_client import connect
from engine.events import (
    CheckpointSaved,
    Failure,
    GateResult,
    GatesReported,
    JobState,
    LogLine,
    MutationInfo,
    MutationStatus,
    Progress,
    SettingsChanged,
    StateChanged,
    Summary,
)
from engine.jobs.selftest import SelftestJob
from engine.redact import register_secret
from engine.runner import run_job
from engine.settings import load_settings

EVENTS = [
    StateChanged(job="j", state=JobState.PAUSED, reason="holding"),
    Progress(job="j", step="D", done=3, total=None, unit="pairs", detail={"batch": 1}),
    LogLine(job="j", level="WARNING", message="ünïcode\nand a newline", step="D"),
    CheckpointSaved(job="j", step="D", where="remote", cursor={"wallet": "0xab", "n": 2}, pairs_done=600, batch_idx=2),
    GatesReported(job="j", gates=(GateResult(name="g1", status="PASS", actual=1.5, expected="> 1"),
                                  GateResult(name="g2", status="FAIL", actual=None, expected="0", detail="x"))),
    MutationStatus(job="j", pending=1, details=(MutationInfo(database="db", table="t", mutation_id="m1", command="UPDATE",
                                                             create_time="2026-01-01", age_s=2.0, parts_to_do=3),)),
    Failure(job="j", where="market 7", reason="timeout", retriable=False, step="C"),
    SettingsChanged(job="j", values={"batch_size": 300}),
    Summary(job="j", data={"steps": ["D"], "nested": {"a": [1, 2]}}),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_and_matches_the_json_log_format(event: object) -> None:
    line = wire.encode(wire.event_message(event))  # type: ignore[arg-type]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = wire.decode(line)["event"]
    assert wire.event_from_record(record) == event
    out = io.StringIO()
    JsonRenderer(out).handle(event)  # type: ignore[arg-type]
    assert json.loads(out.getvalue()) == record  # one schema for the log and the socket


def test_unknown_event_types_and_fields_are_tolerated_but_garbage_is_not() -> None:
    assert wire.event_from_record({"type": "FromTheFuture", "job": "j"}) is None
    newer = {"type": "LogLine", "job": "j", "ts": 1.0, "level": "INFO", "message": "m", "added_later": 1}
    assert wire.event_from_record(newer) == LogLine(job="j", ts=1.0, level="INFO", message="m")
    with pytest.raises(wire.WireError):
        wire.event_from_record({"type": "StateChanged", "job": "j", "state": "no-such-state"})
    with pytest.raises(wire.WireError):
        wire.decode(b"[1, 2]")
    with pytest.raises(wire.WireError):
        wire.parse_command({"kind": "command", "cmd": ""})


def test_secrets_are_redacted_on_the_way_out() -> None:
    register_secret("Wire-Secret-Value-123")
    event = LogLine(job="j", level="INFO", message="dsn postgresql://u:Wire-Secret-Value-123@h/db")
    line = wire.encode(wire.event_message(event))
    assert b"Wire-Secret-Value-123" not in line
    reply = wire.encode(wire.reply(1, True, data={"Wire-Secret-Value-123": "Wire-Secret-Value-123"}))
    assert b"Wire-Secret-Value-123" not in reply


@pytest.mark.anyio
async def test_socket_path_longer_than_sun_path_still_works_and_queries_are_answered(tmp_path: Path) -> None:
    runtime = tmp_path / ("r" * 60) / ("t" * 60)
    settings = load_settings(runtime_dir=runtime)
    assert len(str(settings.runtime / "selftest.sock")) > 108
    bus = EventBus()
    control = Control("selftest", bus, SelftestJob(unit_seconds=0.005).live_settings())
    gates = (GateResult(name="g", status="PASS", actual=1, expected="1"),)

    class WithQueries(SelftestJob):
        async def run(self, ctx):  # type: ignore[no-untyped-def]
            async def answer(args: dict[str, object]) -> object:
                return gates

            async def broken(args: dict[str, object]) -> object:
                raise RuntimeError("the store went away")

            ctx.register_query("gates", answer)
            ctx.register_query("mutations", broken)
            await super().run(ctx)

    job = WithQueries(units=100_000, unit_seconds=0.005)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_job(job, settings, bus, control, handle_signals=False))
        with anyio.fail_after(60):
            while control.state is not JobState.RUNNING:
                await anyio.sleep(0.01)
            async with connect(settings.runtime, "selftest") as client:
                assert client.snapshot.state is JobState.RUNNING
                assert await client.gates() == list(gates)
                failed = await client.command("mutations")
                assert not failed.ok and "the store went away" in failed.error
                assert (await client.command("refresh_gates")).error == "not offered by this job"
                assert (await client.stop()).ok
                assert (await client.wait_for_state("stopped")) is not None
    assert not (settings.runtime / "selftest.sock").exists()
