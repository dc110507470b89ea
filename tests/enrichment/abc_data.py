"""Small hand-made enrichment data for the loader / Steps A–C / mutation / reset tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from engine.enrichment.schema import MARKETS_COLUMNS, ensure_schema

TRADE_FIELDS = [
    "trade_id", "wallet_address", "market_id", "condition_id", "outcome_index", "side", "price",
    "shares", "usd_value", "fee_usd", "timestamp", "tx_hash",
]


def cond(n: int) -> str:
    return "0x" + f"{n:064x}"


def trade(i: int, *, market: int = 1, wallet: str = "0xw1", outcome: int = 0, side: str = "BUY",
          price: str = "0.4", shares: str = "10", fee: str = "0", **over: Any) -> dict[str, Any]:
    from decimal import Decimal

    row = {
        "trade_id": f"t{i}", "wallet_address": wallet, "market_id": f"m{market}", "condition_id": cond(market),
        "outcome_index": outcome, "side": side, "price": price, "shares": shares,
        "usd_value": str(Decimal(price) * Decimal(shares)), "fee_usd": fee,
        "timestamp": f"2025-01-0{1 + i % 9}T12:00:00Z", "tx_hash": f"0xtx{i}",
    }
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> Path:
    fields = fields or list(rows[0].keys())
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def seed_trades(ch: Any, rows: list[dict[str, Any]]) -> None:
    """Insert trades directly (tests of later steps should not depend on the loader)."""
    from engine.enrichment.loaders import validate_trade

    ensure_schema(ch)
    from engine.enrichment.loaders import TRADE_STAGE_COLUMNS

    ch.insert_rows("trades_raw", TRADE_STAGE_COLUMNS, [validate_trade(r)[1] for r in rows])


def seed_market(ch: Any, market: int, category: str = "Politics", canonical: str = "", closed: int = 0) -> None:
    from engine.enrichment.loaders import upsert_markets, validate_market

    ensure_schema(ch)
    upsert_markets(ch, [validate_market({"market_id": f"m{market}", "condition_id": cond(market),
                                         "question": f"Q{market}?", "category": category,
                                         "canonical_category": canonical or None, "closed": closed}, "test")[1]])


def gamma_market(market: int, *, gamma_id: str | None = None, closed: bool = True, prices: Any = ("1", "0"),
                 category: str = "Politics", outcomes: Any = ("Yes", "No"), **over: Any) -> dict[str, Any]:
    """A market as Gamma's /markets returns it: outcomes and prices are JSON-encoded strings."""
    m = {
        "id": gamma_id or str(500000 + market), "conditionId": cond(market), "question": f"Will {market} happen?",
        "slug": f"will-{market}-happen", "category": category, "outcomes": json.dumps(list(outcomes)),
        "outcomePrices": json.dumps(list(prices)), "clobTokenIds": json.dumps([f"tok{market}a", f"tok{market}b"]),
        "closed": closed, "active": not closed, "endDate": "2025-02-01T00:00:00Z",
        "closedTime": "2025-02-01 00:00:00+00", "umaResolutionStatus": "resolved" if closed else "",
        "events": [{"id": f"e{market}", "title": f"Event {market}", "category": category}],
    }
    m.update(over)
    return m


__all__ = ["MARKETS_COLUMNS"]
