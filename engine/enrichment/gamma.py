"""Polymarket Gamma client for enrichment (Steps A and C), plus an offline snapshot source.

Gamma sends `outcomes`, `outcomePrices` and `clobTokenIds` as JSON-encoded strings; they are
decoded here, at the edge, into a typed `GammaMarket`. Requests go through the shared transport
(`engine.gamma_transport`): one pooled client, retries with backoff on transport errors, 5xx, 429
(exactly `Retry-After`) and malformed JSON, and a client-side limit of 250 requests per 10 s under
Gamma's published 300. The old system had no retry at all (one 429 aborted a run).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import BadInput
from engine.gamma_payloads import decode_json_list
from engine.redact import redact
from engine.gamma_transport import (
    RATE_LIMIT_PERIOD_S,
    RATE_LIMIT_REQUESTS,
    GammaError,
    GammaUnavailable,
    JsonReply,
    JsonTransport,
    Limiter,
    Params,
    RetryPolicy,
    Sleep,
)

__all__ = ["DEFAULT_BATCH", "DEFAULT_RATE", "FetchReport", "GammaClient", "GammaError", "GammaMarket",
           "GammaUnavailable", "MarketSource", "SnapshotSource", "chunked", "parse_markets"]

DEFAULT_RATE = (RATE_LIMIT_REQUESTS, RATE_LIMIT_PERIOD_S)
DEFAULT_BATCH = 50  # condition ids per request: keeps URLs well under common 8 KiB limits


def _json_list(value: Any) -> list[Any]:
    """Gamma's string-encoded lists ("[\"Yes\", \"No\"]"), or real lists; [] when absent."""
    try:
        return decode_json_list(value) or []
    except ValueError as exc:
        raise ValueError(f"list {exc}") from None


