"""The HTTP transport every Polymarket API client shares: one pooled client, retries, a rate limit.

Gamma's two consumers (enrichment Steps A/C and the forecast pipeline) used to build this each on
their own and disagreed (malformed JSON fatal in one, retried in the other; a pooled client in one,
a new client per fetch in the other). This module owns the policy once; consumers only say which
path and query to GET and parse what comes back. It knows nothing about Gamma's payloads, so a
data-api or scoring client reuses it by passing its own base URL and name.

Policy:
* one `httpx.AsyncClient` per transport object, opened on the first request and reused (keep-alive)
  until `aclose()` or the end of `async with`; a later request opens a fresh one.
* retried: transport errors (refused, reset, timeouts), 429, 5xx, and malformed JSON in a 2xx body
  (a truncated or garbled body from a proxy is transient). Not retried: other non-2xx statuses.
* the wait before a retry is exactly `Retry-After` when the server sends one (capped), otherwise
  exponential backoff with jitter so parallel runners do not retry in step.
* after the last attempt, one `GammaError` naming what was asked, why, and the URL.
* a sliding-window limiter: at most 250 requests start in any 10 s (Gamma publishes 300 / 10 s).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import httpx

from engine.errors import BadInput, OpsError
from engine.gamma_payloads import retry_after_seconds
from engine.redact import redact

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Params = httpx.QueryParams | Mapping[str, Any] | list[tuple[str, Any]] | None
# Anything used as `async with limiter:` before a request: our limiter, or e.g. aiolimiter's.
Limiter = AbstractAsyncContextManager[object]

RATE_LIMIT_REQUESTS = 250  # per RATE_LIMIT_PERIOD_S; Gamma publishes 300 per 10 s on /markets
RATE_LIMIT_PERIOD_S = 10.0
MAX_URL_IN_MESSAGE = 200  # a batch of condition ids makes a long query; the start names it well enough


class GammaError(OpsError):
    """A Polymarket API (Gamma, or another client of this transport) could not be used: unreachable
    after retries, a refused request, or an answer that cannot be read. `status` is the last HTTP
    status seen (None when no answer came), `url` the request's URL."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


class GammaUnavailable(GammaError):
    """Every attempt failed before an HTTP answer (refused, reset, timed out): not reachable from here."""


def request_error(what: str, reason: str, url: str, *, status: int | None = None, attempts: int = 1,
                  gave_up: bool = False, unreachable: bool = False) -> GammaError:
    """The one message shape for a failed request: what was asked, why, and the URL.
    `gave_up` says the retries ran out (rather than an answer no retry can change)."""
    shown = url if len(url) <= MAX_URL_IN_MESSAGE else url[:MAX_URL_IN_MESSAGE] + "…"
    tail = f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}; GET {shown}" if gave_up else f"GET {shown}"
    if unreachable:
        return GammaUnavailable(redact(f"{what}: unavailable, {reason} ({tail})"), url=url, status=None, attempts=attempts)
    return GammaError(redact(f"{what}: {reason} ({tail})"), url=url, status=status, attempts=attempts)


