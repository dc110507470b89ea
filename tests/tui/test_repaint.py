"""What an attached console paints when: progress and DEBUG lines alone wait for the once-a-second
tick (a Step D batch reports both many times a second, and three consoles painting each was a
steady CPU load beside the job); a shown log line reaches the log widgets within LINES_EVERY_S;
a new step and a state change repaint the panels within REPAINT_EVERY_S."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import LINES_EVERY_S, EventsArrived, JobScreen
from console.tui.remote import live_model_for
from console.tui.session import JobSession
from console.tui.widgets import GatesPanel, KeysFooter, QuietProgressBar, set_border_text
from engine.events import CheckpointSaved, JobState, LogLine, Progress, StateChanged
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


def _watching_app(tmp_path: Path) -> tuple[OpsConsoleApp, JobSession]:
    """A console watching events published on a bus here (no job, no socket)."""
    settings = load_settings(runtime_dir=tmp_path / "rt")
    session = JobSession.attach(JOB, settings=settings)
    return OpsConsoleApp(settings, session=session, gates_interval=None), session


def _record_handovers(screen: JobScreen, monkeypatch: pytest.MonkeyPatch) -> list[list[object]]:
    """The events of each EventsArrived message the pump hands to the screen, as they are posted."""
    posted: list[list[object]] = []
    original = screen.post_message

    def post(message: object) -> bool:
        if isinstance(message, EventsArrived):
            posted.append(list(message.events))
        return original(message)  # type: ignore[arg-type]

    monkeypatch.setattr(screen, "post_message", post)
    return posted


def _count_refreshes(widget: Widget) -> list[int]:
    """One entry per `refresh()` of `widget` from now on (a repaint it asks for)."""
    refreshes: list[int] = []
    original = widget.refresh

    def counted(*args: object, **kwargs: object) -> object:
        refreshes.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    widget.refresh = counted  # type: ignore[method-assign]
    return refreshes


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


async def test_routine_events_reach_the_screen_together_and_a_state_change_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Step D batch reports a checkpoint or two and its progress moments apart: the screen gets
    them as one message every QUIET_EVENTS_EVERY_S, not one message each, and loses none; a state
    change is handed over at once, with what was held before it."""
    app, session = _watching_app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = app.screen
        assert isinstance(screen, JobScreen)
        posted = _record_handovers(screen, monkeypatch)
        session.bus.publish(_progress("D", 1))  # a new step: at once
        await screen.wait_for(lambda v: "D" in v.steps)
        posted.clear()
        for i in range(20):
            session.bus.publish(CheckpointSaved(job=JOB, step="D", where="local", cursor={"n": i}, batch_idx=i))
            await anyio.sleep(0.002)
        session.bus.publish(StateChanged(job=JOB, state=JobState.PAUSED))
        await screen.wait_for(lambda v: v.state is JobState.PAUSED)
        handed = [e for batch in posted for e in batch]
        assert [e.batch_idx for e in handed if isinstance(e, CheckpointSaved)] == list(range(20))
        assert isinstance(handed[-1], StateChanged)
        assert len(posted) <= 5, [len(b) for b in posted]  # one message per event would be 21


async def test_the_progress_bar_does_not_repaint_itself() -> None:
    """Textual's ProgressBar repaints once a second for an ETA the console never shows: a second
    frame a second, out of step with the screen's tick. Ours draws only when given progress."""

    class Bars(App[None]):
        def compose(self) -> ComposeResult:
            yield QuietProgressBar(total=1000, show_eta=False, id="quiet")

    app = Bars()
    async with app.run_test() as pilot:
        bar = app.query_one("#quiet", QuietProgressBar)
        for done in range(10, 80, 10):  # a job making progress: the bar has a rate, hence an ETA
            bar.update(total=1000, progress=done)
            await pilot.pause(0.3)
        refreshes = _count_refreshes(bar)
        await pilot.pause(1.3)  # past Textual's one-second ETA timer
        assert refreshes == []
        bar.update(progress=410)
        assert bar.percentage == pytest.approx(0.41)


async def test_an_unchanged_border_title_is_not_repainted() -> None:
    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield GatesPanel(id="gates")

    app = One()
    async with app.run_test():
        panel = app.query_one("#gates", GatesPanel)
        set_border_text(panel, subtitle="as of 12:00:00")
        refreshes = _count_refreshes(panel)
        set_border_text(panel, subtitle="as of 12:00:00")
        assert refreshes == []
        set_border_text(panel, subtitle="as of 12:00:01")
        assert refreshes and str(panel.border_subtitle) == "as of 12:00:01"


async def test_lines_are_flushed_no_more_often_than_their_cadence_after_a_full_repaint(tmp_path: Path) -> None:
    """A full repaint (the tick's) flushes the lines too; the flush it overtook must not fire
    later as well, or two chains of flushes run side by side at twice the cadence."""
    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = await _screen(tmp_path, app)
        flushes: list[float] = []
        original = screen.flush_lines

        def counted() -> None:
            flushes.append(time.monotonic())
            original()

        screen.flush_lines = counted  # type: ignore[method-assign]
        started = time.monotonic()
        for i in range(300):
            screen.handle_events(EventsArrived([LogLine(job=JOB, level="INFO", message=f"line {i}")]))
            if i % 50 == 25:
                screen.flush()  # as the once-a-second tick does
            await anyio.sleep(0.004)
        elapsed = time.monotonic() - started
        assert len(flushes) <= elapsed / LINES_EVERY_S + 8, (len(flushes), elapsed)


