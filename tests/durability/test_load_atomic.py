"""`data load trades` is all-or-nothing under kill -9 and SIGTERM, on the real chDB.

Each phase (reading, validating, staging, building the move, just before and just after the attach)
is SIGKILLed at a named crash point; a real kill -9 also lands in the middle of the move's
statements, found from outside by the move table appearing. After every kill trades_raw holds none
or all of the file, the orphan staging tables are there, and the next load drops them and loads the
file exactly once. SIGTERM stops the load with exit 0 and nothing loaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.durability.load_procs import csv_to_jsonl, inspect, load_cmd, load_env, metadata_dir, write_trades

ROWS = 50_000  # three staging chunks of 20,000 on the Python reader's path
#: (crash point, whether the file's rows are visible after the kill)
PHASES = [
    ("load_reading", False),
    ("load_staged_chunk", False),
    ("load_staged_chunk:2", False),
    ("load_validated", False),
    ("load_move_built", False),
    ("load_before_attach", False),
    ("load_after_attach", True),
]


@pytest.fixture(scope="module", params=["csv", "jsonl"])
def trades_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSV (read and checked by ClickHouse) and JSON lines (by the Python reader): both paths."""
    path = write_trades(tmp_path_factory.mktemp("load-data") / "trades.csv", ROWS)
    return path if request.param == "csv" else csv_to_jsonl(path)


def _run(root: Path, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(load_cmd(path), env=load_env(root, **env), cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _reload_once(root: Path, path: Path) -> None:
    """The next start drops the dead load's staging and loads the file once; again adds nothing."""
    out = _run(root, path)
    assert out.returncode == 0, out.stdout + out.stderr
    state = inspect(root)
    assert state == {"count": ROWS, "distinct": ROWS, "staging": []}, state
    again = _run(root, path)
    assert again.returncode == 0 and "inserted 0" in again.stdout, again.stdout + again.stderr
    assert inspect(root)["count"] == ROWS


@pytest.mark.parametrize(("point", "visible"), PHASES, ids=[p for p, _ in PHASES])
def test_kill_9_at_each_phase_leaves_none_or_all(point: str, visible: bool, trades_file: Path, tmp_path: Path) -> None:
    if point == "load_staged_chunk:2" and trades_file.suffix == ".csv":
        pytest.skip("ClickHouse stages a plain CSV in one statement: there is no second chunk")
    out = _run(tmp_path, trades_file, OPSCONSOLE_CRASH_AT=point)
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    state = inspect(tmp_path)
    assert state["count"] == (ROWS if visible else 0), state
    assert state["staging"], "a killed load leaves its staging behind (until the next start)"
    _reload_once(tmp_path, trades_file)


def _wait_for_table(root: Path, suffix: str, proc: subprocess.Popen[str]) -> bool:
    """Until a table whose name ends with `suffix` exists (True) or the load ended (False)."""
    meta = metadata_dir(root)
    while proc.poll() is None:
        if meta.is_dir() and any(p.name.endswith(suffix) for p in meta.iterdir()):
            return True
        time.sleep(0.002)
    return False


def _start(root: Path, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(load_cmd(path), env=load_env(root), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trades(tmp_path_factory.mktemp("load-big") / "trades.csv", ROWS * 4)


def _preload(root: Path) -> None:
    """Some of the big file's trades loaded already: the load then copies its new rows through a
    `_move` table (a first load of all-new rows attaches its staging table itself)."""
    out = _run(root, write_trades(root / "first.csv", 1000))
    assert out.returncode == 0, out.stdout + out.stderr


def test_kill_9_in_the_middle_of_the_move(big_file: Path, tmp_path: Path) -> None:
    _preload(tmp_path)
    proc = _start(tmp_path, big_file)
    try:
        assert _wait_for_table(tmp_path, "_move.sql", proc), proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = inspect(tmp_path)
    assert state["count"] in (1000, ROWS * 4) and state["count"] == state["distinct"], state
    out = _run(tmp_path, big_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert inspect(tmp_path) == {"count": ROWS * 4, "distinct": ROWS * 4, "staging": []}


@pytest.mark.parametrize("phase", ["staging", "move"])
def test_sigterm_stops_cleanly_with_exit_0(phase: str, big_file: Path, tmp_path: Path) -> None:
    if phase == "move":
        _preload(tmp_path)
    proc = _start(tmp_path, big_file)
    suffix = "_move.sql" if phase == "move" else ".sql"
    meta = metadata_dir(tmp_path)
    try:
        while proc.poll() is None:  # the staging (or move) table exists: the load is in that phase
            if meta.is_dir() and any(p.name.startswith("_load_") and p.name.endswith(suffix) for p in meta.iterdir()):
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    state = inspect(tmp_path)
    assert state["staging"] == [], state
    before = 1000 if phase == "move" else 0
    if "nothing was loaded" in stdout:
        assert state["count"] == before, state
    else:  # the signal came after the last point where a stop leaves the table untouched
        assert f"inserted {ROWS * 4 - before}" in stdout and state["count"] == ROWS * 4, stdout + stderr
    if phase == "staging":
        assert "SIGTERM received" in stderr and "nothing was loaded" in stdout, stdout + stderr


def test_readers_never_see_part_of_a_load(ch, tmp_path: Path) -> None:
    # In-process, a reader's statements interleave with the load's own (chDB runs one at a time),
    # so a move made of several statements would show it a count between none and all.
    import threading

    from engine.enrichment.loaders import load_file

    path = write_trades(tmp_path / "trades.csv", ROWS)
    seen: set[int] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.add(int(ch.scalar("SELECT count() FROM $db.trades_raw") or 0))
            except Exception:
                pass  # before the loader made the table
            time.sleep(0.001)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        report = load_file(ch, "trades", path)
    finally:
        done.set()
        watcher.join()
    assert report.inserted == ROWS
    seen.add(int(ch.scalar("SELECT count() FROM $db.trades_raw")))
    assert seen <= {0, ROWS}, sorted(seen)
    assert ROWS in seen
