"""Polymarket Gamma `/markets` client: paging, retries that honour Retry-After, a rate limit, dedup.

Gamma publishes a limit of 300 requests per 10 s on `/markets`; we stay well under it on the client
side so a long backfill never trips it. 429 and 5xx are retried with exponential backoff (or exactly
the server's `Retry-After`), transport errors and malformed JSON too; after the last attempt the
error names the page. Markets are de-duplicated by id across pages (offset paging over a live list
can repeat items); markets without an id are handed back as rejects, never given a made-up id.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from engine.errors import BadInput, OpsError
from engine.gamma_payloads import retry_after_seconds
from engine.redact import redact

RATE_LIMIT_REQUESTS = 250  # per RATE_LIMIT_PERIOD_S; Gamma allows 300 per 10 s on /markets
RATE_LIMIT_PERIOD_S = 10.0
RESERVED_PARAMS = {"limit", "offset", "closed", "end_date_min", "end_date_max"}
MAX_RETRY_AFTER_S = 120.0


class GammaError(OpsError):
    """Ingestion could not continue (after retries)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        limiter: AsyncLimiter | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        filters = dict(filters or {})
        clash = sorted(RESERVED_PARAMS & set(filters))
        if clash:
            raise BadInput(f"INGESTION_FILTERS may not set {', '.join(clash)} (the pipeline sets them)")
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.filters = {k: _param_value(v) for k, v in filters.items()}
        self.timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self.attempts = attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.limiter = limiter or AsyncLimiter(RATE_LIMIT_REQUESTS, RATE_LIMIT_PERIOD_S)
        self.on_retry = on_retry or (lambda _msg: None)
        self.requests = 0

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        backoff = min(self.backoff_max_s, self.backoff_base_s * (2 ** (state.attempt_number - 1)))
        return float(backoff * (0.5 + random.random() / 2))  # jitter: many runners must not retry in step

    async def _get_page(self, client: httpx.AsyncClient, params: dict[str, Any]) -> list[Any]:
        async def attempt() -> list[Any]:
            async with self.limiter:
                self.requests += 1
                try:
                    resp = await client.get(f"{self.base_url}/markets", params=params)
                except httpx.TransportError as exc:
                    raise _Retryable(f"{type(exc).__name__}: {exc}") from None
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
            if resp.status_code >= 400:
                raise GammaError(f"Gamma /markets offset={params['offset']}: HTTP {resp.status_code}: {redact(resp.text[:200])}")
            try:
                data = resp.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _Retryable("malformed JSON in response") from None
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]  # some Gamma deployments wrap pages
            if not isinstance(data, list):
                raise _Retryable(f"expected a JSON list of markets, got {type(data).__name__}")
            return data

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0
            self.on_retry(f"Gamma /markets offset={params['offset']}: {exc}; retry {state.attempt_number}/{self.attempts - 1} in {wait:.1f}s")

        try:
            async for att in AsyncRetrying(
                retry=retry_if_exception_type(_Retryable),
                wait=self._wait,
                stop=stop_after_attempt(self.attempts),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with att:
                    return await attempt()
        except _Retryable as exc:
            raise GammaError(f"Gamma /markets offset={params['offset']}: {exc} (gave up after {self.attempts} attempts)") from None
        raise AssertionError("unreachable")

    async def pages(self, window: Window) -> AsyncIterator[list[Any]]:
        async with httpx.AsyncClient(timeout=self.timeout, headers={"Accept": "application/json"}) as client:
            offset = 0
            while True:
                params: dict[str, Any] = {**self.filters, "closed": "false", **window.params(),
                                          "limit": self.page_size, "offset": offset}
                page = await self._get_page(client, params)
                yield page
                if len(page) < self.page_size:
                    return
                offset += len(page)

    async def fetch(self, window: Window, limit: int | None = None,
                    should_stop: Callable[[], bool] | None = None) -> FetchResult:
        collector = Collector(limit)
        async for page in self.pages(window):
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
