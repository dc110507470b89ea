"""What a loaded number may be: ASCII syntax, decimals and magnitude per ClickHouse column type.

One bound per column type, here only, so a loaded value can never make Step D's or a gate's
`sum()` wrap. ClickHouse Decimal arithmetic does not fail on overflow: a Decimal(38, 12) holds
26 integer digits and a sum past 10^26 silently wraps.

* `Decimal(18, 6)` (price, shares, payouts): 12 integer digits, so below 10^12.
* `Decimal(38, 12)` (usd_value, fee_usd, P&L): below 10^14 per row, so that 10^12 rows of them sum
  below 10^26. A trade's P&L (shares x payout - usd_value - fee) is then below 10^15.
"""

from __future__ import annotations

import re
from decimal import Decimal

TYPE_SHORT = "Decimal(18, 6)"
TYPE_WIDE = "Decimal(38, 12)"

#: (decimal places the type holds, largest magnitude accepted, exclusive)
TYPE_LIMITS: dict[str, tuple[int, Decimal]] = {
    TYPE_SHORT: (6, Decimal(10) ** 12),
    TYPE_WIDE: (12, Decimal(10) ** 14),
}

#: The type of every money column a loader reads (`payout` stands for each item of `payouts`).
COLUMN_TYPES: dict[str, str] = {
    "price": TYPE_SHORT,
    "shares": TYPE_SHORT,
    "payout": TYPE_SHORT,
    "payout_yes": TYPE_SHORT,
    "payout_no": TYPE_SHORT,
    "usd_value": TYPE_WIDE,
    "fee_usd": TYPE_WIDE,
}

#: A number as text: ASCII digits only (no `０.５`, `١٠` or `1_000`, which Python's Decimal takes),
#: an optional sign, decimal point and exponent.
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def limits(column: str) -> tuple[int, Decimal]:
    return TYPE_LIMITS[COLUMN_TYPES[column]]


def is_ascii_number(text: str) -> bool:
    return NUMBER.fullmatch(text) is not None
