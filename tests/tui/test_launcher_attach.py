"""The launcher's Running list attaches on enter, as its rows say.

Before, Enter (a priority binding of the launcher) started the highlighted Start entry whichever
list had focus: on the Running list it opened "Start Demo?" (which replaces the tables a running
Step D reads) instead of attaching. Found by the browser test (tests/browser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.launcher import LauncherScreen
from engine.settings import load_settings
from tests.endpoint.helpers import await_until, start_selftest, wait_for_socket


@pytest.mark.anyio
async def test_enter_on_the_running_list_attaches_to_that_job(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    job = start_selftest(rt, 100_000, 0.01)
    try:
        wait_for_socket(rt, job)
        app = OpsConsoleApp(load_settings(runtime_dir=rt), detach_jobs=True)
        async with app.run_test(size=(140, 40)) as pilot:
            launcher = app.screen
            assert isinstance(launcher, LauncherScreen)
            await await_until(lambda: launcher.running_names == ["selftest"], job, "the launcher to list the job")
            await pilot.press("shift+tab")  # from the Start list up to the Running list
            assert app.focused is not None and app.focused.id == "running"
            await pilot.press("enter")
            await await_until(lambda: app.screen is not launcher, job, "another screen")
            screen = app.screen
            assert isinstance(screen, JobScreen), type(screen).__name__  # not "Start Demo?"
            assert screen.session.name == "selftest"
            await pilot.press("d")  # detach: the job is not this console's to stop
            await pilot.pause()
        assert job.poll() is None  # still running
    finally:
        job.kill()
        job.wait()
