"""Polymarket data-api records (`/trades`, `/activity`) → our canonical trade rows. Pure: no I/O.

One record (a CSV row, a JSON object, a JSON line) becomes one of three things:

* a `CanonicalTrade`: a fill in the columns of `loaders.COLUMNS["trades"]`;
* an `Activity`: a non-trade row (REWARD, REDEEM, MAKER_REBATE, TAKER_REBATE, SPLIT, MERGE,
  CONVERSION, and the API's rarer DEPOSIT/WITHDRAWAL/YIELD/REFERRAL_REWARD/MIGRATION/TIP), which the
  loader counts per type and does not load (the README's P&L section says why for each type);
* a `RowRefused` exception naming the field and the value: the caller lists it under the record's
  line, like every other bad row.

The facts of the real API that this module absorbs:

* `timestamp` is Unix seconds (milliseconds are accepted too, as the loader does).
* `price` and `size` are JSON floats and carry float noise (`0.998999995999005` for a 0.999 tick).
  Rounding policy: both are rounded half-to-even to 6 decimals, the scale of our Decimal columns and
  finer than any Polymarket tick (0.01, 0.001, 0.0001); a rounded value is never refused, and the
  caller counts the records whose price or size changed. A size that rounds to 0 is refused.
* Addresses and hashes come in checksummed (mixed) case: they are lowercased.
* No fill id: `transactionHash` is shared by every fill the transaction settled. `trade_id` is a
  hash of (transactionHash, wallet, asset, side, size, price, timestamp) over the *rounded* values,
  so the same fill gets the same id from a CSV, a JSON export or a noisy re-fetch.
* Some list fields arrive as JSON-encoded strings; none of the fields used here is a list, and
  fields this module does not know are ignored (the API adds and drops them).
* Activity rows have an empty `conditionId`, `outcomeIndex` 999 and price 0. A row that mixes the
  two shapes (a trade with outcomeIndex 999, a REDEEM with a fill's price and outcome, ...) is
  refused as "half trade, half activity": guessing which half is true would invent or lose money.
* negRisk events are sets of binary markets: each row names its own binary market's conditionId
  and outcomeIndex 0/1, so nothing here is special to them; outcomeIndex >= 2 is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

PLACES = 6
QUANTUM = Decimal(1).scaleb(-PLACES)  # 0.000001

# The activity types the issue names (their P&L meaning is in the README) ...
ACTIVITY_TYPES = ("REWARD", "REDEEM", "MAKER_REBATE", "TAKER_REBATE", "SPLIT", "MERGE", "CONVERSION")
# ... and the others the data-api documents for /activity; counted and skipped the same way.
OTHER_ACTIVITY_TYPES = ("DEPOSIT", "WITHDRAWAL", "YIELD", "REFERRAL_REWARD", "MIGRATION", "TIP")
NON_TRADE_TYPES = frozenset(ACTIVITY_TYPES + OTHER_ACTIVITY_TYPES)
ACTIVITY_OUTCOME_INDEX = 999

# Keys that tell a data-api record from a record of our own format (see `looks_like_polymarket`).
SIGNATURE_KEYS = frozenset({"proxyWallet", "conditionId", "transactionHash"})
OUR_KEYS = frozenset({"trade_id", "wallet_address", "condition_id"})

# The canonical columns written for every trade (a subset of loaders.COLUMNS["trades"], same names).
CANONICAL_COLUMNS = (
    "trade_id", "wallet_address", "market_id", "condition_id", "outcome_index", "side", "price",
    "shares", "usd_value", "fee_usd", "timestamp", "tx_hash",
)

ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")  # lowercased
HASH64 = re.compile(r"^0x[0-9a-f]{64}$")
_TOKEN_ID = re.compile(r"^[0-9]{1,80}$")


class RowRefused(ValueError):
    """The record cannot be loaded; the message names the field(s) and value(s)."""


@dataclass(frozen=True)
class CanonicalTrade:
    trade_id: str
    wallet_address: str
    condition_id: str
    asset: str
    outcome_index: int
    side: str
    price: Decimal
    shares: Decimal
    timestamp: int  # Unix seconds
    tx_hash: str
    rounded: bool  # price or size changed by the 6-decimal rounding

    @property
    def usd_value(self) -> Decimal:
        return (self.price * self.shares).quantize(Decimal(1).scaleb(-12))

    def values(self, market_id: str) -> tuple[str, ...]:
        """`row` as a tuple in CANONICAL_COLUMNS order (what the spool writer writes)."""
        return (self.trade_id, self.wallet_address, market_id, self.condition_id, str(self.outcome_index), self.side,
                f"{self.price:f}", f"{self.shares:f}", f"{self.usd_value:f}", "0", str(self.timestamp), self.tx_hash)

    def row(self, market_id: str) -> dict[str, str]:
        """The canonical row (strings, as a CSV holds them). `market_id` comes from markets_dim;
        until Step A knows the market it is the condition id (see polymarket_load)."""
        return {
            "trade_id": self.trade_id, "wallet_address": self.wallet_address, "market_id": market_id,
            "condition_id": self.condition_id, "outcome_index": str(self.outcome_index), "side": self.side,
            "price": f"{self.price:f}", "shares": f"{self.shares:f}", "usd_value": f"{self.usd_value:f}",
            "fee_usd": "0",  # the data-api lists no fee per fill
            "timestamp": str(self.timestamp), "tx_hash": self.tx_hash,
        }


@dataclass(frozen=True)
class Activity:
    type: str
    wallet_address: str
    usdc: Decimal  # usdcSize (or size) of the row, for the per-type totals in the report


def looks_like_polymarket(keys: Iterable[str]) -> bool:
    """A header (or a JSON object's keys) from the data-api rather than our own trades format."""
    present = {str(k).strip() for k in keys}
    return SIGNATURE_KEYS <= present and not (OUR_KEYS & present)


# --- field readers ---------------------------------------------------------------------------------
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    return "" if _blank(value) else str(value).strip()


def _number(record: Mapping[str, Any], name: str) -> Decimal | None:
    """A JSON number or numeric string as the exact Decimal of its text (str(float) is the shortest
    repr, so 0.998999995999005 stays that, not its binary expansion). None when absent."""
    value = record.get(name)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RowRefused(f"{name} must be a number, got {value!r}")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise RowRefused(f"{name} is not a number ({_show(value)})") from None
    if not d.is_finite():
        raise RowRefused(f"{name} is not finite ({_show(value)})")
    return d


def _show(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "…"


def round6(value: Decimal) -> Decimal:
    """The rounding policy: half-to-even at 6 decimals."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def _outcome_index(record: Mapping[str, Any]) -> int | None:
    d = _number(record, "outcomeIndex")
    if d is None:
        return None
    if d != d.to_integral_value():
        raise RowRefused(f"outcomeIndex must be an integer, got {_show(record.get('outcomeIndex'))}")
    return int(d)


def _timestamp(record: Mapping[str, Any]) -> int:
    d = _number(record, "timestamp")
    if d is None:
        raise RowRefused("timestamp is missing")
    secs = int(d / 1000) if d > Decimal("1e11") else int(d)  # milliseconds, as the loader accepts
    if not 946_684_800 <= secs < 4_291_747_200:  # 2000-01-01 .. 2106-01-01, the loader's range
        raise RowRefused(f"timestamp {_show(record.get('timestamp'))} is not Unix seconds between 2000 and 2105")
    return secs


def _address(record: Mapping[str, Any], name: str) -> str:
    text = _text(record, name).lower()  # checksummed case is only a checksum: lowercase is canonical
    if not text:
        raise RowRefused(f"{name} is missing")
    if not ADDRESS.match(text):
        raise RowRefused(f"{name} is not an address (0x + 40 hex digits): {_show(record.get(name))}")
    return text


def _hash64(record: Mapping[str, Any], name: str) -> str:
    text = _text(record, name).lower()
    if not text:
        raise RowRefused(f"{name} is missing")
    if not HASH64.match(text):
        raise RowRefused(f"{name} is not a 0x + 64 hex digit hash: {_show(record.get(name))}")
    return text


def trade_id_for(tx_hash: str, wallet: str, asset: str, side: str, size: Decimal, price: Decimal, ts: int) -> str:
    """Deterministic fill id over the canonical (lowercased, rounded) values."""
    key = "|".join((tx_hash, wallet, asset, side, f"{round6(size):f}", f"{round6(price):f}", str(ts)))
    return "pm-" + hashlib.sha256(key.encode()).hexdigest()[:40]


# --- classification --------------------------------------------------------------------------------
def classify(record: Mapping[str, Any]) -> CanonicalTrade | Activity:
    """One data-api record → a trade or an activity; raises RowRefused with every problem found."""
    kind = _text(record, "type").upper()
    condition = _text(record, "conditionId")
    try:
        oi = _outcome_index(record)
        price = _number(record, "price")
    except RowRefused as exc:
        if kind in NON_TRADE_TYPES:
            oi, price = None, None  # an activity's unused fields do not make it unloadable
        else:
            raise exc
    activity_marks = [m for m, on in (
        ("conditionId is empty", not condition),
        (f"outcomeIndex is {ACTIVITY_OUTCOME_INDEX}", oi == ACTIVITY_OUTCOME_INDEX),
        ("price is 0", price is not None and price == 0),
    ) if on]
    if kind and kind != "TRADE" and kind not in NON_TRADE_TYPES:
        raise RowRefused(f"type {_show(record.get('type'))} is not TRADE or a known activity type "
                         f"({', '.join(ACTIVITY_TYPES + OTHER_ACTIVITY_TYPES)})")
    if kind in NON_TRADE_TYPES:
        fill_marks = [m for m, on in (
            (f"conditionId {condition}", bool(condition)),
            (f"outcomeIndex {oi}", oi in (0, 1)),
            (f"price {price}", price is not None and price > 0),
        ) if on]
        if len(fill_marks) == 3:  # every field of a fill: which half is true cannot be told
            raise RowRefused(f"half trade, half activity: type {kind} but {', '.join(fill_marks)} are a fill's")
        return _activity(record, kind)
    if activity_marks:
        if kind == "TRADE" or len(activity_marks) < 3:
            fill_marks = [m for m, on in (
                (f"type {kind}", kind == "TRADE"), (f"conditionId {condition}", bool(condition)),
                (f"outcomeIndex {oi}", oi in (0, 1)), (f"price {price}", price is not None and price > 0),
            ) if on]
            raise RowRefused(f"half trade, half activity: {', '.join(activity_marks)} (an activity's) but "
                             f"{', '.join(fill_marks) or 'no type'} (a trade's)")
        raise RowRefused("a non-trade activity row (empty conditionId, outcomeIndex 999, price 0) without a "
                         "`type`: export /activity with its type column")
    return _trade(record, condition, oi, price)


def _activity(record: Mapping[str, Any], kind: str) -> Activity:
    wallet = _text(record, "proxyWallet").lower()
    usdc: Decimal = Decimal(0)
    for name in ("usdcSize", "size"):
        try:
            value = _number(record, name)
        except RowRefused:
            value = None
        if value is not None:
            usdc = value
            break
    return Activity(kind, wallet, usdc)


def _trade(record: Mapping[str, Any], condition: str, oi: int | None, price: Decimal | None) -> CanonicalTrade:
    problems: list[str] = []

    def check(fn: Any) -> Any:
        try:
            return fn()
        except RowRefused as exc:
            problems.append(str(exc))
            return None

    wallet = check(lambda: _address(record, "proxyWallet"))
    cond = check(lambda: _hash64(record, "conditionId")) if condition else None
    if not condition:
        problems.append("conditionId is missing")
    tx = check(lambda: _hash64(record, "transactionHash"))
    asset = _text(record, "asset")
    if not asset:
        problems.append("asset is missing")
    elif not _TOKEN_ID.match(asset):
        problems.append(f"asset is not a token id (decimal digits): {_show(record.get('asset'))}")
    side = _text(record, "side").upper()
    if side not in ("BUY", "SELL"):
        problems.append(f"side must be BUY or SELL, got {_show(record.get('side'))}")
    if oi is None:
        problems.append("outcomeIndex is missing")
    elif oi not in (0, 1):
        problems.append(f"outcomeIndex must be 0 or 1 (binary markets; negRisk events are sets of them), got {oi}")
    size = check(lambda: _number(record, "size"))
    ts = check(lambda: _timestamp(record))
    p6 = s6 = None
    if price is None:
        problems.append("price is missing")
    else:
        p6 = round6(price)
        if not 0 <= p6 <= 1:
            problems.append(f"price {price} is outside [0, 1]")
    if size is None:
        if "size" not in {p.split(" ", 1)[0] for p in problems}:
            problems.append("size is missing")
    else:
        s6 = round6(size)
        if s6 <= 0:
            problems.append(f"size must be > 0 after rounding to {PLACES} decimals, got {size}")
        elif s6 >= Decimal(10) ** 12:
            problems.append(f"size {size} is implausibly large (>= 1e12)")
    if problems:
        raise RowRefused("; ".join(problems))
    assert wallet and cond and tx and p6 is not None and s6 is not None and ts is not None and oi is not None
    assert price is not None and size is not None
    return CanonicalTrade(
        trade_id=trade_id_for(tx, wallet, asset, side, s6, p6, ts), wallet_address=wallet, condition_id=cond,
        asset=asset, outcome_index=oi, side=side, price=p6, shares=s6, timestamp=ts, tx_hash=tx,
        rounded=(p6 != price or s6 != size),
    )
