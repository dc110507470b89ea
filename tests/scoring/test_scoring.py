"""`opsconsole score` on the real embedded Postgres against a loopback Gamma: the numbers equal a
hand computation; void, pending, missing and invalid forecasts are counted, never scored."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.control import Control
from engine.enrichment.schema import RESOLUTION_COLUMNS, ensure_schema
from engine.events import Event, Failure, JobState, LogLine, Progress
from engine.scoring.job import ScoreOptions
from engine.scoring.metrics import SEED
from engine.settings import Settings
from engine.stores.clickhouse import ChdbClickHouse, open_clickhouse
from tests.conftest import with_settings
from tests.scoring.conftest import BASELINE, GEMINI, OPENAI, run_score, score_rows, seed
from tests.scoring.gamma_closed import GammaClosed, closed_market

pytestmark = pytest.mark.anyio


def ll(*ps: float) -> float:
    """Mean log loss of forecasts that all came true with probability p."""
    return sum(-math.log(p) for p in ps) / len(ps)


def bins(*filled: tuple[int, float, float]) -> list[tuple[int, Any, Any]]:
    """(count, mean forecast, observed) per bin; unlisted bins empty."""
    out: list[tuple[int, Any, Any]] = [(0, None, None)] * 10
    for i, p, y in filled:
        out[i] = (1, p, y)
    return out


def calib(v: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    return [(b["count"], None if b["mean_forecast"] is None else round(b["mean_forecast"], 12),
             b["observed"]) for b in v["calibration"]]


async def test_scores_equal_a_hand_computation(score_settings: Settings, gamma: GammaClosed) -> None:
    await seed(score_settings)
    run = await run_score(score_settings)
    assert run.outcome.state is JobState.DONE, run.outcome.error
    s = run.summary

    # 101 Yes, 102 No, 201 Yes are scored; 202 is 50/50 (void); 301 is open; 302 is gone.
    assert (s["scored"], s["void"], s["pending"]) == (3 + 4 + 1, 2, 2)
    assert s["missing"] == {"count": 1, "market_ids": ["302"]}
    assert [(b["experiment"], b["market_id"]) for b in s["invalid"]] == [(GEMINI, "101")]
    assert "outside [0, 1]" in s["invalid"][0]["reason"]
    assert [v["experiment"] for v in s["variants"]] == [BASELINE, GEMINI, OPENAI]

    base = run.variant(BASELINE)
    assert base["n"] == 3 and base["void"] == 1 and base["reference"]
    assert base["brier"] == pytest.approx((0.4**2 + 0.3**2 + 0.6**2) / 3)
    assert base["log_loss"] == pytest.approx(ll(0.6, 0.7, 0.4))
    assert base["bss_vs_baseline"] == pytest.approx(0.0) and base["bss_ci95"] is None
    assert calib(base) == bins((6, 0.6, 1.0), (3, 0.3, 0.0), (4, 0.4, 1.0))

    # openai: 101 twice (0.9 under E1, 0.5 later under E1b), 102 at 0.2, 201 at 0.7.
    oa = run.variant(OPENAI)
    assert oa["n"] == 4
    assert oa["brier"] == pytest.approx((0.01 + 0.25 + 0.04 + 0.09) / 4)
    assert oa["log_loss"] == pytest.approx(ll(0.9, 0.5, 0.8, 0.7))
    assert calib(oa) == bins((9, 0.9, 1.0), (5, 0.5, 1.0), (2, 0.2, 0.0), (7, 0.7, 1.0))
    # latest forecast before close per market: 101 -> 0.5 (E1b, later)
    assert oa["latest_before_close"]["n"] == 3
    assert oa["latest_before_close"]["brier"] == pytest.approx((0.25 + 0.04 + 0.09) / 3)
    assert oa["paired_n"] == 3
    assert oa["bss_vs_baseline"] == pytest.approx(1 - 0.38 / 0.61)
    lo, hi = oa["brier_diff_ci95"]
    # per-market differences (latest before close): 101 0.25-0.16, 102 0.04-0.09, 201 0.09-0.36; a mean of
    # resampled differences lies between the extremes, and this seed does draw both ends
    assert -0.27 - 1e-12 <= lo < hi <= 0.09 + 1e-12
    assert oa["bss_ci95"][0] <= oa["bss_ci95"][1]
    # tokens and cost of a result are split over its markets: E1 150 tok/$0.02, E2 300/$0.04, E1b 0
    assert oa["tokens_per_forecast"] == pytest.approx((75 + 75 + 150 + 0) / 4)
    assert oa["cost_per_forecast"] == pytest.approx((0.01 + 0.01 + 0.02 + 0) / 4)

    gm = run.variant(GEMINI)
    assert gm["n"] == 1 and gm["brier"] == pytest.approx(0.01) and gm["paired_n"] == 1
    assert gm["bss_vs_baseline"] == pytest.approx(1 - 0.01 / 0.09)
    assert gm["bss_ci95"] == pytest.approx([1 - 0.01 / 0.09] * 2)  # one pair: every resample is the same
    assert s["bootstrap"] == {"resamples": 2000, "seed": SEED}

    # Gamma was asked for closed markets by id, then for the rest without the closed filter.
    asked = [(sorted(q["id"]), q["closed"]) for q in gamma.requests]
    assert asked == [(["101", "102", "201", "202", "301", "302"], ["true"]), (["301", "302"], ["false"])]

    stored = score_rows(score_settings)
    assert len(stored) == 8 + 2  # scored plus void rows; pending, missing and invalid are not stored
    assert stored[("E2", BASELINE, "b1", "202")][:4] == ("void", 0.5, None, None)
    assert stored[("E1", OPENAI, "o1", "102")][:3] == ("scored", 0.2, 0)


async def test_rerun_changes_nothing_and_a_correction_changes_exactly_its_rows(
        score_settings: Settings, gamma: GammaClosed) -> None:
    await seed(score_settings)
    first = await run_score(score_settings)
    assert first.summary["changed_rows"] == 10
    before = score_rows(score_settings)

    again = await run_score(score_settings)
    assert again.outcome.state is JobState.DONE
    assert again.summary["changed_rows"] == 0
    assert score_rows(score_settings) == before  # updated_at included: nothing was touched
    assert again.summary["variants"] == first.summary["variants"]

    gamma.set(closed_market("102", "1", "0"))  # 102 was corrected: it resolved Yes after all
    fixed = await run_score(score_settings)
    assert fixed.summary["changed_rows"] == 3  # baseline, openai and gemini forecasts of 102
    after = score_rows(score_settings)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {("E1", BASELINE, "b1", "102"), ("E1", OPENAI, "o1", "102"), ("E1", GEMINI, "g1", "102")}
    assert after[("E1", BASELINE, "b1", "102")][:4] == ("scored", 0.3, 1, pytest.approx(0.49))
    assert fixed.variant(GEMINI)["brier"] == pytest.approx(0.81)


async def test_a_gamma_outage_is_retriable_and_keeps_what_was_scored(
        score_settings: Settings, gamma: GammaClosed) -> None:
    await seed(score_settings)
    gamma.fail_ids = {"301"}  # the third batch of two (301, 302) never gets an answer
    run = await run_score(score_settings, batch_size=2)
    assert run.outcome.state is JobState.FAILED
    assert "scoring incomplete" in run.outcome.error and "rerun" in run.outcome.error
    failures = [e for e in run.events if isinstance(e, Failure)]
    assert len(failures) == 1 and failures[0].retriable and failures[0].where == "gamma"
    assert run.summary["status"] == "incomplete"
    assert run.summary["unchecked"] == 4 and run.summary["markets"]["unchecked"] == 2
    assert {k[3] for k in score_rows(score_settings)} == {"101", "102", "201", "202"}
    assert len(score_rows(score_settings)) == 10

    gamma.fail_ids = set()
    rerun = await run_score(score_settings)
    assert rerun.outcome.state is JobState.DONE
    assert rerun.summary["changed_rows"] == 0 and rerun.summary["pending"] == 2


async def test_a_stop_holds_at_the_batch_boundary(score_settings: Settings, gamma: GammaClosed) -> None:
    await seed(score_settings)

    def stop_after_first_batch(event: Event, control: Control[Any]) -> None:
        if isinstance(event, Progress) and event.step == "score":
            control.stop("test")

    run = await run_score(score_settings, on_event=stop_after_first_batch, batch_size=2)
    assert run.outcome.state is JobState.STOPPED
    assert run.summary["status"] == "stopped"
    assert {k[3] for k in score_rows(score_settings)} == {"101", "102"}


async def test_suite_and_variant_filters_keep_the_baseline(score_settings: Settings, gamma: GammaClosed) -> None:
    await seed(score_settings)
    run = await run_score(score_settings, ScoreOptions(suites=("gemini",), gamma_backoff_s=0.01))
    assert [v["experiment"] for v in run.summary["variants"]] == [BASELINE, GEMINI]
    run = await run_score(score_settings, ScoreOptions(include_forecast=("openai:gpt5",), gamma_backoff_s=0.01))
    assert [v["experiment"] for v in run.summary["variants"]] == [BASELINE, OPENAI]


async def test_since_keeps_only_later_forecasts(score_settings: Settings, gamma: GammaClosed) -> None:
    from tests.scoring.conftest import LATER

    await seed(score_settings)
    run = await run_score(score_settings, ScoreOptions(since=LATER, gamma_backoff_s=0.01))
    assert run.summary["forecasts"] == 1 and run.summary["scored"] == 1
    (only,) = run.summary["variants"]
    assert only["experiment"] == OPENAI and only["n"] == 1 and only["brier"] == pytest.approx(0.25)
    assert only["paired_n"] == 0 and only["bss_vs_baseline"] is None  # no baseline forecast to pair with


async def test_the_enrichments_resolutions_come_first(score_settings: Settings, gamma: GammaClosed,
                                                      chdb_path: Path, ch_database: str) -> None:
    """A market that `market_resolutions` holds is scored from it, and Gamma is not asked about it.
    Gamma says 102 resolved No; the enrichment says Yes (say, a corrected resolution Step C fetched)."""
    # chDB serves one data directory per process: use the session's, as the other in-process tests do.
    score_settings = with_settings(score_settings, clickhouse_path=chdb_path, clickhouse_database=ch_database)
    ch = open_clickhouse(score_settings)
    try:
        ensure_schema(ch)
        at = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).replace(tzinfo=None)
        ch.insert_rows("market_resolutions", RESOLUTION_COLUMNS,
                       [("0xc102", "102", [Decimal(1), Decimal(0)], at, "test", at)])
    finally:
        ChdbClickHouse.close_all()
    await seed(score_settings)
    run = await run_score(score_settings)
    assert run.outcome.state is JobState.DONE, run.outcome.error
    assert run.summary["markets"]["from_enrichment"] == 1
    assert all("102" not in q["id"] for q in gamma.requests)
    stored = score_rows(score_settings)
    assert stored[("E1", BASELINE, "b1", "102")][:3] == ("scored", 0.3, 1)
    # The read released the embedded store: an enrichment job can take it now.
    assert not ChdbClickHouse.is_open(score_settings.clickhouse_dir)


async def test_a_busy_enrichment_store_falls_back_to_gamma(score_settings: Settings, gamma: GammaClosed) -> None:
    """Another process holds the embedded chDB (a running Step D): scoring asks Gamma and says why."""
    ChdbClickHouse.close_all()  # this test process may hold the session's store: chDB allows one per process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from engine.settings import load_settings\nfrom engine.stores.clickhouse import open_clickhouse\n"
         "open_clickhouse(load_settings(runtime_dir=sys.argv[1]))\nprint('holding', flush=True)\ntime.sleep(120)",
         str(score_settings.runtime)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        await seed(score_settings)
        run = await run_score(score_settings)
    finally:
        holder.kill()
        holder.wait()
    assert run.outcome.state is JobState.DONE, run.outcome.error
    assert run.summary["markets"]["from_enrichment"] == 0
    assert any("102" in q["id"] for q in gamma.requests)
    said = [e.message for e in run.events if isinstance(e, LogLine) and "market_resolutions" in e.message]
    assert said and "not available" in said[0] and str(holder.pid) in said[0], said
