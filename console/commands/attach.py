"""`opsconsole attach [JOB]`: open the console on a job running in another process.

Without a terminal (or with `--no-ui`) it prints the job's stream like the headless job would,
from the snapshot on; Ctrl-C leaves the job running.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from console.commands import add_job_args, settings_from, wants_ui
from engine.endpoint_client import RunningJob, connect, running_jobs
from engine.errors import ExitCode, JobNotRunning
from engine.settings import Settings


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("attach", help="watch and steer a running job (the only one, or JOB)")
    p.add_argument("job", nargs="?", help="job name, e.g. full-enrichment, pipeline, selftest (see `opsconsole status`)")
    add_job_args(p)
    p.set_defaults(func=run)


def choose(running: list[RunningJob], wanted: str | None) -> str:
    """The job to attach to, or a JobNotRunning naming what is running."""
    names = [r.hello.job for r in running]
    if wanted is not None:
        if wanted in names:
            return wanted
        listed = ", ".join(names) if names else "none"
        raise JobNotRunning(f"no job '{wanted}' is running (running: {listed})",
                            hint="`opsconsole status` shows the running jobs and the last outcome of the others")
    if len(names) == 1:
        return names[0]
    if not names:
        raise JobNotRunning("no job is running", hint="`opsconsole status` shows the last outcome of each job")
    raise JobNotRunning(f"{len(names)} jobs are running ({', '.join(names)}): name one",
                        hint="e.g. `opsconsole attach " + names[0] + "`")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    name = choose(anyio.run(running_jobs, settings.runtime), args.job)
    if wants_ui(args):
        from console.tui.launch import attach_in_tui

        return attach_in_tui(settings, name)
    return stream(settings, name, args.log_format, args.verbose)


def stream(settings: Settings, name: str, log_format: str, verbose: bool = False) -> int:
    """Print the job's events until it ends (exit 0) or the operator leaves (Ctrl-C: exit 0, the
    job runs on). The lines are the headless job's own."""
    from console.headless import make_renderer
    from console.tui.remote import snapshot_events

    renderer = make_renderer(log_format, sys.stdout, verbose=verbose)

    async def follow() -> int:
        async with connect(settings.runtime, name) as client:
            for event in snapshot_events(client.snapshot):
                renderer.handle(event)
            async for event in client.events():
                renderer.handle(event)
            print(f"opsconsole: {name}: {client.closed_reason or 'connection closed'}", file=sys.stderr)
        return int(ExitCode.OK)

    try:
        return anyio.run(follow)
    except KeyboardInterrupt:
        print(f"opsconsole: left {name} running", file=sys.stderr)
        return int(ExitCode.OK)
    finally:
        renderer.close()
