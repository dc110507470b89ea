"""A client whose socket accepts nothing is cut off once one write has waited SEND_TIMEOUT, long
before its backlog of events would reach MAX_BACKLOG, and the job's other clients carry on."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from engine import endpoint as endpoint_module
from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import JobEndpoint
from engine.endpoint_client import connect
from engine.events import JobState, LogLine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_client_that_reads_nothing_is_cut_off_after_the_send_timeout(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "SEND_TIMEOUT", 1.5)
    rt = tmp_path / "rt"
    rt.mkdir()
    bus = EventBus()
    control: Control[object] = Control("sendtest", bus)  # type: ignore[type-var]
    control.state = JobState.RUNNING
    warnings: list[str] = []
    bus.add_listener(lambda e: warnings.append(e.message) if isinstance(e, LogLine) and e.level == "WARNING" else None)
    ep = JobEndpoint("sendtest", bus, control, rt)
    assert await ep.open()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(str(ep.path))  # and never reads
        async with connect(rt, "sendtest") as healthy:
            big = "x" * 60_000
            for i in range(200):  # ~12 MB: far past what the stalled socket's buffers take
                bus.publish(LogLine(job="sendtest", level="INFO", message=f"{i} {big}"))
            assert len(ep.clients) == 2
            with anyio.fail_after(15):
                while not any("a write waited more than 1.5s" in w for w in warnings):
                    await anyio.sleep(0.1)
            seen = 0
            with anyio.fail_after(15):
                async for event in healthy.events():  # the reading client got every line
                    if isinstance(event, LogLine) and event.level == "INFO":
                        seen += 1
                        if seen == 200:
                            break
            assert len(ep.clients) == 1
    finally:
        stalled.close()
        await ep.aclose()
