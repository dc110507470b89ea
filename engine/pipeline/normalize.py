"""Gamma market JSON -> events / markets / contracts (plain dataclasses).

Gamma sends `outcomes`, `outcomePrices` and `clobTokenIds` as JSON-encoded strings; a market's event
is the first element of `events`. Anything that does not add up (lengths differ, prices outside
[0, 1], no outcomes) is a `NormalizationError`: that market is a retriable failure, the run goes on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.gamma_payloads import decode_json_list


class NormalizationError(ValueError):
    pass


@dataclass(frozen=True)
class Contract:
    outcome_index: int
    outcome: str
    price: float | None
    token_id: str | None


@dataclass(frozen=True)
class Market:
    market_id: str
    question: str
    condition_id: str | None
    slug: str | None
    end_date: str | None
    volume: float | None
    liquidity: float | None
    event_id: str | None
    event_title: str | None
    event_slug: str | None
    contracts: tuple[Contract, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Market:
        contracts = tuple(Contract(**c) for c in data["contracts"])
        return Market(**{**data, "contracts": contracts})


@dataclass(frozen=True)
class EventGroup:
    event_key: str  # the upstream event id, or market:<sorted market ids> when there is no event
    event_id: str | None
    title: str
    slug: str | None
    markets: tuple[Market, ...]

    @property
    def market_ids(self) -> list[str]:
        return [m.market_id for m in self.markets]

    def to_dict(self) -> dict[str, Any]:
        return {"event_key": self.event_key, "event_id": self.event_id, "title": self.title, "slug": self.slug,
                "markets": [m.to_dict() for m in self.markets]}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> EventGroup:
        return EventGroup(data["event_key"], data.get("event_id"), data.get("title") or "", data.get("slug"),
                          tuple(Market.from_dict(m) for m in data["markets"]))


def _decode_list(raw: dict[str, Any], key: str, required: bool) -> list[Any] | None:
    try:
        value = decode_json_list(raw.get(key))
    except ValueError as exc:
        raise NormalizationError(f"{key} {exc}") from None
    if value is None and required:
        raise NormalizationError(f"{key} is missing")
    return value


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def normalize_market(raw: dict[str, Any]) -> Market:
    market_id = str(raw.get("id", "")).strip()
    if not market_id:
        raise NormalizationError("market has no id")
    question = str(raw.get("question") or "").strip()
    if not question:
        raise NormalizationError("question is missing")
    outcomes = _decode_list(raw, "outcomes", required=True) or []
    if not outcomes:
        raise NormalizationError("outcomes is empty")
    if not all(isinstance(o, str) and o.strip() for o in outcomes):
        raise NormalizationError("outcomes must be non-empty strings")
    prices = _decode_list(raw, "outcomePrices", required=False)
    tokens = _decode_list(raw, "clobTokenIds", required=False)
    if prices is not None and len(prices) != len(outcomes):
        raise NormalizationError(f"outcomePrices has {len(prices)} entries for {len(outcomes)} outcomes")
    if tokens is not None and len(tokens) != len(outcomes):
        raise NormalizationError(f"clobTokenIds has {len(tokens)} entries for {len(outcomes)} outcomes")
    contracts = []
    for i, outcome in enumerate(outcomes):
        price = None
        if prices is not None:
            price = _number(prices[i])
            if price is None or not 0.0 <= price <= 1.0:
                raise NormalizationError(f"outcomePrices[{i}] = {prices[i]!r} is not a price in [0, 1]")
        contracts.append(Contract(i, outcome.strip(), price, str(tokens[i]) if tokens is not None else None))
    events = raw.get("events")
    event = events[0] if isinstance(events, list) and events and isinstance(events[0], dict) else None
    event_id = str(event["id"]).strip() if event and event.get("id") not in (None, "") else None
    return Market(
        market_id=market_id,
        question=question,
        condition_id=raw.get("conditionId") or None,
        slug=raw.get("slug") or None,
        end_date=raw.get("endDate") or (event or {}).get("endDate") or None,
        volume=_number(raw.get("volumeNum", raw.get("volume"))),
        liquidity=_number(raw.get("liquidityNum", raw.get("liquidity"))),
        event_id=event_id,
        event_title=(event or {}).get("title") or None,
        event_slug=(event or {}).get("slug") or None,
        contracts=tuple(contracts),
        raw=raw,
    )


def group_by_event(markets: list[Market]) -> list[EventGroup]:
    """Markets sharing an event form one group; a market without an event is a group of its own.

    Order follows the first appearance of each event, so runs over the same input process events
    in the same order.
    """
    groups: dict[str, list[Market]] = {}
    for m in markets:
        key = m.event_id if m.event_id else f"market:{m.market_id}"
        groups.setdefault(key, []).append(m)
    out = []
    for key, ms in groups.items():
        first = ms[0]
        if first.event_id:
            out.append(EventGroup(key, first.event_id, first.event_title or first.question, first.event_slug, tuple(ms)))
        else:
            out.append(EventGroup(f"market:{','.join(sorted(m.market_id for m in ms))}", None, first.question, first.slug, tuple(ms)))
    return out
