"""Test-only: a loopback stand-in of Polymarket's data-api `/trades` (and Gamma's `/events?slug=`),
with the quirks of the real one, plus builders of data-api-shaped rows for export fixtures.

Rows follow the documented shape (proxyWallet, side, asset, conditionId, size, price, timestamp,
title, slug, icon, eventSlug, outcome, outcomeIndex, name, pseudonym, bio, profileImage,
profileImageOptimized, transactionHash). One *match* is several rows with one transactionHash: the
taker's row (size = the sum of its makers') and one row per maker; `takerOnly=true` (the API's
default) serves only the taker rows.

Quirks (each switchable):
* `offset_cap`: an offset past it is answered with the page at the cap again (the repeated last page),
  or with HTTP 400 (`past_cap="400"`);
* `max_limit`: a larger `limit` is clamped, so pages can be shorter than asked without being the end;
* `duplicate_every`: every n-th served row is sent twice in a row;
* faults via `server.script` (JsonServer's): e.g. (429, {"Retry-After": "0"}, b"...") or a 500;
* a malformed row or a half-trade-half-activity row: add it with `add_raw`;
* addresses in checksummed (mixed) case and prices with float noise (0.998999995999005 for 0.999);
* `delay_s`: each answer waits, so a test can signal a run between pages.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.support.json_server import JsonServer, Reply, json_reply


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def wallet(name: str) -> str:
    """A wallet address in checksummed-looking mixed case (the API's style)."""
    h = _hex("wallet:" + name, 40)
    return "0x" + "".join(c.upper() if c.isalpha() and i % 2 else c for i, c in enumerate(h))


def tx_hash(name: str) -> str:
    h = _hex("tx:" + name, 64)
    return "0x" + "".join(c.upper() if c.isalpha() and i % 3 == 0 else c for i, c in enumerate(h))


@dataclass(frozen=True)
class PmMarket:
    key: str
    title: str
    event_slug: str
    event_id: int
    gamma_id: str

    @property
    def condition_id(self) -> str:
        return "0x" + _hex("cond:" + self.key, 64)

    @property
    def slug(self) -> str:
        return self.key.replace("_", "-")

    def token(self, outcome: int) -> str:
        return str(int(_hex(f"token:{self.key}:{outcome}", 30), 16))


def noisy(price: Decimal) -> float:
    """The float the API sends for a tick price: a little below it, as its float arithmetic does."""
    return float(price) - 4.000995e-9 if price > Decimal("0.5") else float(price)


def row(m: PmMarket, who: str, side: str, outcome: int, size: Decimal, price: Decimal, ts: int, tx: str,
        *, bio: str = "", name: str | None = None) -> dict[str, Any]:
    return {
        "proxyWallet": wallet(who), "side": side, "asset": m.token(outcome), "conditionId": m.condition_id,
        "size": float(size), "price": noisy(price), "timestamp": ts, "title": m.title, "slug": m.slug,
        "icon": "https://example.invalid/icon.png", "eventSlug": m.event_slug, "outcome": "Yes" if outcome == 0 else "No",
        "outcomeIndex": outcome, "name": who if name is None else name, "pseudonym": f"{who.title()}-Pseudo",
        "bio": bio, "profileImage": "", "profileImageOptimized": "", "transactionHash": tx,
    }


@dataclass
class Match:
    """One matched order: a taker against one or more makers, in one transaction."""

    market: PmMarket
    tx: str
    ts: int
    taker: dict[str, Any]
    makers: list[dict[str, Any]]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.taker, *self.makers]


def match(m: PmMarket, name: str, ts: int, taker: str, side: str, outcome: int, price: Decimal,
          makers: list[tuple[str, Decimal, str]], *, bio: str = "") -> Match:
    """`makers`: (wallet, size, how) with how = "opposite" (the maker takes the other side of the same
    token at the same price) or "complement" (the maker does the same side of the other outcome at
    1 - price: together they mint (BUY) or merge (SELL) complete sets)."""
    tx = tx_hash(name)
    rows = []
    for who, size, how in makers:
        if how == "opposite":
            rows.append(row(m, who, "SELL" if side == "BUY" else "BUY", outcome, size, price, ts, tx))
        else:
            rows.append(row(m, who, side, 1 - outcome, size, 1 - price, ts, tx))
    total = sum((s for _, s, _ in makers), Decimal(0))
    return Match(m, tx, ts, row(m, taker, side, outcome, total, price, ts, tx, bio=bio), rows)


