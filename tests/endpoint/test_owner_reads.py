"""`opsconsole gates` and `mutations` while a job holds the embedded store: the job answers; when it
cannot, the command says which job was asked and why it did not answer (not just "in use")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from console.commands.owner import ask_running_jobs
from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import JobEndpoint
from engine.errors import OpsError
from engine.events import JobState

pytestmark = pytest.mark.anyio
JOB = "full-enrichment"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _serving(rt: Path, handler: Any) -> JobEndpoint:
    bus = EventBus()
    control: Control[object] = Control(JOB, bus)  # type: ignore[type-var]
    control.state = JobState.RUNNING
    ep = JobEndpoint(JOB, bus, control, rt, queries={"gates": handler})
    assert await ep.open()
    return ep


async def test_the_job_answers_the_query(tmp_path: Path) -> None:
    async def gates(args: dict[str, Any]) -> Any:
        return [{"name": "pnl_nulls", "status": "PASS"}]

    ep = await _serving(tmp_path, gates)
    try:
        assert await ask_running_jobs(tmp_path, "gates") == (JOB, [{"name": "pnl_nulls", "status": "PASS"}])
    finally:
        await ep.aclose()


async def test_a_job_that_fails_the_query_is_named_with_its_reason(tmp_path: Path) -> None:
    async def gates(args: dict[str, Any]) -> Any:
        raise RuntimeError("Code: 241. Memory limit exceeded")

    ep = await _serving(tmp_path, gates)
    try:
        with pytest.raises(OpsError, match=r"full-enrichment could not answer: .*Memory limit exceeded"):
            await ask_running_jobs(tmp_path, "gates")
    finally:
        await ep.aclose()


async def test_a_job_slower_than_the_wait_is_named_too(tmp_path: Path) -> None:
    async def gates(args: dict[str, Any]) -> Any:
        await anyio.sleep(30)

    ep = await _serving(tmp_path, gates)
    try:
        with pytest.raises(OpsError, match=r"full-enrichment did not answer within 0.5 s"):
            await ask_running_jobs(tmp_path, "gates", timeout=0.5)
    finally:
        await ep.aclose()
