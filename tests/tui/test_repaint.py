"""What an attached console paints when: progress and DEBUG lines alone wait for the once-a-second
tick (a Step D batch reports both many times a second, and three consoles painting each was a
steady CPU load beside the job); a shown log line reaches the log widgets within LINES_EVERY_S;
a new step and a state change repaint the panels within REPAINT_EVERY_S."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import EventsArrived, JobScreen
from console.tui.remote import live_model_for
from console.tui.session import JobSession
from engine.events import JobState, LogLine, Progress, StateChanged
from engine.settings import load_settings

pytestmark = pytest.mark.anyio
JOB = "full-enrichment"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _progress(step: str, done: int) -> Progress:
    return Progress(job=JOB, step=step, done=done, total=1000, unit="pairs")


async def _screen(tmp_path: Path, app: OpsConsoleApp) -> JobScreen:
    screen = app.screen
    assert isinstance(screen, JobScreen)
    screen.view.panels = ("steps", "gates", "mutations")
    screen.view.state = JobState.RUNNING
    screen.handle_events(EventsArrived([_progress("D", 1)]))
    screen.flush()
    assert screen._painted_steps == {"D"}
    return screen


def _app(tmp_path: Path) -> OpsConsoleApp:
    settings = load_settings(runtime_dir=tmp_path / "rt")
    session = JobSession.remote(JOB, settings.runtime, live_model_for(JOB, {}), JobState.RUNNING, settings=settings)
    return OpsConsoleApp(settings, session=session, gates_interval=None)


async def test_progress_alone_waits_for_the_tick(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(tmp_path, app)
        screen.handle_events(EventsArrived([_progress("D", 2)]))
        assert screen._repaint_timer is None and screen._dirty_quiet  # no frame of its own
        before = screen._last_repaint
        screen._tick()
        assert not screen._dirty_quiet and screen._last_repaint > before  # the tick painted it


@pytest.mark.parametrize("event", [
    StateChanged(job=JOB, state=JobState.PAUSING, reason="pause requested"),
    Progress(job=JOB, step="E", done=1, total=10, unit="pairs"),
], ids=["state change", "new step"])
async def test_states_and_new_steps_repaint_the_panels_promptly(tmp_path: Path, event: object) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(tmp_path, app)
        screen._last_repaint = 0.0  # long ago: the repaint happens now, not on a timer
        screen.handle_events(EventsArrived([_progress("D", 3), event]))
        assert not screen._dirty_quiet and screen._repaint_timer is None  # flushed at once
        assert screen._painted_steps >= set(screen.view.steps)


async def test_a_shown_line_reaches_the_log_at_once_without_a_full_repaint(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(tmp_path, app)
        screen._last_lines = 0.0
        repainted = screen._last_repaint
        screen.handle_events(EventsArrived([_progress("D", 3), LogLine(job=JOB, level="INFO", message="batch 3 written")]))
        assert not screen._pending_lines  # handed to the log widgets
        assert "batch 3 written" in "\n".join(t for _, t in screen.query_one("#log-tail").lines)
        assert screen._last_repaint == repainted and screen._dirty_quiet  # the panels wait for the tick


async def test_debug_lines_the_overview_hides_wait_for_the_tick(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(tmp_path, app)
        screen._last_lines = 0.0
        screen.handle_events(EventsArrived([LogLine(job=JOB, level="DEBUG", message="checkpoint saved")]))
        assert screen._pending_lines and screen._lines_timer is None and screen._dirty_quiet
        screen._tick()
        assert not screen._pending_lines
