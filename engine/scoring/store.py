"""forecast_scores on Postgres (migration 0020) and the stored forecasts it is computed from.

Forecasts are read straight from the pipeline's experiment_results (stage 'forecast'), one row per
(result, market) by expanding the `probabilities` object in SQL; outcome index 0's name comes from
processed_contracts, as the pipeline saw the market. Scores are written with one multi-row upsert
per batch that only touches rows whose inputs changed (see the migration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from engine.scoring.metrics import BASELINE, Score
from engine.stores.postgres import Postgres

LOAD_FORECASTS = """
SELECT r.id AS result_id, r.event_key, r.experiment_name, r.config_hash, r.suite, r.variant, r.created_at,
       (r.tokens_in + r.tokens_out)::double precision AS tokens, r.cost_usd,
       m.key AS market_id, m.value AS probs, c.outcome AS outcome0,
       count(*) OVER (PARTITION BY r.id) AS n_markets
  FROM experiment_results r
 CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(r.probabilities) = 'object'
                                    THEN r.probabilities ELSE '{}'::jsonb END) AS m(key, value)
  LEFT JOIN processed_contracts c ON c.market_id = m.key AND c.outcome_index = 0
 WHERE r.stage = 'forecast'
   AND (%(since)s::timestamptz IS NULL OR r.created_at >= %(since)s::timestamptz)
   AND (%(suites)s::text[] IS NULL OR r.suite = ANY(%(suites)s::text[]) OR r.experiment_name = %(baseline)s)
 ORDER BY r.id, m.key
"""

_COLUMNS = ("event_key", "experiment_name", "config_hash", "market_id", "result_id", "suite", "variant", "status",
            "probability", "outcome", "payout_yes", "payout_no", "brier", "log_loss", "forecast_at", "closed_at",
            "tokens", "cost_usd", "resolution_source")
_TYPES = ("text", "text", "text", "text", "bigint", "text", "text", "text", "float8", "smallint", "float8",
          "float8", "float8", "float8", "timestamptz", "timestamptz", "float8", "float8", "text")

# Rows arrive by COPY into a temporary table (psycopg's C path; binding 19 Python lists as arrays
# costs ~10x more at 100k rows), then one upsert. Only a change in what the score is computed from
# (the probability, the resolution) touches a row.
_STAGE_SCORES = f"""
CREATE TEMP TABLE _scores_in ({", ".join(f"{c} {t}" for c, t in zip(_COLUMNS, _TYPES, strict=True))}) ON COMMIT DROP
"""
_COPY_SCORES = f"COPY _scores_in ({', '.join(_COLUMNS)}) FROM STDIN"
UPSERT_SCORES = f"""
INSERT INTO forecast_scores ({", ".join(_COLUMNS)})
SELECT {", ".join(_COLUMNS)} FROM _scores_in
ON CONFLICT (event_key, experiment_name, config_hash, market_id) DO UPDATE
   SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[4:])}, updated_at = now()
 WHERE (forecast_scores.status, forecast_scores.probability, forecast_scores.outcome, forecast_scores.payout_yes,
        forecast_scores.payout_no, forecast_scores.closed_at)
       IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.probability, EXCLUDED.outcome, EXCLUDED.payout_yes,
        EXCLUDED.payout_no, EXCLUDED.closed_at)
"""

LOAD_SCORES = """
SELECT event_key, experiment_name, config_hash, market_id, suite, variant, status, probability, outcome, brier,
       log_loss, forecast_at, closed_at, tokens, cost_usd
  FROM forecast_scores
 WHERE (%(since)s::timestamptz IS NULL OR forecast_at >= %(since)s::timestamptz)
   AND (%(suites)s::text[] IS NULL OR suite = ANY(%(suites)s::text[]) OR experiment_name = %(baseline)s)
"""


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    suites: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # variant or suite:variant; empty = every variant

    def params(self) -> dict[str, Any]:
        return {"since": self.since, "suites": list(self.suites) or None, "baseline": BASELINE}

    def keeps(self, experiment_name: str, suite: str, variant: str) -> bool:
        # The baseline is always kept: every skill score is measured against it.
        if experiment_name == BASELINE or not self.include:
            return True
        return variant in self.include or f"{suite}:{variant}" in self.include


@dataclass(frozen=True)
class Forecast:
    """One stored forecast of one market: an experiment_results row, expanded per market."""

    result_id: int
    event_key: str
    experiment_name: str
    config_hash: str
    suite: str
    variant: str
    created_at: datetime
    market_id: str
    probs: Any  # {outcome: p} as stored; validated when scored
    outcome0: str | None  # processed_contracts' name of outcome index 0
    tokens_share: float  # the result's tokens and cost, split evenly over its markets
    cost_share: float


async def load_forecasts(pg: Postgres, filters: Filters) -> list[Forecast]:
    rows = await pg.fetch_all(LOAD_FORECASTS, filters.params())
    return [Forecast(r["result_id"], r["event_key"], r["experiment_name"], r["config_hash"], r["suite"], r["variant"],
                     r["created_at"], r["market_id"], r["probs"], r["outcome0"],
                     float(r["tokens"]) / r["n_markets"], float(r["cost_usd"] or 0) / r["n_markets"])
            for r in rows if filters.keeps(r["experiment_name"], r["suite"], r["variant"])]


async def upsert_scores(pg: Postgres, rows: Sequence[dict[str, Any]]) -> int:
    """Write scores; returns how many rows were inserted or changed (0 on an unchanged rerun)."""
    if not rows:
        return 0
    async def go(conn: psycopg.AsyncConnection[Any]) -> int:
        cur = conn.cursor()  # Postgres.run holds one transaction: the temp table goes with it
        await cur.execute(_STAGE_SCORES)
        async with cur.copy(_COPY_SCORES) as copy:
            for r in rows:
                await copy.write_row(tuple(r[c] for c in _COLUMNS))
        await cur.execute(UPSERT_SCORES)
        return cur.rowcount

    return await pg.run(go)


async def load_scores(pg: Postgres, filters: Filters) -> list[Score]:
    rows = await pg.fetch_all(LOAD_SCORES, filters.params())
    return [Score(r["event_key"], r["experiment_name"], r["config_hash"], r["market_id"], r["suite"], r["variant"],
                  r["status"], r["probability"], r["outcome"], r["brier"], r["log_loss"], r["forecast_at"],
                  r["closed_at"], r["tokens"], r["cost_usd"])
            for r in rows if filters.keeps(r["experiment_name"], r["suite"], r["variant"])]
