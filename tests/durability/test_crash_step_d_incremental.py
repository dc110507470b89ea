"""Crash equivalence for an incremental Step D: after a complete demo run, every P&L is reset (so
nearly every pair is affected), a plain `enrich --step D,E` SIGKILLs itself at a crash point, and
`--resume` until done ends with exactly the reference run's P&L and outcomes; the bookkeeping is
then complete (the next plain run finds nothing affected)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.durability.stepd_procs import KILLED, Site

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


@pytest.mark.parametrize("point, nth", [("before_batch_write", 4), ("after_write_before_local_checkpoint", 4)])
def test_sigkilled_incremental_run_resumes_to_the_reference(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any], point: str, nth: int
) -> None:
    site = Site(tmp_path, pg_url)
    out = site.run("demo", "--scale", "small", "--batch-size", "100000", *PLAIN)
    assert out.returncode == 0, out.stdout[-2000:]
    affected = int(_sql(site, RESET_ALL))  # a reset of every market's P&L: every resolved pair is affected
    assert affected > 5 * BATCH

    out = site.run("enrich", "--step", "D,E", "--batch-size", str(BATCH), *PLAIN, OPSCONSOLE_CRASH_AT=f"{point}:{nth}")
    assert out.returncode == KILLED, out.stdout[-2000:]
    assert f"{affected:,} of " in out.stdout and "pairs affected" in out.stdout
    state = site.state()
    assert state is not None and state["status"] == "running" and state["mode"] == "incremental"
    assert state["pairs_total"] == affected and state["pairs_done"] in {(nth - 2) * BATCH, (nth - 1) * BATCH}

    out = site.run("enrich", "--step", "D,E", "--resume", "--batch-size", "7", *PLAIN)
    assert out.returncode == 0, out.stdout[-2000:]
    assert f"resuming after pair {state['pairs_done']:,}" in out.stdout and "of an incremental run" in out.stdout
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_small["pnl"], reference_small["outcomes"], 0)
    assert site.state()["status"] == "done" and site.remote_checkpoint() == site.state()

    out = site.run("enrich", "--step", "D", *PLAIN)  # the crash lost no bookkeeping
    assert out.returncode == 0 and re.search(r"\b0 of [\d,]+ pairs affected", out.stdout), out.stdout[-2000:]
    assert site.checksums()["pnl"] == reference_small["pnl"]
