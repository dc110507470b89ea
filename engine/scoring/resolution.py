"""Is a closed Gamma market resolved, and to which outcome?

Step C's rule: a resolution needs `closed` and final `outcomePrices`, each >= 0 and summing to 1.
`umaResolutionStatus` is never consulted (it lags and is sometimes absent). The payout clauses are
`resolution_rule.payouts_problem`, the rule Step C, the loaders and Step D apply; scoring adds only
that the prices be final (one side 1, or 50/50).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.enrichment.gamma import GammaMarket
from engine.enrichment.resolution_rule import payouts_problem
from engine.pipeline.gamma import parse_iso

_ONE = Decimal(1)
_HALF = Decimal("0.5")


@dataclass(frozen=True)
class Resolution:
    market_id: str
    payout_yes: float  # outcome index 0
    payout_no: float  # outcome index 1
    closed_at: datetime | None
    outcome0: str  # the name Gamma gives outcome index 0 ("Yes")
    source: str

    @property
    def y(self) -> int | None:
        """1 when outcome index 0 won, 0 when index 1 won, None for a 50/50 (void) resolution."""
        if self.payout_yes == 1.0:
            return 1
        if self.payout_no == 1.0:
            return 0
        return None


@dataclass(frozen=True)
class NotResolved:
    market_id: str
    reason: str
    pending: bool  # True: may resolve later (open, or closed with non-final prices); False: never scoreable


def resolution_of(m: GammaMarket, source: str) -> Resolution | NotResolved:
    if not m.closed:
        return NotResolved(m.id, "market is still open", pending=True)
    if len(m.outcome_prices) != 2 or len(m.outcomes) not in (0, 2):
        return NotResolved(m.id, f"not a binary market ({len(m.outcome_prices)} outcome prices)", pending=False)
    yes, no = m.outcome_prices
    problem = payouts_problem([yes, no])
    if problem is not None:
        return NotResolved(m.id, f"outcomePrices {[str(yes), str(no)]} are not payouts ({problem})", pending=True)
    # Final means a settled payout: one side 1, or the 50/50 split. A closed market still showing
    # 0.97/0.03 has not settled yet; it is pending, not scored against a guess.
    if not ({yes, no} <= {Decimal(0), _ONE} or (yes == _HALF and no == _HALF)):
        return NotResolved(m.id, f"outcomePrices {[str(yes), str(no)]} are not final yet", pending=True)
    closed_at = parse_iso(_iso(m.closed_time)) or parse_iso(m.end_date)
    return Resolution(m.id, float(yes), float(no), closed_at, m.outcomes[0] if m.outcomes else "", source)


def _iso(text: str) -> str:
    # Gamma writes closedTime as "2025-02-01 00:00:00+00"; fromisoformat wants "+00:00".
    t = text.strip()
    if len(t) >= 3 and t[-3] in "+-" and t[-2:].isdigit():
        t += ":00"
    return t
