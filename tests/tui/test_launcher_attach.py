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


@pytest.mark.anyio
async def test_a_job_that_ends_before_the_console_attaches_is_reported_as_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample dry run ends in a fraction of a second, often before its socket is polled. That
    was reported as "did not start", with all its output in an error toast. It finished: the
    console says so (or, when it caught the job still running, shows its screen to the end), and
    the launcher shows the summary it left."""
    rt = tmp_path / "rt"
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(rt))  # the detached job's runtime too
    app = OpsConsoleApp(load_settings(runtime_dir=rt), detach_jobs=True)
    told: list[tuple[str, str, str]] = []
    original = app.notify

    def notify(message: str, *, title: str = "", severity: str = "information", **kw: object) -> None:
        told.append((title, severity, message))
        original(message, title=title, severity=severity, **kw)  # type: ignore[arg-type]

    def attached_and_done() -> bool:
        return isinstance(app.screen, JobScreen) and app.screen.view.state.final

    app.notify = notify  # type: ignore[method-assign]
    async with app.run_test(size=(140, 40)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        entries = launcher.query_one("#entries")
        entries.highlighted = entries.get_option_index("pipeline-sample")  # type: ignore[attr-defined]
        await pilot.press("enter")
        for _ in range(600):
            if attached_and_done() or any(t != "" for t, _, _ in told):
                break
            await pilot.pause(0.05)
        titled = [(t, s) for t, s, _ in told if t != ""]
        if attached_and_done():  # caught it running: its own screen says how it ended
            assert titled == [] and app.screen.view.state.value == "done"  # type: ignore[attr-defined]
            await pilot.press("q")
        else:
            assert titled == [("pipeline finished", "information")], told
            assert "exit 0" in told[-1][2]
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is launcher
        assert "completed_with_errors" in str(launcher.query_one("#summary-info").render())
