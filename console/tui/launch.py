"""Entry points the commands call: run one job in the console, or open the launcher."""

from __future__ import annotations

from typing import Any

from engine.errors import OpsError
from engine.runner import Job
from engine.settings import Settings


def run_job_in_tui(job: Job, settings: Settings, resources: dict[str, Any] | None = None) -> int:
    """Run `job` in-process under the console; returns the exit code the headless path would."""
    from console.commands import finish
    from console.tui.app import OpsConsoleApp

    app = OpsConsoleApp(settings, job=job, resources=resources)
    app.run()
    session = app.session
    assert session is not None
    if session.error is not None:
        raise session.error  # e.g. LockHeld: the CLI prints it and exits with its code
    if session.outcome is None:
        if session.aborted:
            from engine.errors import ExitCode

            import os
            import sys

            sys.stdout.flush()
            os._exit(int(ExitCode.ABORTED))
        raise OpsError("the console closed before the job finished")
    return finish(session.outcome)


def open_launcher(settings: Settings) -> int:
    from console.tui.app import OpsConsoleApp

    app = OpsConsoleApp(settings)
    result = app.run()
    return int(result or 0)
