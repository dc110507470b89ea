"""Entry points the commands call: run one job in the console, or open the launcher."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.exit import finish
from engine.errors import OpsError
from engine.runner import Job
from engine.settings import Settings

if TYPE_CHECKING:
    from console.tui.session import JobSession


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

    app = OpsConsoleApp(settings, detach_jobs=True)
    result = app.run()
    if app.aborted is not None:
        return finish(app.aborted)  # a job started from the launcher was aborted: leave at once
    return int(result or 0)


def _remote_session(settings: Settings, name: str) -> JobSession:
    """A session for the running job `name`, seeded with what it says about itself now."""
    import anyio

    from console.tui.remote import live_model_for
    from console.tui.session import JobSession
    from engine.endpoint_client import connect

    async def probe() -> JobSession:
        async with connect(settings.runtime, name) as client:
            snap = client.snapshot
            return JobSession.remote(name, settings.runtime, live_model_for(name, snap.live), snap.state,
                                     settings=settings)

    return anyio.run(probe)


def attach_in_tui(settings: Settings, name: str) -> int:
    """Watch and steer the running job `name` until it ends or the operator detaches."""
    from console.tui.app import OpsConsoleApp

    session = _remote_session(settings, name)
    app = OpsConsoleApp(settings, session=session)
    app.run()
    if session.detached:
        print(f"opsconsole: detached; {name} keeps running (`opsconsole attach {name}` to come back, "
              f"`opsconsole status` to see it)")
        return 0
    outcome = session.final_outcome()
    if outcome is None:
        if session.error is not None:
            raise session.error
        return 0
    return finish(outcome)


def start_and_attach(name: str, argv: list[str], settings: Settings) -> int:
    """Start `opsconsole ARGV` as its own headless process, then attach the console to it.
    A job of that name already running is attached to instead of being refused."""
    import anyio

    from console.detach import JobFinishedEarly, spawn, wait_for_exit, wait_until_serving
    from engine.endpoint_client import running_jobs
    from engine.errors import JobNotRunning

    running = {r.hello.job for r in anyio.run(running_jobs, settings.runtime)}
    if name in running:
        print(f"opsconsole: {name} is already running; attaching to it")
        return attach_in_tui(settings, name)
    started = spawn(argv, name, settings.runtime)
    try:
        wait_until_serving(started, settings.runtime)
        return attach_in_tui(settings, name)
    except (JobFinishedEarly, JobNotRunning):
        # A short job (a dry run on a sample, a score run, a small load) can end before the console
        # attaches: its outcome is its exit code, and it printed what a --no-ui run prints.
        code = wait_for_exit(started)
        return _finished_early(name, code, started.output)


def _finished_early(name: str, code: int, output: Path) -> int:
    from console.detach import tail

    print(f"opsconsole: {name} finished (exit {code}) before the console could attach; what it printed "
          f"({output}):\n{tail(output, 16_000)}")
    return code
