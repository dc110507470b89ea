"""A small Polymarket world in the data-api's documented shape, with its hand-computed P&L.

Markets: `m1` (a plain binary market) and the negRisk event "who-wins" with two binary markets
`m2` and `m3`. Matches (both sides of every fill present):

1. m1, tx1: alice (taker) BUY YES 100 @ 0.60 against bob SELL YES 60 (opposite) and carol BUY NO
   40 @ 0.40 (complement: a mint). Three fills, one transaction.
2. m1, tx2: bob (taker) SELL YES 30 @ 0.70 against alice BUY YES 30.
3. m2, tx3: dave (taker) BUY NO 50 @ 0.25 against erin SELL NO 50.
4. m3, tx4: erin (taker) BUY YES 20 @ 0.999 against dave SELL YES 20 (price sent as 0.998999995999005).

Resolutions: m1 YES, m2 NO, m3 YES. Hand computation, per trade s × shares × (payout − price):

    m1  alice  100 × (1 − 0.60) + 30 × (1 − 0.70)  =  40 + 9   =  49
        bob   −60 × (1 − 0.60) − 30 × (1 − 0.70)   = −24 − 9   = −33
        carol  40 × (0 − 0.40)                      =            −16
    m2  dave   50 × (1 − 0.25)                      =            37.5
        erin  −50 × (1 − 0.25)                      =           −37.5
    m3  erin   20 × (1 − 0.999)                     =             0.02
        dave  −20 × (1 − 0.999)                     =            −0.02

Non-trade activity in the export (skipped, counted): REDEEM (alice), SPLIT (carol), REWARD (bob),
MAKER_REBATE (bob). The taker row of tx1 is repeated (as a page past the offset cap repeats).
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tests.support.data_api_server import Match, PmMarket, activity, match, wallet

M1 = PmMarket("will_it_rain", "Will it rain, \"really\", tomorrow?", "will-it-rain", 100, "501")
M2 = PmMarket("who_wins_ann", "Who wins? Ann", "who-wins", 200, "601")
M3 = PmMarket("who_wins_bob", "Who wins? Bob", "who-wins", 200, "602")
MARKETS = (M1, M2, M3)
PAYOUTS = {M1: ("1", "0"), M2: ("0", "1"), M3: ("1", "0")}
T0 = 1_735_689_600  # 2025-01-01

BIO = 'Trader, "quant" 📈\nsecond line, with commas'


def matches() -> list[Match]:
    return [
        match(M1, "tx1", T0 + 10, "alice", "BUY", 0, D("0.60"), [("bob", D(60), "opposite"), ("carol", D(40), "complement")], bio=BIO),
        match(M1, "tx2", T0 + 20, "bob", "SELL", 0, D("0.70"), [("alice", D(30), "opposite")]),
        match(M2, "tx3", T0 + 30, "dave", "BUY", 1, D("0.25"), [("erin", D(50), "opposite")]),
        match(M3, "tx4", T0 + 40, "erin", "BUY", 0, D("0.999"), [("dave", D(20), "opposite")]),
    ]


EXPECTED_PNL = {  # (wallet, market) -> realized P&L
    ("alice", M1): D(49), ("bob", M1): D(-33), ("carol", M1): D(-16),
    ("dave", M2): D("37.5"), ("erin", M2): D("-37.5"),
    ("erin", M3): D("0.02"), ("dave", M3): D("-0.02"),
}
FILLS = 9  # rows of the four matches


def activities() -> list[dict[str, Any]]:
    return [
        activity("REDEEM", "alice", T0 + 900, D(130), "redeem1"),
        activity("SPLIT", "carol", T0 + 5, D(10), "split1"),
        activity("REWARD", "bob", T0 + 950, D("1.5"), "reward1"),
        activity("MAKER_REBATE", "bob", T0 + 960, D("0.25"), "rebate1"),
    ]


def export_rows() -> list[dict[str, Any]]:
    """Newest first, as the API pages them; tx1's taker row repeated; activity rows mixed in."""
    rows = [r for mt in matches() for r in mt.rows]
    rows.append(dict(matches()[0].taker))  # the repeated page's row
    rows.extend(activities())
    return sorted(rows, key=lambda r: -int(r["timestamp"]))


def columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    return cols


def write_export(path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    rows = export_rows() if rows is None else rows
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns(rows))
            w.writeheader()
            for r in rows:
                w.writerow(r)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def gamma_snapshot(path: Path) -> Path:
    """What Gamma says about the three markets (closed, final payouts): Steps A and C read it."""
    markets = []
    for m in MARKETS:
        yes, no = PAYOUTS[m]
        markets.append({
            "id": m.gamma_id, "conditionId": m.condition_id, "question": m.title, "slug": m.slug,
            "category": "Weather" if m is M1 else "Politics", "outcomes": json.dumps(["Yes", "No"]),
            "outcomePrices": json.dumps([yes, no]), "clobTokenIds": json.dumps([m.token(0), m.token(1)]),
            "closed": True, "active": False, "endDate": "2025-02-01T00:00:00Z", "closedTime": "2025-02-01 00:00:00+00",
            "umaResolutionStatus": "resolved", "negRisk": m is not M1,
            "events": [{"id": str(m.event_id), "title": m.event_slug, "category": "Politics"}],
        })
    path.write_text(json.dumps({"markets": markets}), encoding="utf-8")
    return path


def addr(name: str) -> str:
    return wallet(name).lower()
