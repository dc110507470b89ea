"""`opsconsole enrich --step T` as a real process: a real SIGTERM mid-walk, a resume, a rerun.

Every fill lands exactly once, no page is requested twice across the stop and the resume, and the
rerun after new trades appear loads exactly those."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.enrichment.stept import STATE_FILE
from tests.conftest import REPO
from tests.durability.stepd_procs import Site, finish, json_events
from tests.enrichment.polymarket_world import FILLS, M1, MARKETS, T0, matches
from tests.support.data_api_server import DataApiServer, match

COUNT = """
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
ch = open_clickhouse(load_settings())
print(ch.query("SELECT count(), uniqExact(trade_id) FROM $db.trades_raw").rows[0])
"""


def _counts(site: Site) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", COUNT], env=site.env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    n, distinct = json.loads(out.stdout.strip().replace("(", "[").replace(")", "]").replace("'", '"'))
    return int(n), int(distinct)


def _pages(server: DataApiServer, since: int = 0) -> list[tuple[str, int]]:
    return [(s.query["market"][-1], int(s.query["offset"][-1])) for s in server.seen[since:] if s.path == "/trades"]


def _fetched_but_markets_not_yet(out: subprocess.CompletedProcess[str]) -> None:
    """Step T alone ends with the gates: its trades' markets are not in markets_dim until Step A runs
    (`--step T,A,B,C,D,E` in real use), so gate markets_missing_dim FAILs (exit 3), and only it."""
    assert out.returncode == 3, out.stderr[-3000:]
    assert out.stderr.strip() == "opsconsole: closing gates FAILED: markets_missing_dim", out.stderr


def _summary(stdout: str) -> dict[str, Any]:
    return next(e["data"]["T"] for e in json_events(stdout) if e["type"] == "Summary")


def test_sigterm_then_resume_fetches_every_fill_once_and_a_rerun_only_new_ones(tmp_path: Path, pg_url: str) -> None:
    with DataApiServer(max_limit=2, delay_s=0.25) as server:
        server.add(*matches())
        site = Site(tmp_path, pg_url, extra={"POLYMARKET_DATA_API_URL": server.url})
        argv = ["enrich", "--step", "T", "--condition", *[m.condition_id for m in MARKETS], "--no-ui", "--log-format", "json"]
        state_file = site.runtime / STATE_FILE

        proc = site.spawn(*argv)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the first page's checkpoint
            if state_file.exists() and json.loads(state_file.read_text())["scopes"]:
                break
            assert proc.poll() is None, "the run ended before its first page"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stdout, stderr = finish(proc)
        assert proc.returncode == 0, stderr[-3000:]
        logs = [e["message"] for e in json_events(stdout) if e["type"] == "LogLine"]
        assert any(m.startswith("Step T stopped; checkpoint") for m in logs), logs  # a stopped run has no Summary
        state = json.loads(state_file.read_text())
        walking = [k for k, v in state["scopes"].items() if v.get("walk")]
        assert walking, state  # stopped inside a walk, its cursor saved
        first_run = _pages(server)
        loaded_before, _ = _counts(site)
        assert 0 < loaded_before < FILLS

        seen = len(server.seen)
        out = site.run(*argv)
        _fetched_but_markets_not_yet(out)
        resumed = _summary(out.stdout)
        second_run = _pages(server, seen)
        assert resumed["status"] == "done" and resumed["inserted"] == FILLS - loaded_before
        assert _counts(site) == (FILLS, FILLS)  # every fill exactly once
        pages = first_run + second_run
        assert len(pages) == len(set(pages)), pages  # no page fetched twice across the stop
        assert second_run[0] == (walking[0].split(":", 1)[1], state["scopes"][walking[0]]["walk"]["offset"])

        before = len(server.seen)
        server.add(match(M1, "late", T0 + 500, "gina", "BUY", 0, Decimal("0.55"), [("hal", Decimal(7), "opposite")]))
        out = site.run(*argv)
        _fetched_but_markets_not_yet(out)
        rerun = _summary(out.stdout)
        assert rerun["inserted"] == 2 and _counts(site) == (FILLS + 2, FILLS + 2)
        assert rerun["rows_older_than_cursor"] + rerun["already_loaded"] + rerun["inserted"] == rerun["rows_fetched"]
        print(f"\nfirst run: {len(first_run)} page(s) before SIGTERM, {loaded_before} fill(s); resume: {len(second_run)} "
              f"page(s); rerun: {len(_pages(server, before))} page(s), {rerun['inserted']} new fill(s)")
