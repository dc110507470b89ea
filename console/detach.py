"""Start a job as its own process, so it outlives the console that started it.

The console never runs a job inside itself from the command line: it starts the same command with
`--no-ui` in a new session (no controlling terminal, so a closed terminal's SIGHUP never reaches
it), waits until the job answers on `runtime/<job>.sock`, and attaches to it like any other client.
The job's own log goes to `runtime/<job>.console.log` as always; what it prints before its log is
open (a bad argument, a held lock) goes to `runtime/<job>.detached.out`, and is shown to the
operator when the job ends before it ever answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.endpoint import socket_path
from engine.errors import ExitCode, OpsError
from engine.files import ensure_private_dir

#: set in a detached job's environment (also tells it to ignore SIGHUP, see console.cli)
DETACHED_ENV = "OPSCONSOLE_DETACHED"
START_TIMEOUT_S = 60.0


@dataclass
class Started:
    pid: int
    job: str
    output: Path


class JobDidNotStart(OpsError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code) if exit_code in ExitCode._value2member_map_ else ExitCode.FAILED


class JobFinishedEarly(OpsError):
    """The job ran to its end before it answered on its socket (a dry run on a sample takes a
    fraction of a second): its outcome is its exit code and what it printed, not a failure to start."""

    def __init__(self, started: Started, code: int) -> None:
        super().__init__(f"{started.job} finished (exit {code}) before the console could attach; "
                         f"what it printed is in {started.output}")
        self.started = started
        self.code = code


def _ran(runtime: Path, started: Started) -> bool:
    """Whether the process we started ran as the job: its log has a START with its pid, then an END."""
    from console.commands.status import last_outcome

    record = last_outcome(runtime, started.job)
    return record.get("pid") == started.pid and record["exit"] is not None


def job_command(argv: Sequence[str]) -> list[str]:
    """The headless command line for `opsconsole ARGV`, run by this same interpreter."""
    args = [a for a in argv if a != "--no-ui"]
    return [sys.executable, "-m", "console", *args, "--no-ui", "--log-format", "plain"]


def _open_output(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags, 0o600)


def spawn(argv: Sequence[str], job: str, runtime: Path) -> Started:
    """Start `opsconsole ARGV --no-ui` detached; returns at once (see `wait_until_serving`)."""
    ensure_private_dir(runtime, 0o711)
    out_path = runtime / f"{job}.detached.out"
    fd = _open_output(out_path)
    try:
        proc = subprocess.Popen(
            job_command(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, close_fds=True,
            start_new_session=True, env={**os.environ, DETACHED_ENV: "1"},
        )
    finally:
        os.close(fd)
    # Kept so `exited` can poll it; when the console quits first, init adopts the job.
    _children[proc.pid] = proc
    return Started(proc.pid, job, out_path)


_children: dict[int, subprocess.Popen[bytes]] = {}


def exited(pid: int) -> int | None:
    """The exit code of a child we started, once it has ended; None while it runs."""
    proc = _children.get(pid)
    if proc is None:
        return None
    return proc.poll()


def wait_for_exit(started: Started) -> int:
    """The exit code of a job we started, waiting for it to end."""
    proc = _children.get(started.pid)
    return 0 if proc is None else proc.wait()


def tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def wait_until_serving(started: Started, runtime: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Block until the job answers on its socket. When it ended first: JobFinishedEarly if it ran
    (a short job), else JobDidNotStart with its own words (a bad argument, a held lock)."""
    import anyio

    from engine.endpoint_client import job_answers

    deadline = time.monotonic() + timeout_s
    sock = socket_path(runtime, started.job)
    while True:
        code = exited(started.pid)
        if code is not None:
            if _ran(runtime, started):
                raise JobFinishedEarly(started, code)
            said = tail(started.output) or f"(nothing printed; see {started.output})"
            raise JobDidNotStart(f"the job ended before it started serving (exit {code}):\n{said}", code)
        if sock.exists() and anyio.run(job_answers, runtime, started.job):
            return
        if time.monotonic() > deadline:
            raise OpsError(f"the job (pid {started.pid}) did not open {sock} within {timeout_s:.0f} s; "
                           f"see {started.output} and runtime/{started.job}.console.log")
        time.sleep(0.05)
