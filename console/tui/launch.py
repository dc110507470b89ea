"""Entry points the commands call: run one job in the console, or open the launcher."""

from __future__ import annotations

from typing import Any

from console.exit import finish
from engine.errors import OpsError
from engine.runner import Job
from engine.settings import Settings


def run_job_in_tui(job: Job, settings: Settings, resources: dict[str, Any] | None = None) -> int:
    """Run `job` in-process under the console; returns the exit code the headless path would."""
    from console.tui.app import OpsConsoleApp

    app = OpsConsoleApp(settings, job=job, resources=resources)
    app.run()
    session = app.session
    assert session is not None
    if session.error is not None:
        raise session.error  # e.g. LockHeld: the CLI prints it and exits with its code
    outcome = session.final_outcome()
    if outcome is None:
        raise OpsError("the console closed before the job finished")
    return finish(outcome)


def open_launcher(settings: Settings) -> int:
    from console.tui.app import OpsConsoleApp

    app = OpsConsoleApp(settings)
    result = app.run()
    if app.aborted is not None:
        return finish(app.aborted)  # a job started from the launcher was aborted: leave at once
    return int(result or 0)
