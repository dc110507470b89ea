"""Real job processes for the endpoint tests: `opsconsole selftest --no-ui` in a temp runtime dir."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import OPSCONSOLE, REPO, subprocess_env

WAIT = 60.0  # generous: the machine is shared; nothing here asserts on time


def start_selftest(rt: Path, units: int = 100_000, unit_seconds: float = 0.01, *extra: str) -> subprocess.Popen[str]:
    """The job's stdout and stderr go to files, not pipes: a pipe nobody reads would fill up and
    block the job's own renderer (and with it the job), which is not what these tests are about."""
    rt.parent.mkdir(parents=True, exist_ok=True)
    n = len(list(rt.parent.glob("job-*.out")))
    out, err = rt.parent / f"job-{n}.out", rt.parent / f"job-{n}.err"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [*OPSCONSOLE, "selftest", "--units", str(units), "--unit-seconds", str(unit_seconds), "--no-ui",
             "--log-format", "plain", *extra],
            env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO, stdout=fo, stderr=fe, text=True,
        )
    proc.output_paths = (out, err)  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """(stdout, stderr) of a job started by start_selftest, so far."""
    out, err = proc.output_paths  # type: ignore[attr-defined]
    return out.read_text(), err.read_text()


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen[str] | None = None, what: str = "condition",
               timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"job exited ({proc.returncode}) while waiting for {what}: {output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def wait_for_socket(rt: Path, proc: subprocess.Popen[str], job: str = "selftest") -> Path:
    sock = rt / f"{job}.sock"
    log = rt / f"{job}.console.log"
    # The socket exists once it is bound; "running" in the log means the job's task started too.
    wait_until(lambda: sock.exists() and log.exists() and "STATE   selftest running" in log.read_text(), proc,
               "the job socket")
    return sock


def units_done(rt: Path) -> int:
    try:
        return int(json.loads((rt / "selftest.state.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def log_text(rt: Path, job: str = "selftest") -> str:
    path = rt / f"{job}.console.log"
    return path.read_text() if path.exists() else ""


def opsconsole(rt: Path, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPSCONSOLE, *args], env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


async def await_until(predicate: Callable[[], bool], proc: subprocess.Popen[str] | None = None,
                      what: str = "condition", timeout: float = WAIT) -> None:
    """wait_until for async tests: the test's own clients keep reading while it waits."""
    import anyio

    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"job exited ({proc.returncode}) while waiting for {what}: {output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await anyio.sleep(0.02)
