"""Polymarket Gamma `/markets` client for the forecast pipeline: open markets by close-date window,
paged, de-duplicated.

Requests go through the shared transport (`engine.gamma_transport`): one pooled client per
`GammaClient`, retries with backoff (exactly `Retry-After` on 429) on transport errors, 5xx and
malformed JSON, at most 250 requests per 10 s (Gamma publishes 300); after the last attempt the
error names the page and URL. Markets are de-duplicated by id across pages (offset paging over a
live list can repeat items); markets without an id are handed back as rejects, never given a
made-up id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from engine.errors import BadInput
from engine.gamma_payloads import retry_after_seconds
from engine.gamma_transport import (
    RATE_LIMIT_PERIOD_S,
    RATE_LIMIT_REQUESTS,
    GammaError,
    GammaUnavailable,
    JsonTransport,
    Limiter,
    RetryPolicy,
    Sleep,
    request_error,
)

__all__ = ["RATE_LIMIT_PERIOD_S", "RATE_LIMIT_REQUESTS", "Collector", "FetchResult", "GammaClient", "GammaError",
           "GammaUnavailable", "Window", "load_snapshot", "market_label", "parse_iso", "parse_retry_after"]

RESERVED_PARAMS = {"limit", "offset", "closed", "end_date_min", "end_date_max"}
MAX_RETRY_AFTER_S = 120.0


def parse_retry_after(value: str | None) -> float | None:
    return retry_after_seconds(value, MAX_RETRY_AFTER_S)


def _param_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_param_value(v) for v in value]
    return value


@dataclass(frozen=True)
class Window:
    """Close-date window sent as end_date_min/end_date_max (ISO 8601, UTC). None = unbounded."""

    start: datetime | None
    end: datetime | None

    def params(self) -> dict[str, str]:
        out = {}
        if self.start is not None:
            out["end_date_min"] = self.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.end is not None:
            out["end_date_max"] = self.end.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out

    def contains(self, end_date: str | None) -> bool:
        if self.start is None and self.end is None:
            return True
        when = parse_iso(end_date)
        if when is None:
            return False
        return (self.start is None or when >= self.start) and (self.end is None or when <= self.end)

    def describe(self) -> dict[str, str | None]:
        p = self.params()
        return {"start": p.get("end_date_min"), "end": p.get("end_date_max")}


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) == 10:
        text += "T00:00:00+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class FetchResult:
    markets: list[dict[str, Any]] = field(default_factory=list)  # unique, with an id
    rejects: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (raw, reason)
    pages: int = 0
    requests: int = 0
    seen: int = 0
    duplicates: int = 0


def market_label(raw: Any, position: int) -> str:
    """How to name a market that has no id in messages: slug or question, and where it was."""
    if isinstance(raw, dict):
        for key in ("slug", "conditionId", "question"):
            if raw.get(key):
                return f"{key}={str(raw[key])[:60]!r}, item {position}"
    return f"item {position}"


class Collector:
    """Dedup by id, separate rejects, honour --limit (counted over every distinct market seen)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.result = FetchResult()
        self._ids: set[str] = set()

    @property
    def full(self) -> bool:
        return self.limit is not None and self.result.seen >= self.limit

    def add(self, raw: Any) -> bool:
        """Returns True when the item was new (not a duplicate)."""
        res = self.result
        position = res.seen + res.duplicates
        if not isinstance(raw, dict):
            res.seen += 1
            res.rejects.append(({"raw": raw}, f"market is not a JSON object ({market_label(raw, position)})"))
            return True
        mid = raw.get("id")
        if mid is None or (isinstance(mid, str) and not mid.strip()):
            res.seen += 1
            res.rejects.append((raw, f"market has no id ({market_label(raw, position)})"))
            return True
        key = str(mid).strip()
        if key in self._ids:
            res.duplicates += 1
            return False
        self._ids.add(key)
        res.seen += 1
        res.markets.append(raw)
        return True


