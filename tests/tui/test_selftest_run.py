"""The real app running the real selftest job through engine.runner: pause, checkpoint, edit,
resume, finish, quit; stop and quit confirmations; SIGTERM."""

from __future__ import annotations

import json
import os
import signal

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.modals import ConfirmScreen, EditLiveScreen
from console.tui.widgets import StatusHeader
from engine.events import JobState
from engine.jobs.selftest import SelftestJob
from engine.settings import load_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def light_settings(tmp_path):
    # The selftest job needs no store; the runtime folder is the test's own.
    return load_settings(runtime_dir=tmp_path / "runtime")


def header_text(app: OpsConsoleApp) -> str:
    return str(app.screen.query_one("#header", StatusHeader).render())


async def test_pause_checkpoint_edit_resume_finish(light_settings) -> None:
    job = SelftestJob(units=60, unit_seconds=0.01)
    app = OpsConsoleApp(light_settings, job=job, gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await screen.wait_for(lambda v: "selftest" in v.steps and v.steps["selftest"].done >= 3)

        await pilot.press("p")
        # The header says PAUSING (or already PAUSED) as soon as the key is handled.
        assert any(s in header_text(app) for s in ("PAUSING", "PAUSED"))
        await screen.wait_for(lambda v: v.state is JobState.PAUSED)
        await pilot.pause()
        assert "PAUSED" in header_text(app)
        state = json.loads((light_settings.runtime / "selftest.state.json").read_text())
        done_at_pause = state["done"]
        assert done_at_pause == screen.view.steps["selftest"].done
        assert screen.view.checkpoint is not None and screen.view.checkpoint.cursor == {"done": done_at_pause}

        # Edit a live setting through the modal; it applies through Control.update_live.
        await pilot.press("e")
        assert isinstance(app.screen, EditLiveScreen)
        field = app.screen.query_one("#field-unit_seconds")
        field.value = "0.002"
        await pilot.press("enter")
        assert isinstance(app.screen, JobScreen)
        assert job is not None and screen.session.control.live.unit_seconds == 0.002
        await pilot.pause()
        assert screen.view.live["unit_seconds"] == 0.002

        # Still paused: nothing moved while we edited.
        assert json.loads((light_settings.runtime / "selftest.state.json").read_text())["done"] == done_at_pause

        await pilot.press("r")
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert "DONE" in header_text(app)
        assert screen.session.outcome is not None and screen.session.outcome.state is JobState.DONE
        assert json.loads((light_settings.runtime / "selftest.state.json").read_text())["done"] == 60
        await pilot.press("q")  # the job is done: no question asked
    assert app.return_code == 0


async def test_invalid_live_setting_is_refused_and_nothing_changes(light_settings) -> None:
    app = OpsConsoleApp(light_settings, job=SelftestJob(units=10_000, unit_seconds=0.05), gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: v.state is JobState.RUNNING)
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, EditLiveScreen)
        modal.query_one("#field-unit_seconds").value = "-5"
        await pilot.press("enter")
        # The dialog stays open and names the field and the problem.
        assert app.screen is modal
        error = str(modal.query_one("#edit-error").render())
        assert "unit_seconds" in error and "greater than or equal to 0" in error
        assert screen.session.control.live.unit_seconds == 0.05
        await pilot.press("escape")
        assert isinstance(app.screen, JobScreen)
        screen.session.control.stop("test over")
        await screen.wait_for(lambda v: v.state.final)


async def test_quit_while_running_asks_then_stops_gracefully(light_settings) -> None:
    app = OpsConsoleApp(light_settings, job=SelftestJob(units=10_000, unit_seconds=0.05), gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: "selftest" in v.steps and v.steps["selftest"].done >= 2)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # changed my mind: the job keeps running
        assert isinstance(app.screen, JobScreen)
        assert screen.session.control.state is JobState.RUNNING
        await pilot.press("q")
        await pilot.press("y")
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
    # The app left on its own once the job had stopped at a unit boundary.
    session = app.session
    assert session is not None and session.outcome is not None
    assert session.outcome.state is JobState.STOPPED
    assert app.return_code == 0
    done = json.loads((light_settings.runtime / "selftest.state.json").read_text())["done"]
    assert 2 <= done < 10_000
    assert not (light_settings.runtime / "selftest.pid").exists()  # runner cleaned up


async def test_stop_key_confirms_first(light_settings) -> None:
    app = OpsConsoleApp(light_settings, job=SelftestJob(units=10_000, unit_seconds=0.05), gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: v.state is JobState.RUNNING)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert screen.session.control.state is JobState.RUNNING
        await pilot.press("s", "y")
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert screen.session.outcome is not None and screen.session.outcome.state is JobState.STOPPED
        assert "STOPPED" in header_text(app)


async def test_sigterm_stops_gracefully_and_exits(light_settings) -> None:
    app = OpsConsoleApp(light_settings, job=SelftestJob(units=10_000, unit_seconds=0.05), gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: "selftest" in v.steps and v.steps["selftest"].done >= 2)
        os.kill(os.getpid(), signal.SIGTERM)  # the console's loop handler turns it into Control.stop
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
    assert app.session is not None and app.session.outcome is not None
    assert app.session.outcome.state is JobState.STOPPED
    assert "SIGTERM" in app.session.outcome.error
    assert app.return_code == 0


async def test_a_held_lock_is_shown_not_raised(light_settings) -> None:
    from engine.runner import job_lock

    lock = job_lock(light_settings, "selftest")
    lock.acquire()
    try:
        app = OpsConsoleApp(light_settings, job=SelftestJob(units=5, unit_seconds=0), gates_interval=None)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await screen.wait_for(lambda v: v.state.final)
            await pilot.pause()
            assert "FAILED" in header_text(app)
            assert screen.session.error is not None and "selftest" in str(screen.session.error)
            await pilot.press("q")
        assert app.return_code == int(screen.session.error.exit_code) == 75
    finally:
        lock.release()


async def test_second_sigterm_aborts_and_releases_the_lock(light_settings) -> None:
    from engine.errors import ExitCode

    app = OpsConsoleApp(light_settings, job=SelftestJob(units=10_000, unit_seconds=0.05), gates_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: "selftest" in v.steps and v.steps["selftest"].done >= 1)
        app.on_sigterm()  # what the loop's SIGTERM handler calls
        assert screen.session.control.stop_requested
        app.on_sigterm()  # the second one does not wait for the unit to finish
        await pilot.pause()
    assert app.session is not None and app.session.aborted
    assert app.return_code == int(ExitCode.ABORTED)
    # The runner's cleanup ran: no pid file, and the lock can be taken again.
    assert not (light_settings.runtime / "selftest.pid").exists()
    from engine.runner import job_lock

    lock = job_lock(light_settings, "selftest")
    lock.acquire()
    lock.release()
    done = json.loads((light_settings.runtime / "selftest.state.json").read_text())["done"]
    assert 1 <= done < 10_000