async def test_the_footer_redraws_only_when_its_keys_change(tmp_path: Path) -> None:
    """Every state change refreshes the bindings; Textual's Footer remounted a widget per key each
    time (~30 ms, and garbage for the full collections), also for PAUSING → PAUSED, which shows
    the same keys. Ours redraws one line, and only when the keys it shows change."""
    app, _session = _watching_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobScreen)
        screen.view.state = JobState.RUNNING
        screen.refresh_bindings()
        await pilot.pause(0.1)
        footer = screen.query_one(KeysFooter)
        assert not footer.children  # one line of text, no widget per key
        redrawn = _count_refreshes(footer)
        for _ in range(3):  # the same keys apply
            screen.refresh_bindings()
            await pilot.pause(0.05)
        assert redrawn == []
        screen.view.state = JobState.DONE  # pause, stop and the live edit no longer apply
        screen.refresh_bindings()
        await pilot.pause(0.1)
        assert redrawn
        enabled = {item.label: item.enabled for item in footer.items}
        assert not enabled["Stop"] and enabled["Quit"]


async def test_a_flood_of_shown_lines_reaches_the_screen_once_per_line_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log widgets take new lines every LINES_EVERY_S: lines arriving in between are handed
    to the screen together, just before that flush, not one message per socket read."""
    app, session = _watching_app(tmp_path)
    async with app.run_test(size=(160, 48)):
        screen = app.screen
        assert isinstance(screen, JobScreen)
        posted = _record_handovers(screen, monkeypatch)
        started = time.monotonic()
        for burst in range(100):  # a socket read every 4 ms, two lines each
            for i in range(2):
                session.bus.publish(LogLine(job=JOB, level="INFO", message=f"line {burst}.{i}"))
            await anyio.sleep(0.004)
        session.bus.publish(StateChanged(job=JOB, state=JobState.PAUSED))
        await screen.wait_for(lambda v: v.state is JobState.PAUSED)
        elapsed = time.monotonic() - started
        assert sum(len(batch) for batch in posted) == 201  # every line, and the state
        reads = 100
        assert len(posted) < reads * 3 / 4, (len(posted), elapsed)  # one message per read would be 100


async def test_the_startup_heap_leaves_full_collections_while_the_app_runs(tmp_path: Path) -> None:
    """Everything built before the first frame is frozen out of the collector's full passes (each
    walked all of it: 30–45 ms pauses under a log flood), and handed back when the app ends."""
    import gc

    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # Textual's and the console's objects, not a handful
        gc.collect(2)
        assert gc.get_freeze_count() == frozen  # a full pass leaves them where they are
    assert gc.get_freeze_count() == 0  # collectable again once the app has gone


async def test_a_single_mutation_poll_is_not_drawn_as_a_full_bar(tmp_path: Path) -> None:
    """Textual draws a sparkline of one value as full-height blocks: the first `pending 0` of a
    run looked like a wall of pending mutations. One value is a flat line, as equal values are."""
    from textual.widgets import Sparkline

    from engine.events import MutationStatus

    app = _app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _screen(tmp_path, app)
        screen.handle_events(EventsArrived([MutationStatus(job=JOB, pending=0)]))
        screen.flush()
        await pilot.pause()
        spark = screen.query_one("#mutations-spark", Sparkline)
        drawn = "".join(strip.text for strip in spark.render_lines(spark.region.reset_offset))
        assert "█" not in drawn and "▁" in drawn


async def test_a_job_that_ended_without_progress_shows_a_still_bar() -> None:
    """A score run with nothing to score ends without a progress report: its bar stopped (an
    indeterminate bar animates at 15 frames a second for as long as the screen is open), and only
    the live settings the job has are listed."""
    from console.tui.model import JobView
    from console.tui.widgets import Markup, ProgressPanel

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield ProgressPanel(id="progress")

    app = Host()
    async with app.run_test(size=(100, 12)) as pilot:
        panel = app.query_one(ProgressPanel)
        view = JobView("score")
        view.live = {"batch_size": 50}
        view.state = JobState.RUNNING
        panel.show(view)
        bar = panel.query_one("#bar", QuietProgressBar)
        assert bar.total is None  # running, nothing reported yet: the "working" animation
        view.state = JobState.DONE
        panel.show(view)
        await pilot.pause()
        assert (bar.total, bar.progress) == (1, 1)
        assert "no progress was reported" in str(panel.query_one("#progress-detail", Markup)._markup)
        checkpoint = str(panel.query_one("#checkpoint-line", Markup)._markup)
        assert "batch size" in checkpoint and "mutation wait" not in checkpoint