class GammaClient:
    """Open markets closing in a window, page by page. Use as `async with` to keep one connection
    pool across several fetches; without it, each `fetch` closes the pool when it ends (so a
    caller that fetches once never leaks connections)."""

    def __init__(
        self,
        base_url: str,
        *,
        page_size: int = 100,
        filters: dict[str, Any] | None = None,
        timeout_s: float = 30.0,
        attempts: int = 6,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        limiter: Limiter | None = None,
        on_retry: Callable[[str], None] | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        filters = dict(filters or {})
        clash = sorted(RESERVED_PARAMS & set(filters))
        if clash:
            raise BadInput(f"INGESTION_FILTERS may not set {', '.join(clash)} (the pipeline sets them)")
        self.http = JsonTransport(
            base_url, name="Gamma", timeout_s=timeout_s, limiter=limiter, sleep=sleep, on_retry=on_retry,
            retry=RetryPolicy(attempts=attempts, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                              max_retry_after_s=MAX_RETRY_AFTER_S),
            headers={"User-Agent": "opsconsole-pipeline"},
        )
        self.base_url = self.http.base_url
        self.page_size = page_size
        self.filters = {k: _param_value(v) for k, v in filters.items()}
        self.attempts = attempts
        self.on_retry = on_retry or (lambda _msg: None)
        self._held = False

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.http.requests

    @property
    def limiter(self) -> Limiter:
        return self.http.limiter

    async def __aenter__(self) -> GammaClient:
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._held = False
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _get_page(self, params: dict[str, Any]) -> list[Any]:
        what = f"Gamma /markets offset={params['offset']}"
        reply = await self.http.get_json("/markets", params, what=what)
        data = reply.data
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]  # some Gamma deployments wrap pages
        if not isinstance(data, list):
            # Well-formed JSON of the wrong shape: asking again returns the same, so no retry.
            raise request_error(what, f"expected a JSON list of markets, got {type(data).__name__}", reply.url,
                                status=reply.status, attempts=reply.attempts)
        return data

    async def pages(self, window: Window) -> AsyncGenerator[list[Any], None]:
        try:
            offset = 0
            while True:
                params: dict[str, Any] = {**self.filters, "closed": "false", **window.params(),
                                          "limit": self.page_size, "offset": offset}
                page = await self._get_page(params)
                yield page
                if len(page) < self.page_size:
                    return
                offset += len(page)
        finally:
            if not self._held:
                await self.aclose()

    async def fetch(self, window: Window, limit: int | None = None,
                    should_stop: Callable[[], bool] | None = None) -> FetchResult:
        collector = Collector(limit)
        async with aclosing(self.pages(window)) as pages:  # closes the pool now, not when collected
            async for page in pages:
                if should_stop is not None and should_stop():
                    break  # a stop during a long backfill: no events will start anyway
                collector.result.pages += 1
                fresh = sum(collector.add(raw) for raw in page if not collector.full)
                if collector.full:
                    break
                if page and fresh == 0:
                    # A full page of repeats: the server ignores offset; paging further would loop forever.
                    self.on_retry(f"Gamma returned a page of only repeated markets at page {collector.result.pages}; stopping")
                    break
        collector.result.requests = self.requests
        return collector.result


def load_snapshot(path: Path, window: Window | None = None, limit: int | None = None) -> FetchResult:
    """A saved `/markets` response (a JSON list, or pages as a list of lists) instead of the API."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--source {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"--source {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("markets"), list):
        data = data["markets"]
    if not isinstance(data, list):
        raise BadInput(f"--source {path}: expected a JSON list of Gamma markets")
    pages = data if data and all(isinstance(p, list) for p in data) else [data]
    collector = Collector(limit)
    for page in pages:
        collector.result.pages += 1
        for raw in page:
            if collector.full:
                break
            if window is not None and isinstance(raw, dict) and raw.get("id") is not None and not window.contains(raw.get("endDate")):
                continue
            collector.add(raw)
    return collector.result
