"""Consoles are clients: a headless Step D in its own process, watched and steered through its
socket by a console (Pilot) and by shell commands; consoles that detach or die leave it running,
and its result equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.remote import live_model_for
from console.tui.session import JobSession
from engine.events import JobState
from engine.settings import load_settings
from tests.conftest import OPSCONSOLE, REPO
from tests.durability.stepd_procs import Site, finish, fresh_pg_database
from tests.endpoint.helpers import wait_until

JOB = "full-enrichment"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture
def stepd(tmp_path: Path, pg_server: str) -> Any:
    """Demo data in its own site, then a slow headless Step D (--full, one pair per batch)."""
    site = Site(tmp_path, fresh_pg_database(pg_server))
    out = site.run("demo", "--scale", "small", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stderr[-3000:]
    proc = site.spawn("enrich", "--step", "D,E", "--full", "--batch-size", "1", "--no-ui", "--log-format", "plain")
    sock = site.runtime / f"{JOB}.sock"
    # The demo's own Step D left a done checkpoint: wait for this run's first one.
    wait_until(lambda: sock.exists() and (site.state() or {}).get("status") == "running" and site.pairs_done() > 0,
               proc, "Step D's first checkpoint")
    yield site, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _settings(site: Site, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in site.env().items():
        if key.startswith(("OPSCONSOLE_", "CLICKHOUSE_", "POSTGRES_")):
            monkeypatch.setenv(key, value)
    return load_settings()


def _remote_session(settings: Any, name: str = JOB) -> JobSession:
    return JobSession.remote(name, settings.runtime, live_model_for(name, {}), JobState.RUNNING, settings=settings)


def _log(site: Site) -> str:
    return (site.runtime / f"{JOB}.console.log").read_text()


@pytest.mark.anyio
async def test_a_console_attaches_pauses_resumes_and_detaches(stepd: Any, monkeypatch: pytest.MonkeyPatch,
                                                               reference_small: dict[str, Any]) -> None:
    site, proc = stepd
    settings = _settings(site, monkeypatch)
    session = _remote_session(settings)
    app = OpsConsoleApp(settings, session=session, gates_interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        # The job's progress arrives through the socket (snapshot, then the stream).
        await screen.wait_for(lambda v: v.steps.get("D") is not None and v.steps["D"].done > 0)  # type: ignore[attr-defined]
        assert screen.view.shows("gates")  # type: ignore[attr-defined]  # the job declared its panels
        await pilot.press("p")
        await screen.wait_for(lambda v: v.state is JobState.PAUSED)  # type: ignore[attr-defined]
        held = site.pairs_done()
        assert "paused" in _log(site)
        assert site.state()["status"] == "running"  # type: ignore[index]  # a hold, not an end
        # An edit through the socket is validated and applied by the job.
        session.control.update_live({"batch_size": 2})
        await screen.wait_for(lambda v: v.live.get("batch_size") == 2)  # type: ignore[attr-defined]
        assert site.pairs_done() == held  # nothing moved while paused
        await pilot.press("r")
        await screen.wait_for(lambda v: v.state is JobState.RUNNING)  # type: ignore[attr-defined]
        wait_until(lambda: site.pairs_done() > held, proc, "progress after resume")
        await pilot.press("d")
        await pilot.pause()
    assert session.detached
    assert proc.poll() is None  # detaching left it running
    out, err = finish(proc, timeout=300)
    assert proc.returncode == 0, err[-3000:]
    sums = site.checksums()
    assert sums["pnl"] == reference_small["pnl"] and sums["outcomes"] == reference_small["outcomes"]


# A console as a terminal starts it: SIGHUP at its default (a suite run under nohup would
# otherwise hand it an ignored SIGHUP, and the closed-terminal case would not be tested).
CONSOLE = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from console.tui.app import OpsConsoleApp
from console.tui.launch import _remote_session
from engine.settings import load_settings
settings = load_settings()
app = OpsConsoleApp(settings, session=_remote_session(settings, sys.argv[1]), gates_interval=None)
app.run(headless=True)
"""


def test_a_killed_console_leaves_the_job_running_and_its_result_whole(stepd: Any,
                                                                       reference_small: dict[str, Any]) -> None:
    site, proc = stepd
    consoles = [subprocess.Popen([sys.executable, "-c", CONSOLE, JOB], env=site.env(), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    # Both consoles are connected (the status command counts them as clients of the job's socket
    # only indirectly: wait until each has been running a moment, then kill one hard).
    time.sleep(2)
    assert all(c.poll() is None for c in consoles), [c.stderr.read() for c in consoles if c.stderr]  # type: ignore[union-attr]
    consoles[0].send_signal(signal.SIGKILL)
    consoles[1].send_signal(signal.SIGHUP)
    for c in consoles:
        c.wait(timeout=60)
    out, err = finish(proc, timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "END     full-enrichment state=done" in _log(site)
    sums = site.checksums()
    assert sums["pnl"] == reference_small["pnl"] and sums["outcomes"] == reference_small["outcomes"]


def test_gates_from_a_second_shell_are_computed_by_the_running_job(stepd: Any) -> None:
    site, proc = stepd
    out = site.run("gates", "--json", timeout=120)
    assert out.returncode in (0, 3), out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert {g["name"] for g in doc["gates"]} >= {"markets_missing_dim", "pnl_nulls"}
    assert f"computed by the running job {JOB}" in out.stderr
    listed = site.run("mutations", "--json", timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "pending" in json.loads(listed.stdout)
    site.run("stop", JOB, timeout=120)
    finish(proc, timeout=300)


def test_attach_with_no_job_running_says_so(tmp_path: Path) -> None:
    """Nothing answers on a socket: `attach` says so, without a traceback."""
    rt = tmp_path / "rt"
    out = subprocess.run([*OPSCONSOLE, "attach", "--no-ui"], env={**os.environ, "OPSCONSOLE_RUNTIME_DIR": str(rt)},
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no job is running" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")
def test_a_job_started_from_the_console_survives_its_terminal_closing(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    session = f"ops-{os.getpid()}"
    cmd = (f"cd {REPO} && OPSCONSOLE_RUNTIME_DIR={rt} PYTHONPATH={REPO} {sys.executable} -m console selftest "
           f"--units 120 --unit-seconds 0.05")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd], check=True)
    try:
        sock = rt / "selftest.sock"
        wait_until(lambda: sock.exists(), None, "the detached job's socket")
        screen = ""

        def attached() -> bool:
            nonlocal screen
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            return "selftest" in screen and "RUNNING" in screen

        wait_until(attached, None, "the console attached to the job")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)  # the terminal closes
    log = rt / "selftest.console.log"
    wait_until(lambda: "END     selftest state=done" in log.read_text(), None, "the job to finish", timeout=120)
    assert "exit=0" in log.read_text().splitlines()[-1]