class SlidingWindowLimiter:
    """At most `max_requests` request starts in any window of `period_s` seconds.

    A token bucket (aiolimiter) allows a full burst *and then* its refill within the same window,
    up to twice the budget; remembering the last starts holds the published limit exactly. Waiters
    queue on a lock, so concurrent callers are served in turn."""

    def __init__(self, max_requests: int, period_s: float, *, clock: Clock = time.monotonic,
                 sleep: Sleep = anyio.sleep) -> None:
        if max_requests < 1 or period_s <= 0:
            raise ValueError(f"rate limit must be >= 1 request per > 0 s, got {max_requests} / {period_s}")
        self.max_requests = max_requests
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = anyio.Lock()

    async def acquire(self) -> float:
        """Wait until a request may start; returns the seconds waited (0.0 when none)."""
        async with self._lock:
            now = self._clock()
            wait = 0.0
            if len(self._starts) >= self.max_requests:
                wait = max(0.0, self._starts[0] + self.period_s - now)
                if wait > 0:
                    await self._sleep(wait)
                self._starts.popleft()
            # Record the start we were allowed, never earlier: correct even if `sleep` returns early.
            self._starts.append(max(self._clock(), now + wait))
            return wait

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for an hour does not stall a run for an hour

    def backoff(self, retry: int) -> float:
        """Seconds before retry number `retry` (1-based) when the server gave no Retry-After:
        exponential, with jitter in the upper half so the wait still grows."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** (retry - 1)))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class JsonReply:
    data: Any  # the decoded JSON body; its shape is the consumer's business
    url: str
    status: int
    attempts: int


class _Retry(Exception):
    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def _snippet(text: str, n: int = 80) -> str:
    return repr(text[:n] + ("…" if len(text) > n else ""))


class JsonTransport:
    """GET JSON from one API (`base_url`), with the policy in the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "Gamma",
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        rate: tuple[int, float] = (RATE_LIMIT_REQUESTS, RATE_LIMIT_PERIOD_S),
        limiter: Limiter | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise BadInput(f"{name} base URL must start with http:// or https://, got {base_url!r}")
        if retry.attempts < 1:
            raise BadInput(f"{name}: attempts must be at least 1, got {retry.attempts}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.retry = retry
        self.timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self.limiter: Limiter = limiter if limiter is not None else SlidingWindowLimiter(rate[0], rate[1], sleep=sleep)
        self.headers = {"Accept": "application/json", "User-Agent": "opsconsole", **(headers or {})}
        self._transport = transport
        self._sleep = sleep
        self._on_retry = on_retry or (lambda _msg: None)
        self._client: httpx.AsyncClient | None = None
        self.requests = 0  # attempts sent, retries included (what counts against the rate limit)

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, opened on first use."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, headers=self.headers,
                                             transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> JsonTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- requests --------------------------------------------------------------------------------
    async def get_json(self, path: str, params: Params = None, *, what: str | None = None) -> JsonReply:
        """GET `path` (relative to the base URL) and decode its JSON body, retrying what a retry can
        fix. `what` names the request in messages (default "<name> <path>")."""
        label = what or f"{self.name} {path}"
        query = httpx.QueryParams(params) if params is not None else None
        attempts = self.retry.attempts
        attempt = 0
        while True:
            attempt += 1
            request = self.client.build_request("GET", path, params=query)
            url = str(request.url)
            try:
                return await self._once(request, label, url, attempt)
            except _Retry as failure:
                if attempt >= attempts:
                    # No HTTP status at all on the last try: the API is not reachable from here.
                    raise request_error(label, str(failure), url, status=failure.status, attempts=attempt,
                                        gave_up=True, unreachable=failure.status is None) from None
                wait = failure.retry_after if failure.retry_after is not None else self.retry.backoff(attempt)
                self._on_retry(redact(f"{label}: {failure}; retry {attempt}/{attempts - 1} in {wait:.1f}s"))
            await self._sleep(wait)

    async def _once(self, request: httpx.Request, label: str, url: str, attempt: int) -> JsonReply:
        async with self.limiter:
            self.requests += 1
            try:
                resp = await self.client.send(request)
            except httpx.TimeoutException as exc:
                raise _Retry(f"timed out ({type(exc).__name__})") from None
            except httpx.ConnectError as exc:
                raise _Retry(f"cannot connect to {self.base_url} ({exc or type(exc).__name__})") from None
            except httpx.DecodingError as exc:  # a garbled compressed body: same family as malformed JSON
                raise _Retry(f"malformed body ({exc})", status=200) from None
            except httpx.TransportError as exc:  # reset, truncated by a proxy, protocol error
                raise _Retry(f"no complete answer ({type(exc).__name__}: {exc})") from None
        status = resp.status_code
        if status == 429 or status >= 500:
            cap = self.retry.max_retry_after_s
            raise _Retry(f"HTTP {status}", status=status, retry_after=retry_after_seconds(resp.headers.get("Retry-After"), cap))
        if not 200 <= status < 300:
            raise request_error(label, f"HTTP {status} {_snippet(resp.text, 200)}", url, status=status, attempts=attempt)
        try:
            data = resp.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both
            raise _Retry(f"malformed JSON in the response: {_snippet(resp.text)}", status=status) from None
        return JsonReply(data=data, url=url, status=status, attempts=attempt)