ACTIVITY_ROW_TEMPLATE = {
    "conditionId": "", "outcomeIndex": 999, "price": 0, "side": "", "asset": "", "outcome": "", "title": "",
    "slug": "", "eventSlug": "", "icon": "", "name": "", "pseudonym": "", "bio": "", "profileImage": "",
    "profileImageOptimized": "",
}


def activity(kind: str, who: str, ts: int, usdc: Decimal, name: str) -> dict[str, Any]:
    return {**ACTIVITY_ROW_TEMPLATE, "type": kind, "proxyWallet": wallet(who), "timestamp": ts, "size": float(usdc),
            "usdcSize": float(usdc), "transactionHash": tx_hash(name)}


class DataApiServer:
    def __init__(self, *, offset_cap: int | None = None, max_limit: int = 500, duplicate_every: int = 0,
                 delay_s: float = 0.0, past_cap: str = "repeat") -> None:
        self.offset_cap = offset_cap
        self.past_cap = past_cap  # "repeat" (the last page again) or "400" (as measured on busy markets)
        self.max_limit = max_limit
        self.duplicate_every = duplicate_every
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.entries: list[tuple[int, int, bool, dict[str, Any]]] = []  # (ts, seq, is_taker, row)
        self.events: dict[str, list[PmMarket]] = {}
        self.served_rows = 0
        self.server = JsonServer(self._answer)

    # --- content -----------------------------------------------------------------------------------
    def add(self, *matches: Match) -> None:
        with self.lock:
            for mt in matches:
                for i, r in enumerate(mt.rows):
                    self.entries.append((mt.ts, len(self.entries), i == 0, r))
                self.events.setdefault(mt.market.event_slug, [])
                if mt.market not in self.events[mt.market.event_slug]:
                    self.events[mt.market.event_slug].append(mt.market)

    def add_raw(self, ts: int, r: dict[str, Any], taker: bool = True) -> None:
        """A row exactly as given (malformed, half activity, ...), listed by `market` when it names one."""
        with self.lock:
            self.entries.append((ts, len(self.entries), taker, r))

    # --- serving -----------------------------------------------------------------------------------
    def _answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        if self.delay_s:
            time.sleep(self.delay_s)
        one = {k: v[-1] for k, v in query.items()}
        if path == "/events":
            markets = self.events.get(one.get("slug", ""), [])
            if not markets:
                return json_reply([])
            return json_reply([{"id": str(markets[0].event_id), "slug": markets[0].event_slug, "negRisk": len(markets) > 1,
                                "markets": [{"id": m.gamma_id, "conditionId": m.condition_id} for m in markets]}])
        if path != "/trades":
            return json_reply({"error": "not found"}, 404)
        try:
            limit = int(one.get("limit", "100"))
            offset = int(one.get("offset", "0"))
        except ValueError:
            return json_reply({"error": "limit and offset must be integers"}, 400)
        if limit < 0 or offset < 0:
            return json_reply({"error": "limit and offset must be >= 0"}, 400)
        limit = min(limit, self.max_limit)
        taker_only = one.get("takerOnly", "true").lower() != "false"
        markets = {m.lower() for m in one.get("market", "").split(",") if m}
        user = one.get("user", "").lower()
        side = one.get("side", "").upper()
        with self.lock:
            entries = sorted(self.entries, key=lambda e: (-e[0], -e[1]))  # newest first
        rows = [(seq, r) for ts, seq, is_taker, r in entries
                if (is_taker or not taker_only)
                and (not markets or str(r.get("conditionId", "")).lower() in markets)
                and (not user or str(r.get("proxyWallet", "")).lower() == user)
                and (not side or r.get("side") == side)]
        if self.offset_cap is not None and offset > self.offset_cap:
            if self.past_cap == "400":
                return json_reply({"error": f"offset must be <= {self.offset_cap}"}, 400)
            offset = self.offset_cap  # the real API's quirk: past its cap it serves the last page again
        page = rows[offset:offset + limit]
        out: list[dict[str, Any]] = []
        for seq, r in page:
            out.append(r)
            if self.duplicate_every and seq % self.duplicate_every == self.duplicate_every - 1:
                out.append(r)  # the same row twice (per row, so a repeated page repeats exactly)
        with self.lock:
            self.served_rows += len(out)
        return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def seen(self) -> list[Any]:
        return self.server.seen

    @property
    def script(self) -> list[Reply | str]:
        return self.server.script

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> DataApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
