"""Signals and locks on real processes: SIGTERM = graceful stop (exit 0), second signal = abort,
second runner refused, lock freed when the holder is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import OPSCONSOLE, REPO, subprocess_env


def _start(rt: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*OPSCONSOLE, "selftest", "--units", "100000", "--unit-seconds", "0.01", "--no-ui", "--log-format", "plain", *extra],
        env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_units(rt: Path, n: int, proc: subprocess.Popen[str], timeout: float = 30) -> int:
    state = rt / "selftest.state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists():
            try:
                done = json.loads(state.read_text())["done"]
            except (ValueError, KeyError):
                done = 0
            if done >= n:
                return done
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("job made no progress")


def test_sigterm_stops_gracefully_with_exit_0_and_resume_continues(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = _start(rt)
    _wait_for_units(rt, 5, proc)
    assert (rt / "selftest.pid").read_text().strip() == str(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SIGTERM received" in out and "selftest stopped" in out
    assert "Traceback" not in err
    done = json.loads((rt / "selftest.state.json").read_text())["done"]
    assert 5 <= done < 100000
    assert not (rt / "selftest.pid").exists()

    resumed = subprocess.run(
        [*OPSCONSOLE, "selftest", "--units", str(done + 3), "--unit-seconds", "0", "--resume", "--no-ui", "--log-format", "plain"],
        env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after unit {done}" in resumed.stdout
    assert json.loads((rt / "selftest.state.json").read_text())["done"] == done + 3


def test_second_signal_aborts_at_once_with_130(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = _start(rt, "--unit-seconds", "5")  # long units: a graceful stop would take seconds
    deadline = time.monotonic() + 30
    while "running" not in (rt / "selftest.console.log").read_text() if (rt / "selftest.console.log").exists() else True:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, (out, err)
    assert "aborting now" in out
    assert "Traceback" not in err


def test_second_runner_is_refused_and_lock_survives_sigkill_of_holder(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    holder = _start(rt)
    try:
        _wait_for_units(rt, 1, holder)
        second = subprocess.run(
            [*OPSCONSOLE, "selftest", "--units", "1", "--no-ui"],
            env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO, capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 75
        assert f"job 'selftest' is in use by another process (pid {holder.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    third = subprocess.run(
        [*OPSCONSOLE, "selftest", "--units", "1", "--unit-seconds", "0", "--no-ui"],
        env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(rt)), cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert third.returncode == 0, third.stderr


def test_json_log_format_is_one_object_per_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [*OPSCONSOLE, "selftest", "--units", "3", "--unit-seconds", "0", "--no-ui", "--log-format", "json"],
        env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt")), cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0
    records = [json.loads(line) for line in out.stdout.splitlines()]
    # The job says what it is first (its declared panels: none beyond progress for the selftest).
    assert records[0] == {**records[0], "type": "JobStarted", "job": "selftest", "panels": []}
    assert records[1] == {**records[1], "type": "StateChanged", "state": "running"}
    assert records[-1]["type"] == "StateChanged" and records[-1]["state"] == "done"
    assert any(r["type"] == "CheckpointSaved" for r in records)
