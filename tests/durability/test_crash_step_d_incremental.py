"""Crash equivalence for an incremental Step D: after a complete demo run, every P&L is reset (so
nearly every pair is affected), a plain `enrich --step D,E` SIGKILLs itself at a crash point, and
`--resume` until done ends with exactly the reference run's P&L and outcomes; the bookkeeping is
then complete (the next plain run finds nothing affected). Every named crash point, as for a full
run: before a batch's write, after it, between the local and the Postgres checkpoint, inside a
mutation wait, while a SIGTERM's stop is handled, and after the last batch before the trades' write."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.durability.stepd_procs import KILLED, Site, finish

BATCH = 10
RESET_ALL = """
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
ch = open_clickhouse(load_settings())
ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1",
           settings={"mutations_sync": 2})
print(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw WHERE condition_id IN "
                "(SELECT condition_id FROM $db.market_resolutions)"))
"""
PLAIN = ("--no-ui", "--log-format", "plain")


def _sql(site: Site, script: str) -> str:
    out = subprocess.run([sys.executable, "-c", script], env=site.env(), cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


WAIT_EVERY = 3  # mutation waits after batches 3, 6, 9, ...


def _expected_on_disk(point: str, nth: int, affected: int) -> tuple[set[int], int | None]:
    """The checkpoint(s) the local file may hold at the crash, and what the Postgres mirror must
    hold (None: not pinned). As for a full run (test_crash_step_d): batch k's checkpoint is saved
    while batch k+1 is written."""
    if point in ("before_batch_write", "after_write_before_local_checkpoint"):
        return {(nth - 2) * BATCH, (nth - 1) * BATCH}, None
    if point == "between_local_and_remote_checkpoint":
        return set(range(nth * BATCH, affected, BATCH)), (nth - 1) * BATCH
    if point == "during_mutation_wait":  # after batch nth * WAIT_EVERY is written
        k = nth * WAIT_EVERY
        return {(k - 2) * BATCH, (k - 1) * BATCH}, None
    if point == "before_trades_write":  # every batch and checkpoint landed, both places; no trade written
        return {affected}, affected
    raise AssertionError(point)


def _completed_then_every_pnl_reset(site: Site) -> int:
    """A complete demo run, then every P&L reset: every resolved pair is affected. Returns how many."""
    out = site.run("demo", "--scale", "small", "--batch-size", "100000", *PLAIN)
    assert out.returncode == 0, out.stdout[-2000:]
    affected = int(_sql(site, RESET_ALL))
    assert affected > 7 * BATCH
    return affected


def _resume_to_the_reference(site: Site, state: dict[str, Any], reference: dict[str, Any]) -> None:
    out = site.run("enrich", "--step", "D,E", "--resume", "--batch-size", "7", *PLAIN)
    assert out.returncode == 0, out.stdout[-2000:]
    assert f"resuming after pair {state['pairs_done']:,}" in out.stdout and "of an incremental run" in out.stdout
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (reference["pnl"], reference["outcomes"], 0)
    assert site.state()["status"] == "done" and site.remote_checkpoint() == site.state()

    out = site.run("enrich", "--step", "D", *PLAIN)  # the crash lost no bookkeeping
    assert out.returncode == 0 and re.search(r"\b0 of [\d,]+ pairs affected", out.stdout), out.stdout[-2000:]
    assert site.checksums()["pnl"] == reference["pnl"]


@pytest.mark.parametrize("point, nth", [
    ("before_batch_write", 4),
    ("after_write_before_local_checkpoint", 4),
    ("between_local_and_remote_checkpoint", 4),
    ("during_mutation_wait", 2),
    ("before_trades_write", 1),
])
def test_sigkilled_incremental_run_resumes_to_the_reference(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any], point: str, nth: int
) -> None:
    site = Site(tmp_path, pg_url, {"MUTATION_WAIT_EVERY": str(WAIT_EVERY)})
    affected = _completed_then_every_pnl_reset(site)

    out = site.run("enrich", "--step", "D,E", "--batch-size", str(BATCH), *PLAIN, OPSCONSOLE_CRASH_AT=f"{point}:{nth}")
    assert out.returncode == KILLED, out.stdout[-2000:]
    assert f"{affected:,} of " in out.stdout and "pairs affected" in out.stdout
    state = site.state()
    assert state is not None and state["status"] == "running" and state["mode"] == "incremental"
    local, remote = _expected_on_disk(point, nth, affected)
    assert state["pairs_total"] == affected and state["pairs_done"] in local, (point, state["pairs_done"], local)
    if remote is not None:  # the crash fell between the two writes: the mirror is one checkpoint behind
        assert site.remote_checkpoint()["pairs_done"] == remote
    _resume_to_the_reference(site, state, reference_small)


def test_sigkill_during_an_incremental_runs_stop_handling_then_resume(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any]
) -> None:
    site = Site(tmp_path, pg_url)
    _completed_then_every_pnl_reset(site)
    proc = site.spawn("enrich", "--step", "D,E", "--batch-size", "2", *PLAIN, OPSCONSOLE_CRASH_AT="during_stop_handling")
    # The demo's done checkpoint is on disk: wait for this run's first one.
    deadline = time.monotonic() + 120
    while not ((state := site.state()) and state["status"] == "running" and state["pairs_done"] > 0):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # stop requested: the crash point fires while it is handled
    stdout, _ = finish(proc)
    assert proc.returncode == KILLED, stdout[-2000:]
    assert "SIGTERM received" in stdout and "stopped at a batch boundary" not in stdout
    state = site.state()
    assert state["status"] == "running" and state["mode"] == "incremental"
    assert 0 < state["pairs_done"] < state["pairs_total"] and state["pairs_done"] % 2 == 0  # whole batches only
    _resume_to_the_reference(site, state, reference_small)
