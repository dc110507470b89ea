"""Run an opsconsole command on a real terminal (a tmux pane), as an operator types it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")


def run_on_terminal(args: list[str], env: dict[str, str], done: Path, timeout_s: float = 120) -> tuple[str, str]:
    """(what `echo $?` printed, the pane's text) after `opsconsole ARGS` ends on a 160x48 terminal.
    When the console shows a finished job, `q` is pressed, as the operator would."""
    session = f"ops-{os.getpid()}-{time.monotonic_ns()}"
    # A running tmux server starts commands with its own environment (whatever it had when it was
    # started): the command gets a clean one, with only the settings given here.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL") if k in os.environ}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**base, **env, "PYTHONPATH": str(REPO)}.items())
    argv = " ".join(shlex.quote(a) for a in args)
    cmd = (f"cd {shlex.quote(str(REPO))} && env -i TERM=xterm-256color {exports} {shlex.quote(sys.executable)} -m console {argv}; "
           f"echo EXIT=$? > {shlex.quote(str(done))}; sleep 60")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if "finished — press q" in pane:  # the console holds a finished job's screen until one leaves
                subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session, "-S", "-300"], capture_output=True,
                                text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    return (done.read_text().strip() if done.exists() else "(still running)"), screen
