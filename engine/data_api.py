"""Client of Polymarket's public data-api (`GET /trades`), on the shared transport.

What the API documents (docs.polymarket.com, "Get trades for a user or markets", and its rate-limit
page), and what this client does with it:

* `limit` is at most 500 (newer pages of the docs allow more; 500 is within every version), so a
  page asks for 500. A server may clamp it further, so the end of the data is an *empty* page, never
  a short one.
* `offset` has a cap (10,000 in the current reference; operators have measured 3,500 on busy
  markets, answered with HTTP 400, and some deployments answer past it with the last page again).
  All three are handled: no request past `OFFSET_CAP`; a 400 on a later page is `OffsetCapReached`;
  a page equal to the previous one is detected by the caller (Step T) and ends the walk.
* `market` takes comma-separated condition ids (mutually exclusive with `eventId`), `user` a wallet,
  `side` BUY/SELL, `filterType` CASH|TOKENS with `filterAmount` (both or neither).
* `takerOnly` defaults to true: each match is then listed once, as the taker's row. With false, the
  maker rows of the match are listed too (the taker row's size is the sum of its makers'). Value
  conservation needs every side of a fill, so Step T asks for `takerOnly=false`.
* rate limit: 200 requests / 10 s on `/trades`; we start at most 150 in any 10 s. 429 and 5xx are
  retried by the transport, waiting exactly `Retry-After` when the server sends one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from engine.errors import BadInput
from engine.gamma_transport import GammaError, JsonTransport, Limiter, RetryPolicy, Sleep

MAX_LIMIT = 500
OFFSET_CAP = 10_000
RATE = (150, 10.0)  # published: 200 requests / 10 s on /trades
MAX_CONDITIONS_PER_REQUEST = 20


class DataApiError(GammaError):
    """The data-api could not be used (unreachable after retries, refused, unreadable answer)."""


class OffsetCapReached(DataApiError):
    """HTTP 400 for a page past the first: the API's offset cap. Older trades cannot be paged."""


class DataApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        timeout_s: float = 30.0,
        rate: tuple[int, float] = RATE,
        limiter: Limiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self.http = JsonTransport(
            base_url, name="data-api", timeout_s=timeout_s, retry=RetryPolicy(attempts=max_attempts, backoff_base_s=backoff_base_s),
            rate=rate, limiter=limiter, transport=transport, on_retry=on_retry, **kwargs,
        )

    @property
    def description(self) -> str:
        return f"data-api {self.http.base_url}"

    @property
    def requests(self) -> int:
        return self.http.requests

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> DataApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def trades(
        self,
        *,
        market: Sequence[str] = (),
        user: str | None = None,
        event_id: Sequence[int | str] = (),
        limit: int = MAX_LIMIT,
        offset: int = 0,
        taker_only: bool = True,
        side: str | None = None,
        filter_type: str | None = None,
        filter_amount: float | None = None,
    ) -> list[dict[str, Any]]:
        """One page of `/trades`, newest first, as the API's JSON objects."""
        if market and event_id:
            raise BadInput("data-api: `market` and `eventId` are mutually exclusive")
        if len(market) > MAX_CONDITIONS_PER_REQUEST:
            raise BadInput(f"data-api: at most {MAX_CONDITIONS_PER_REQUEST} condition ids per request")
        if not 1 <= limit <= MAX_LIMIT:
            raise BadInput(f"data-api: limit must be 1..{MAX_LIMIT}, got {limit}")
        if not 0 <= offset <= OFFSET_CAP:
            raise BadInput(f"data-api: offset must be 0..{OFFSET_CAP}, got {offset}")
        if (filter_type is None) != (filter_amount is None):
            raise BadInput("data-api: filterType and filterAmount go together")
        params: list[tuple[str, Any]] = [("limit", limit), ("offset", offset), ("takerOnly", "true" if taker_only else "false")]
        if market:
            params.append(("market", ",".join(market)))
        if event_id:
            params.append(("eventId", ",".join(map(str, event_id))))
        if user:
            params.append(("user", user))
        if side:
            params.append(("side", side.upper()))
        if filter_type is not None:
            params += [("filterType", filter_type.upper()), ("filterAmount", filter_amount)]
        try:
            reply = await self.http.get_json("/trades", params, what=f"data-api /trades (offset {offset})")
        except GammaError as exc:
            if exc.status == 400 and offset > 0:
                raise OffsetCapReached(str(exc), url=exc.url, status=400, attempts=exc.attempts) from None
            raise DataApiError(str(exc), url=exc.url, status=exc.status, attempts=exc.attempts) from None
        data = reply.data
        if isinstance(data, dict) and isinstance(data.get("data"), list):  # an enveloped answer
            data = data["data"]
        if not isinstance(data, list):
            raise DataApiError(f"data-api /trades: expected a JSON list, got {type(data).__name__} (GET {reply.url})",
                               url=reply.url, status=reply.status)
        # A non-object item is kept: the converter names it as a malformed row of this page.
        return data

    async def event_condition_ids(self, gamma_base_url: str, slug: str) -> list[str]:
        """The condition ids of an event's markets (a negRisk event has one binary market per
        outcome), from Gamma's `/events?slug=`."""
        async with JsonTransport(gamma_base_url, name="Gamma", retry=self.http.retry) as gamma:
            try:
                reply = await gamma.get_json("/events", {"slug": slug}, what=f"Gamma /events?slug={slug}")
            except GammaError as exc:
                raise DataApiError(str(exc), url=exc.url, status=exc.status, attempts=exc.attempts) from None
        events = reply.data if isinstance(reply.data, list) else [reply.data]
        out: list[str] = []
        for ev in events:
            if isinstance(ev, dict) and ev.get("slug", slug) == slug:
                for m in ev.get("markets") or []:
                    if isinstance(m, dict) and m.get("conditionId"):
                        out.append(str(m["conditionId"]).lower())
        if not out:
            raise BadInput(f"event slug {slug!r}: Gamma knows no event with markets under that slug")
        return list(dict.fromkeys(out))
