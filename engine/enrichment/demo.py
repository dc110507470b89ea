"""Deterministic demo data: Polymarket-like markets, complete fills, resolutions (some invalid).

Generated inside ClickHouse, set-based, from hashes of (seed, row number): the same seed gives the
same rows on chDB and on a server, and the runbook's scale (~2.45M trades) takes seconds. Every
fill is written with both of its sides, so value conservation holds per resolved market.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from engine.enrichment import sql
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput
from engine.files import atomic_write_json
from engine.stores.clickhouse import ClickHouse


@dataclass(frozen=True)
class DemoScale:
    name: str
    wallets: int
    markets: int
    fills: int  # trades = 2 × fills
    k_min: int  # participants per market: k_min + [0, k_span)
    k_span: int
    resolved_share: float = 0.9


SCALES = {
    # a few thousand trades: unit tests
    "small": DemoScale("small", wallets=40, markets=30, fills=1_500, k_min=4, k_span=8,
                     resolved_share=0.7),
    # ~200k trades, ~22k pairs: the default demo, done in well under a minute
    "medium": DemoScale("medium", wallets=600, markets=800, fills=100_000, k_min=8, k_span=40),
    # the runbook's scale: ~2,839 wallets, ~137k pairs, ~2.45M trades, 5,000 markets
    "seed": DemoScale("seed", wallets=2_839, markets=5_000, fills=1_225_000, k_min=8, k_span=40),
    # ten times the runbook's scale (~24.5M trades, ~1.37M pairs): growth benchmarks, generated at
    # run time (a minute or more, several GiB of chDB data), never committed
    "10x": DemoScale("10x", wallets=28_390, markets=50_000, fills=12_250_000, k_min=8, k_span=40),
}

DEMO_TABLES = (
    "trades_raw", "markets_dim", "events_dim", "market_resolutions", "resolution_rejects",
    "wallet_resolution_outcomes", "step_d_worklist", "step_d_meta",
)
BASE_TS = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class DemoReport:
    scale: str
    seed: int
    trades: int
    markets: int
    wallets: int
    pairs: int
    resolutions: int
    rejected: int
    seconds: float
    held_back_markets: int = 0

    def line(self) -> str:
        return (
            f"demo data ({self.scale}, seed {self.seed}): {self.trades:,} trades, {self.markets:,} markets, "
            f"{self.wallets:,} wallets, {self.pairs:,} wallet×condition pairs, {self.resolutions:,} valid "
            f"resolutions, {self.rejected:,} invalid resolution rows rejected"
            + (f", {self.held_back_markets} markets left for Step A to fetch" if self.held_back_markets else "")
            + f" — {self.seconds:.1f}s"
        )


def generate_demo(ch: ClickHouse, scale: str = "small", seed: int = 7, snapshot_path: Path | None = None) -> DemoReport:
    """Replace the enrichment tables' contents with demo data. Idempotent: same seed, same rows.

    With `snapshot_path`, a Gamma snapshot of every demo market is written there, and a few markets
    (markets_dim rows) and a few resolutions are held back so that Steps A and C have real work to
    do offline from that file. Without it, every dimension and valid resolution is loaded directly.
    """
    if scale not in SCALES:
        raise BadInput(f"unknown demo scale {scale!r}: choose one of {', '.join(SCALES)}")
    if not 0 <= seed < 2**63:
        raise BadInput(f"demo seed must be a non-negative integer below 2^63, got {seed}")
    spec = SCALES[scale]
    started = time.monotonic()
    ensure_schema(ch)
    for table in DEMO_TABLES:
        ch.command(f"TRUNCATE TABLE $db.{table}")
    ch.command("DROP TABLE IF EXISTS $db.demo_resolution_candidates")
    params = {
        "seed": seed, "wallets": spec.wallets, "markets": spec.markets, "fills": spec.fills,
        "k_min": spec.k_min, "k_span": spec.k_span, "resolved_share": spec.resolved_share, "base_ts": BASE_TS,
        "hold_back": int(snapshot_path is not None),
    }

    def used(statement: str) -> dict[str, object]:
        # chDB rejects bound parameters a statement does not use; pass only the ones it names.
        return {k: v for k, v in params.items() if "{" + k + ":" in statement}

    for statement in (sql.DEMO_MARKETS, sql.DEMO_EVENTS, sql.DEMO_TRADES, sql.DEMO_RESOLUTION_CANDIDATES,
                      sql.DEMO_RESOLUTIONS_VALID, sql.DEMO_RESOLUTIONS_REJECTED):
        ch.command(statement, used(statement))
    held_markets = 0
    if snapshot_path is not None:
        write_snapshot(ch, snapshot_path)
        before = int(ch.scalar("SELECT count() FROM $db.markets_dim"))
        ch.command(sql.DEMO_HOLD_BACK_MARKETS, used(sql.DEMO_HOLD_BACK_MARKETS), {"mutations_sync": 2})
        held_markets = before - int(ch.scalar("SELECT count() FROM $db.markets_dim"))
    ch.command("DROP TABLE IF EXISTS $db.demo_resolution_candidates")
    row = ch.query(
        "SELECT count(), uniqExact(market_id), uniqExact(wallet_address), uniqExact(wallet_address, condition_id) "
        "FROM $db.trades_raw"
    ).rows[0]
    resolutions = int(ch.scalar("SELECT count() FROM $db.market_resolutions"))
    rejected = int(ch.scalar("SELECT count() FROM $db.resolution_rejects"))
    return DemoReport(scale, seed, int(row[0]), int(row[1]), int(row[2]), int(row[3]), resolutions, rejected,
                      time.monotonic() - started, held_markets)


def write_snapshot(ch: ClickHouse, path: Path) -> int:
    """Every demo market as Gamma returns it (JSON-encoded string fields included)."""
    markets = []
    for r in ch.query(sql.DEMO_SNAPSHOT_ROWS).dicts():
        closed = bool(r["closed"]) and len(r["payouts"]) == 2
        markets.append({
            "id": r["market_id"], "conditionId": r["condition_id"], "question": r["question"], "slug": r["slug"],
            "category": r["category"], "outcomes": json.dumps(["Yes", "No"]),
            "outcomePrices": json.dumps([_plain(p) for p in r["payouts"]] if closed else ["0.5", "0.5"]),
            "clobTokenIds": json.dumps(list(r["clob_token_ids"])), "closed": closed, "active": not closed,
            "endDate": r["end_date"], "closedTime": r["closed_time"] if closed else None,
            "umaResolutionStatus": "resolved" if closed else "",
            "events": [{"id": r["event_id"], "title": f"Demo event {r['event_id']}", "category": r["category"]}],
        })
    atomic_write_json(path, {"markets": markets})
    return len(markets)


def _plain(value: str) -> str:
    text = str(value)
    return text.rstrip("0").rstrip(".") if "." in text else text
