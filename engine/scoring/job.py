"""`opsconsole score` as a job: score every stored forecast whose market has resolved.

Markets are looked up in batches (Gamma or a snapshot); each batch is scored and upserted before
the next is asked for, and `control.boundary()` sits between batches, so a pause holds between
two committed batches and a stop or a Gamma outage keeps everything scored so far. The leaderboard
is then computed from forecast_scores (everything stored under the same filters), not from this
run's memory: a rerun after an outage reports the same numbers as one clean run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from engine.enrichment.gamma import GammaError
from engine.errors import OpsError
from engine.events import Summary
from engine.files import atomic_write_json
from engine.last_result import save_last
from engine.runner import JobContext
from engine.scoring.enriched import enrichment_resolutions
from engine.scoring.gamma import BATCH_SIZE, GammaLookup, Lookup, ResolutionSource, SnapshotLookup
from engine.scoring.metrics import BASELINE, RESAMPLES, SEED, brier, leaderboard, log_loss
from engine.scoring.resolution import NotResolved, Resolution, resolution_of
from engine.scoring.store import Filters, Forecast, load_forecasts, load_scores, upsert_scores
from engine.stores.postgres import Postgres


SNAPSHOT_BATCH = 2000  # markets per batch when reading --source (pause/stop still hold between batches)


class ScoringIncomplete(OpsError):
    """Some markets could not be checked (Gamma unavailable); what was scored is stored."""


class ScoreLive(BaseModel):
    batch_size: int = Field(BATCH_SIZE, ge=1, le=100)  # market ids per Gamma request


@dataclass(frozen=True)
class ScoreOptions:
    since: datetime | None = None
    suites: tuple[str, ...] = ()
    include_forecast: tuple[str, ...] = ()
    source: Path | None = None
    summary_path: Path | None = None
    resamples: int = RESAMPLES
    seed: int = SEED
    gamma_backoff_s: float = 0.5
    gamma_attempts: int = 5

    @property
    def filters(self) -> Filters:
        include = tuple(v.strip() for item in self.include_forecast for v in item.split(",") if v.strip())
        return Filters(self.since, tuple(self.suites), include)


def invalid_reason(probs: Any) -> str | None:
    """Why a stored {outcome: p} cannot be scored (old rows predate validation), or None."""
    if not isinstance(probs, dict) or not probs:
        return "probabilities are not an {outcome: p} object"
    for outcome, p in probs.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            return f"probability of {outcome!r} is not a number: {p!r}"
        if not 0 <= p <= 1:
            return f"probability of {outcome!r} is {p}, outside [0, 1]"
    return None


def probability_of_outcome0(f: Forecast, res: Resolution) -> float | None:
    probs: dict[str, float] = f.probs
    for name in (f.outcome0, res.outcome0, "Yes"):
        if name and name in probs:
            return float(probs[name])
    return None


def score_row(f: Forecast, res: Resolution, p: float) -> dict[str, Any]:
    y = res.y
    return {
        "event_key": f.event_key, "experiment_name": f.experiment_name, "config_hash": f.config_hash,
        "market_id": f.market_id, "result_id": f.result_id, "suite": f.suite, "variant": f.variant,
        "status": "void" if y is None else "scored", "probability": p, "outcome": y,
        "payout_yes": res.payout_yes, "payout_no": res.payout_no,
        "brier": None if y is None else brier(p, y), "log_loss": None if y is None else log_loss(p, y),
        "forecast_at": f.created_at, "closed_at": res.closed_at, "tokens": f.tokens_share, "cost_usd": f.cost_share,
        "resolution_source": res.source,
    }


@dataclass
class Tally:
    forecasts: int = 0
    scored: int = 0
    void: int = 0
    pending: int = 0
    not_scoreable: int = 0
    unchecked: int = 0
    changed: int = 0
    requests: int = 0
    missing: list[str] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)
    markets: dict[str, int] = field(default_factory=lambda: {"resolved": 0, "void": 0, "pending": 0, "missing": 0,
                                                             "not_scoreable": 0, "unchecked": 0,
                                                             "from_enrichment": 0})


class ScoreJob:
    name = "score"
    panels: tuple[str, ...] = ()  # progress, logs and failures only (Job.panels)

    def __init__(self, options: ScoreOptions | None = None) -> None:
        self.options = options or ScoreOptions()
        self.summary: dict[str, Any] | None = None

    def live_settings(self) -> ScoreLive:
        return ScoreLive()

    def _source(self, ctx: JobContext) -> ResolutionSource:
        if self.options.source is not None:
            return SnapshotLookup(self.options.source)
        return GammaLookup(ctx.settings.polymarket_base_url, backoff_base_s=self.options.gamma_backoff_s,
                           max_attempts=self.options.gamma_attempts)

    async def run(self, ctx: JobContext) -> None:
        source = self._source(ctx)  # a bad --source fails here, before any store is opened
        pg = await Postgres(ctx.settings).open()
        try:
            await pg.migrate()
            await self._run(ctx, pg, source)
        finally:
            await source.aclose()
            await pg.close()

    async def _run(self, ctx: JobContext, pg: Postgres, source: ResolutionSource) -> None:
        filters = self.options.filters
        tally = Tally()
        forecasts = await load_forecasts(pg, filters)
        tally.forecasts = len(forecasts)
        by_market: dict[str, list[Forecast]] = {}
        for f in forecasts:
            reason = invalid_reason(f.probs)
            if reason is not None:
                tally.invalid.append({"event_key": f.event_key, "experiment": f.experiment_name,
                                      "config_hash": f.config_hash, "market_id": f.market_id, "reason": reason})
                continue
            by_market.setdefault(f.market_id, []).append(f)
        for bad in tally.invalid:
            ctx.log(f"not scored: {bad['experiment']} {bad['event_key']} market {bad['market_id']}: {bad['reason']}",
                    level="WARNING", step="score")
        market_ids = sorted(by_market)
        enriched = await enrichment_resolutions(ctx.settings, market_ids)
        ctx.log(f"{tally.forecasts} stored forecast(s) over {len(market_ids)} market(s); "
                f"{len(enriched.by_market)} resolved in the enrichment's market_resolutions"
                f"{f' ({enriched.note})' if enriched.note else ''}; asking {source.description} for the rest",
                step="score")
        outage = ""
        stopped = False
        done = 0
        while done < len(market_ids):
            if not await ctx.control.boundary():
                stopped = True
                break
            # A snapshot has no requests to keep small: bigger batches save round trips to Postgres.
            size = SNAPSHOT_BATCH if self.options.source is not None else ctx.control.live.batch_size
            batch = market_ids[done:done + size]
            ask = [mid for mid in batch if mid not in enriched.by_market]
            try:
                found = await source.lookup(ask) if ask else Lookup()
            except GammaError as exc:
                outage = str(exc)
                ctx.failure("gamma", f"{len(market_ids) - done} market(s) not checked: {exc}", retriable=True,
                            step="score")
                break
            tally.requests += found.requests
            rows: list[dict[str, Any]] = []
            for mid in batch:
                known = enriched.by_market.get(mid)
                if known is not None:
                    tally.markets["from_enrichment"] += 1
                    self._score(known, by_market[mid], tally, rows)
                else:
                    self._classify(ctx, mid, by_market[mid], found.markets.get(mid), tally, rows)
            tally.changed += await upsert_scores(pg, rows)
            done += len(batch)
            ctx.progress("score", done, len(market_ids), unit="markets")
        for mid in market_ids[done:]:
            tally.unchecked += len(by_market[mid])
            tally.markets["unchecked"] += 1
        if tally.missing:
            shown = ", ".join(tally.missing[:20]) + (" …" if len(tally.missing) > 20 else "")
            ctx.log(f"{len(tally.missing)} market(s) not found on {source.description}: {shown}",
                    level="WARNING", step="score")
        scores = await load_scores(pg, filters)
        board = leaderboard(scores, resamples=self.options.resamples, seed=self.options.seed)
        status = "incomplete" if outage else "stopped" if stopped else "completed"
        self.summary = build_summary(board, tally, status=status, source=source.description,
                                     resamples=self.options.resamples, seed=self.options.seed, error=outage)
        # The last run's summary, always: the console's Scores view and `score` on a terminal read it.
        save_last(ctx.settings.runtime, self.name, self.summary)
        if self.options.summary_path is not None:
            atomic_write_json(self.options.summary_path, self.summary)
        ctx.emit(Summary(job=self.name, data={k: v for k, v in self.summary.items() if k != "variants"}))
        if outage:
            raise ScoringIncomplete(f"scoring incomplete: {tally.markets['unchecked']} market(s) not checked "
                                    f"({outage}); {tally.scored} forecast(s) scored and stored — rerun to finish")

    def _classify(self, ctx: JobContext, mid: str, fs: list[Forecast], market: Any, tally: Tally,
                  rows: list[dict[str, Any]]) -> None:
        if market is None:
            tally.missing.append(mid)
            tally.markets["missing"] += 1
            return
        res = resolution_of(market, "snapshot" if self.options.source else "gamma")
        if isinstance(res, NotResolved):
            if res.pending:
                tally.pending += len(fs)
                tally.markets["pending"] += 1
            else:
                tally.not_scoreable += len(fs)
                tally.markets["not_scoreable"] += 1
                ctx.log(f"market {mid} cannot be scored: {res.reason}", level="WARNING", step="score")
            return
        self._score(res, fs, tally, rows)

    @staticmethod
    def _score(res: Resolution, fs: list[Forecast], tally: Tally, rows: list[dict[str, Any]]) -> None:
        tally.markets["void" if res.y is None else "resolved"] += 1
        for f in fs:
            p = probability_of_outcome0(f, res)
            if p is None:
                reason = f"no probability for outcome 0 ({f.outcome0 or res.outcome0!r}) among {sorted(f.probs)}"
                tally.invalid.append({"event_key": f.event_key, "experiment": f.experiment_name,
                                      "config_hash": f.config_hash, "market_id": res.market_id, "reason": reason})
                continue
            row = score_row(f, res, p)
            rows.append(row)
            if row["status"] == "void":
                tally.void += 1
            else:
                tally.scored += 1


def build_summary(board: list[Any], tally: Tally, *, status: str, source: str, resamples: int, seed: int,
                  error: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "source": source,
        "baseline": BASELINE,
        "bootstrap": {"resamples": resamples, "seed": seed},
        "variants": [v.as_dict() for v in board],
        "forecasts": tally.forecasts,
        "scored": tally.scored,
        "void": tally.void,
        "pending": tally.pending,
        "not_scoreable": tally.not_scoreable,
        "unchecked": tally.unchecked,
        "missing": {"count": len(tally.missing), "market_ids": tally.missing},
        "invalid": tally.invalid,
        "markets": tally.markets,
        "changed_rows": tally.changed,
        "gamma_requests": tally.requests,
        "error": error or None,
    }


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, default=str, allow_nan=False)