class GammaMarket(BaseModel):
    """The fields of a Gamma market that enrichment uses (others are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = ""
    condition_id: str = Field("", alias="conditionId")
    question: str = ""
    slug: str = ""
    category: str = ""
    outcomes: list[str] = Field(default_factory=list)
    outcome_prices: list[Decimal] = Field(default_factory=list, alias="outcomePrices")
    clob_token_ids: list[str] = Field(default_factory=list, alias="clobTokenIds")
    closed: bool = False
    active: bool | None = None
    end_date: str = Field("", alias="endDate")
    closed_time: str = Field("", alias="closedTime")
    uma_resolution_status: str = Field("", alias="umaResolutionStatus")
    event_id: str = ""
    event_title: str = ""
    event_category: str = ""
    tags: list[str] = Field(default_factory=list)

    @field_validator("id", "condition_id", "question", "slug", "category", "end_date", "closed_time",
                     "uma_resolution_status", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return "" if v is None else str(v)

    @field_validator("outcomes", "clob_token_ids", mode="before")
    @classmethod
    def _outcomes(cls, v: Any) -> list[str]:
        return [str(x) for x in _json_list(v)]

    @field_validator("outcome_prices", mode="before")
    @classmethod
    def _prices(cls, v: Any) -> list[Decimal]:
        out = []
        for x in _json_list(v):
            try:
                out.append(Decimal(str(x)))
            except InvalidOperation:
                raise ValueError(f"outcome price {x!r} is not a number") from None
        return out

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> GammaMarket:
        data = dict(raw)
        events = data.get("events") or []
        if isinstance(events, list) and events and isinstance(events[0], dict):
            ev = events[0]  # a market's event is the first element of `events`
            data["event_id"] = str(ev.get("id") or "")
            data["event_title"] = str(ev.get("title") or "")
            data["event_category"] = str(ev.get("category") or "")
        tags = data.get("tags") or []
        data["tags"] = [str(t.get("label") or t.get("slug") or "") if isinstance(t, dict) else str(t) for t in tags] \
            if isinstance(tags, list) else []
        return cls.model_validate(data)

    @property
    def raw_category(self) -> str:
        for value in (self.category, self.event_category, *self.tags):
            if value and value.strip():
                return value.strip()
        return ""


@dataclass
class FetchReport:
    markets: list[GammaMarket] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (id or index, reason)
    requests: int = 0


def parse_markets(payload: Any, report: FetchReport, *, source: str = "Gamma /markets") -> None:
    """Validate a `/markets` answer (a JSON list); malformed entries are reported, not fatal.

    A well-formed answer of the wrong shape is fatal, not retried: unlike a truncated body, asking
    again returns the same thing."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]  # some Gamma deployments wrap lists
    if not isinstance(payload, list):
        raise GammaError(f"{source} answered {type(payload).__name__}, expected a JSON list of markets")
    for i, raw in enumerate(payload):
        if not isinstance(raw, dict):
            report.malformed.append((f"#{i}", "not a JSON object"))
            continue
        try:
            report.markets.append(GammaMarket.from_api(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = str(raw.get("conditionId") or raw.get("id") or f"#{i}")
            report.malformed.append((where, f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"))


class MarketSource(Protocol):
    """Where Step A and Step C get markets: live Gamma or an offline snapshot."""

    description: str

    async def markets_by_condition_ids(self, condition_ids: Sequence[str], *, closed: bool | None = None) -> FetchReport: ...


class GammaClient:
    """Gamma `/markets` by condition id (batched) or all closed markets (paged), as `GammaMarket`s."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 15.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        rate: tuple[int, float] = DEFAULT_RATE,
        batch_size: int = DEFAULT_BATCH,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
        sleep: Sleep = anyio.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.http = JsonTransport(
            base_url, name="Gamma", timeout_s=timeout_s, rate=rate, limiter=limiter, transport=transport,
            retry=RetryPolicy(attempts=max_attempts, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                              max_retry_after_s=max_retry_after_s),
            headers={"User-Agent": "opsconsole-enrichment"}, sleep=sleep, on_retry=on_retry,
        )
        self.base_url = self.http.base_url
        self.description = f"Gamma {self.base_url}"
        self.max_attempts = max_attempts
        self.batch_size = batch_size

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.http.requests

    @property
    def limiter(self) -> Limiter:
        return self.http.limiter

    async def __aenter__(self) -> GammaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get_json(self, path: str, params: Params = None) -> Any:
        """GET `path` and decode JSON, retrying what a retry can fix."""
        return (await self.http.get_json(path, params)).data

    async def markets_page(self, params: list[tuple[str, str]], limit: int, offset: int) -> Any:
        return (await self._markets_page(params, limit, offset)).data

    async def _markets_page(self, params: list[tuple[str, str]], limit: int, offset: int) -> JsonReply:
        query = [*params, ("limit", str(limit)), ("offset", str(offset))]
        return await self.http.get_json("/markets", query, what=f"Gamma /markets offset={offset}")

    async def _paged(self, params: list[tuple[str, str]], limit: int, report: FetchReport, max_pages: int = 10_000) -> None:
        offset = 0
        for _ in range(max_pages):
            reply = await self._markets_page(params, limit, offset)
            report.requests += 1
            before = len(report.markets) + len(report.malformed)
            parse_markets(reply.data, report, source=redact(f"Gamma /markets offset={offset} (GET {reply.url[:200]})"))
            got = len(report.markets) + len(report.malformed) - before
            if got < limit:
                return
            offset += limit

    async def markets_by_condition_ids(self, condition_ids: Sequence[str], *, closed: bool | None = None) -> FetchReport:
        """Markets for these condition ids, batched (`condition_ids` repeated per request), paged.

        Gamma may hide closed markets unless asked, so ids not found in the first pass are asked
        again with `closed=true` (unless the caller fixed `closed`)."""
        wanted = list(dict.fromkeys(c for c in condition_ids if c))
        report = FetchReport()
        seen: set[str] = set()

        async def pass_(ids: list[str], closed_flag: bool | None) -> None:
            for i in range(0, len(ids), self.batch_size):
                chunk = ids[i:i + self.batch_size]
                params = [("condition_ids", c) for c in chunk]
                if closed_flag is not None:
                    params.append(("closed", "true" if closed_flag else "false"))
                part = FetchReport()
                # A condition normally has one market: a page twice the batch is almost always short,
                # so one request per batch (paging still covers the rare longer answer).
                await self._paged(params, 2 * len(chunk), part)
                report.requests += part.requests
                report.malformed.extend(part.malformed)
                for m in part.markets:
                    if m.condition_id and m.condition_id not in seen:
                        seen.add(m.condition_id)
                        report.markets.append(m)

        await pass_(wanted, closed)
        if closed is None:
            missing = [c for c in wanted if c not in seen]
            if missing:
                await pass_(missing, True)
        return report

    async def closed_markets(self, *, page_size: int = 100, max_pages: int = 10_000) -> FetchReport:
        """Every closed market, paged with limit/offset (used when no condition list is given)."""
        report = FetchReport()
        await self._paged([("closed", "true")], page_size, report, max_pages)
        return report


class SnapshotSource:
    """Offline stand-in for Gamma: a file of Gamma market objects (JSON list, `{"markets": [...]}`
    or JSON lines), exactly as the API returns them (string-encoded `outcomePrices` included)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = f"snapshot {self.path}"
        if not self.path.is_file():
            raise BadInput(f"Gamma snapshot {self.path} does not exist or is not a file")
        text = self.path.read_text(encoding="utf-8")
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError:
            doc = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    doc.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise BadInput(f"Gamma snapshot {self.path} line {n}: not JSON ({exc.msg})") from None
        if isinstance(doc, dict) and isinstance(doc.get("markets"), list):
            doc = doc["markets"]
        elif isinstance(doc, dict) and "conditionId" in doc:
            doc = [doc]  # JSON lines holding a single market
        if not isinstance(doc, list):
            raise BadInput(f"Gamma snapshot {self.path}: expected a JSON list of markets or {{\"markets\": [...]}}")
        self.report = FetchReport()
        parse_markets(doc, self.report)
        self.by_condition = {m.condition_id: m for m in self.report.markets if m.condition_id}

    async def markets_by_condition_ids(self, condition_ids: Sequence[str], *, closed: bool | None = None) -> FetchReport:
        out = FetchReport(malformed=list(self.report.malformed))
        for c in dict.fromkeys(condition_ids):
            m = self.by_condition.get(c)
            if m is not None and (closed is None or m.closed == closed):
                out.markets.append(m)
        return out

    async def aclose(self) -> None:
        pass


def chunked(items: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
