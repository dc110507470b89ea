"""Forecast scoring: 100,000 stored forecasts scored offline (`--source` snapshot, no Gamma).

    uv run python -m benchmarks.scoring [--forecasts 100000] [--variants 4]

25,000 markets (one per event) each forecast by 4 variants (the baseline and three others) are
written into the pipeline's own tables with set-based SQL; a snapshot resolves 90% of the markets,
makes 4% void (50/50), leaves 4% open and drops 2% (missing). The figure is the whole `score` job
(load, resolve, score, upsert, leaderboard with 2,000 bootstrap resamples per variant), then an
unchanged rerun (nothing written), then the leaderboard alone.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from engine.bus import EventBus
from engine.control import Control
from engine.runner import run_job
from engine.scoring.job import ScoreJob, ScoreOptions
from engine.scoring.metrics import BASELINE, leaderboard
from engine.scoring.store import Filters, load_scores
from engine.settings import Settings, load_settings
from engine.stores.postgres import Postgres

SEED_SQL = """
SELECT setseed(0.42) WHERE %(markets)s > 0;
INSERT INTO processed_events (event_key, event_id, title, payload, first_run_id, last_run_id)
SELECT 'ev' || i, 'ev' || i, 'Event ' || i, '{}'::jsonb, 'bench', 'bench' FROM generate_series(1, %(markets)s) i;
INSERT INTO processed_markets (market_id, event_key, question, payload, last_run_id)
SELECT 'm' || i, 'ev' || i, 'Question ' || i || '?', '{}'::jsonb, 'bench' FROM generate_series(1, %(markets)s) i;
INSERT INTO processed_contracts (market_id, outcome_index, outcome, price, last_run_id)
SELECT 'm' || i, o, CASE o WHEN 0 THEN 'Yes' ELSE 'No' END, 0.5, 'bench'
  FROM generate_series(1, %(markets)s) i, generate_series(0, 1) o;
INSERT INTO experiment_results (event_key, experiment_name, suite, stage, variant, config_hash, config,
                                probabilities, tokens_in, tokens_out, cost_usd, run_id, created_at)
SELECT 'ev' || i, v.name, split_part(v.name, ':', 1), 'forecast', split_part(v.name, ':', 3), 'h' || v.n, '{}'::jsonb,
       jsonb_build_object('m' || i, jsonb_build_object('Yes', p, 'No', 1 - p)), 1000, 200, 0.003, 'bench',
       timestamptz '2026-11-01'
  FROM generate_series(1, %(markets)s) i
 CROSS JOIN LATERAL (SELECT n, CASE n WHEN 0 THEN %(baseline)s ELSE 'bench:forecast:v' || n END AS name,
                            round(random()::numeric, 3)::float8 AS p
                       FROM generate_series(0, %(variants)s - 1) n) v;
"""


def snapshot(path: Path, markets: int) -> None:
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    for i in range(1, markets + 1):
        r = rng.random()
        if r < 0.02:
            continue  # missing: gone from Gamma
        prices = ["0.5", "0.5"] if r < 0.06 else ["0.52", "0.48"] if r < 0.10 else \
            (["1", "0"] if rng.random() < 0.5 else ["0", "1"])
        out.append({"id": f"m{i}", "question": f"Question {i}?", "outcomes": json.dumps(["Yes", "No"]),
                    "outcomePrices": json.dumps(prices), "closed": not 0.06 <= r < 0.10,
                    "closedTime": "2026-11-30 12:00:00+00"})
    path.write_text(json.dumps(out))


async def score_once(settings: Settings, source: Path) -> tuple[float, dict[str, Any]]:
    job = ScoreJob(ScoreOptions(source=source))
    bus = EventBus()
    started = time.perf_counter()
    outcome = await run_job(job, settings, bus, Control(job.name, bus, job.live_settings()), handle_signals=False)
    seconds = time.perf_counter() - started
    if job.summary is None:
        raise SystemExit(f"score failed: {outcome.error}")
    return seconds, job.summary


async def main_async(forecasts: int, variants: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="opsbench-score-"))
    settings = load_settings(runtime_dir=root / "runtime")
    markets = forecasts // variants
    pg = await Postgres(settings).open()
    try:
        await pg.migrate()
        t = time.perf_counter()
        params = {"markets": markets, "variants": variants, "baseline": BASELINE}

        async def seed(conn: Any) -> None:  # one connection: setseed() holds for the random() after it
            for statement in SEED_SQL.split(";\n"):
                if statement.strip():
                    await conn.execute(statement, params)

        await pg.run(seed)
        seed_s = time.perf_counter() - t
        src = root / "gamma.json"
        snapshot(src, markets)
        first_s, first = await score_once(settings, src)
        again_s, again = await score_once(settings, src)
        t = time.perf_counter()
        scores = await load_scores(pg, Filters())
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        leaderboard(scores)
        board_s = time.perf_counter() - t
    finally:
        await pg.close()
    print(f"seeded {forecasts:,} stored forecasts ({markets:,} markets x {variants} variants) in {seed_s:.1f} s")
    print(f"first run: {first['scored']:,} scored, {first['void']:,} void, {first['pending']:,} pending, "
          f"{first['missing']['count']:,} missing, {first['changed_rows']:,} rows written in {first_s:.2f} s")
    print(f"rerun: {again['changed_rows']} rows written in {again_s:.2f} s")
    print(f"leaderboard alone ({len(scores):,} stored scores, 2,000 resamples x {variants - 1} variants): "
          f"load {load_s:.2f} s + compute {board_s:.2f} s")
    print(f"scoring {forecasts:,} stored forecasts offline: {first_s:.2f} s first run "
          f"({forecasts / first_s:,.0f} forecasts/s), {again_s:.2f} s unchanged rerun")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forecasts", type=int, default=100_000)
    ap.add_argument("--variants", type=int, default=4)
    args = ap.parse_args()
    anyio.run(main_async, args.forecasts, args.variants)


if __name__ == "__main__":
    main()
