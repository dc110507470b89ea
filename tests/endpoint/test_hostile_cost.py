"""What a hostile client costs the job: the snapshot a connection gets is encoded once until an
event changes it, and a stream of clients cut off for the same reason writes one WARNING line per
REFUSAL_LOG_EVERY_S with a count, not one each (they would push the lines that matter out of the
snapshot's last 500)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anyio
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import MAX_BAD_LINES, JobEndpoint, unix_address
from engine.events import JobState, LogLine, Progress
from engine.job_snapshot import JobSnapshot

pytestmark = pytest.mark.anyio
JOB = "hostile-cost"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_snapshot_is_encoded_once_until_an_event_changes_it() -> None:
    snap = JobSnapshot(JOB)
    for i in range(600):
        snap(LogLine(job=JOB, level="INFO", message=f"line {i}"))
    first = snap.encoded()
    assert snap.encoded() is first  # nothing happened: the same bytes
    snap(Progress(job=JOB, step="D", done=7, total=10))
    second = snap.encoded()
    assert second is not first
    doc = json.loads(second)["snapshot"]
    assert doc["progress"]["D"]["done"] == 7
    assert [r["message"] for r in doc["logs"]] == [f"line {i}" for i in range(100, 600)]


async def test_clients_cut_off_for_the_same_reason_share_one_warning(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    rt.mkdir()
    bus = EventBus()
    control: Control[object] = Control(JOB, bus)  # type: ignore[type-var]
    control.state = JobState.RUNNING
    warnings: list[str] = []
    bus.add_listener(lambda e: warnings.append(e.message) if isinstance(e, LogLine) and e.level == "WARNING" else None)
    ep = JobEndpoint(JOB, bus, control, rt)
    assert await ep.open()

    def garbage_client() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with unix_address(ep.path) as address:
            s.connect(address)
        s.sendall(b"\x00{not json]\n" * MAX_BAD_LINES)
        s.settimeout(10)
        while s.recv(65536):  # until the job cuts it off
            pass
        s.close()

    try:
        for _ in range(6):
            await anyio.to_thread.run_sync(garbage_client)
        with anyio.fail_after(10):
            while ep.clients:
                await anyio.sleep(0.05)
    finally:
        await ep.aclose()
    cut = [w for w in warnings if "cut off" in w]
    assert len(cut) == 1 and f"sent {MAX_BAD_LINES} malformed lines" in cut[0], warnings
