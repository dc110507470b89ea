"""Where resolutions come from: Gamma `/markets?id=…` in batches, or a saved snapshot (offline).

All HTTP goes through the enrichment's Gamma client (retries, backoff, Retry-After, rate limit,
string-encoded list fields); when the shared engine/gamma_transport.py lands, only `GammaLookup`
changes. Gamma may hide closed markets unless asked, so each batch asks `closed=true` first and
then `closed=false` for the ids it did not get: an id in neither answer has disappeared (missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from engine.enrichment.gamma import FetchReport, GammaClient, GammaMarket, SnapshotSource, parse_markets

BATCH_SIZE = 50  # ids per request: keeps the URL well under common 8 KiB limits


@dataclass
class Lookup:
    markets: dict[str, GammaMarket] = field(default_factory=dict)  # by market id
    malformed: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0


class ResolutionSource(Protocol):
    description: str

    async def lookup(self, market_ids: Sequence[str]) -> Lookup: ...

    async def aclose(self) -> None: ...


class GammaLookup:
    def __init__(self, base_url: str, *, backoff_base_s: float = 0.5, max_attempts: int = 5) -> None:
        self.client = GammaClient(base_url, backoff_base_s=backoff_base_s, max_attempts=max_attempts,
                                  batch_size=BATCH_SIZE)
        self.description = self.client.description

    async def _ask(self, ids: Sequence[str], closed: bool, out: Lookup) -> None:
        params = httpx.QueryParams([*(("id", i) for i in ids), ("closed", "true" if closed else "false"),
                                    ("limit", str(2 * len(ids)))])
        payload = await self.client.get_json("/markets", params)  # raises GammaError after its retries
        out.requests += 1
        report = FetchReport()
        parse_markets(payload, report)
        out.malformed.extend(report.malformed)
        wanted = set(ids)
        for m in report.markets:
            if m.id in wanted and m.id not in out.markets:
                out.markets[m.id] = m

    async def lookup(self, market_ids: Sequence[str]) -> Lookup:
        out = Lookup()
        await self._ask(market_ids, True, out)
        rest = [i for i in market_ids if i not in out.markets]
        if rest:
            await self._ask(rest, False, out)
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


class SnapshotLookup:
    """A saved Gamma answer: a JSON list of market objects, exactly as the API sends them."""

    def __init__(self, path: Path) -> None:
        snap = SnapshotSource(path)  # BadInput when unreadable or not a list of markets
        self.description = snap.description
        self.by_id = {m.id: m for m in snap.report.markets if m.id}
        self.malformed = list(snap.report.malformed)

    async def lookup(self, market_ids: Sequence[str]) -> Lookup:
        return Lookup({i: self.by_id[i] for i in market_ids if i in self.by_id})

    async def aclose(self) -> None:
        pass
