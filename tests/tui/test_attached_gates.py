"""Consoles attached to one job share its gates: a console does not ask the job to compute gates
that another console had refreshed less than one interval ago (each refresh reaches them all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.remote import live_model_for
from console.tui.session import JobSession
from engine.events import GateResult, GatesReported, JobState, Progress
from engine.settings import load_settings

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


def _app(tmp_path: Path) -> OpsConsoleApp:
    settings = load_settings(runtime_dir=tmp_path / "rt")
    # Nothing answers on the socket: the screen keeps the last state it was given (running).
    session = JobSession.remote("full-enrichment", settings.runtime, live_model_for("full-enrichment", {}),
                                JobState.RUNNING, settings=settings)
    return OpsConsoleApp(settings, session=session, clock=lambda: NOW, gates_interval=30.0)


async def _screen(app: OpsConsoleApp) -> JobScreen:
    screen = app.screen
    assert isinstance(screen, JobScreen)
    screen.view.panels = ("steps", "gates", "mutations")
    screen.view.state = JobState.RUNNING
    return screen


def _reported(ts: float) -> GatesReported:
    return GatesReported(job="full-enrichment", ts=ts, gates=(GateResult(name="pnl_nulls", status="PASS", actual=0, expected="0"),))


async def test_gates_another_console_refreshed_recently_are_not_asked_for_again(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 36)):
        screen = await _screen(app)
        screen.view.apply(_reported(NOW - 5))  # another console's refresh, 5 s ago
        screen._auto_gates()
        assert not screen.gates_busy  # nothing asked of the job


async def test_stale_gates_are_asked_for(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 36)):
        screen = await _screen(app)
        screen.view.apply(_reported(NOW - 31))  # older than one interval
        screen._auto_gates()
        assert screen.gates_busy  # the refresh went to the job


def _step(step: str, done: int) -> Progress:
    return Progress(job="full-enrichment", step=step, done=done, total=100, unit="pairs", ts=NOW)


async def test_automatic_refreshes_wait_while_step_d_writes(tmp_path: Path) -> None:
    # Mid-Step D the gates would read half-written P&L and compete with the batches for the store.
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _screen(app)
        screen.view.apply(_reported(NOW - 31))  # stale
        screen.view.apply(_step("D", 10))
        screen._auto_gates()
        assert not screen.gates_busy  # nothing asked of the job
        await pilot.pause()
        assert "auto-refresh after Step D" in str(screen.query_one("#gates").border_subtitle)
        screen.action_refresh_gates()  # the operator's g still asks at once
        assert screen.gates_busy


@pytest.mark.parametrize("situation", ["paused", "step E"])
async def test_automatic_refreshes_resume_when_step_d_is_not_writing(tmp_path: Path, situation: str) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(app)
        screen.view.apply(_reported(NOW - 31))
        screen.view.apply(_step("D", 10))
        if situation == "paused":
            screen.view.state = JobState.PAUSED
        else:
            screen.view.apply(_step("E", 1))
        screen._auto_gates()
        assert screen.gates_busy
