"""The shared Polymarket HTTP transport: real httpx against a real loopback socket server.

Sleeps are injected and recorded (never waited for), so the waits the policy chooses are asserted
exactly without any timing in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.errors import BadInput
from engine.gamma_transport import (
    GammaError,
    GammaUnavailable,
    JsonTransport,
    RetryPolicy,
    SlidingWindowLimiter,
)
from tests.support.json_server import JsonServer, json_reply

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[JsonServer]:
    with JsonServer() as srv:
        yield srv


class Recorder:
    """Stands in for anyio.sleep: records the wait, returns at once."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.notes: list[str] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def transport(url: str, rec: Recorder, **kw) -> JsonTransport:
    kw.setdefault("retry", RetryPolicy(attempts=4, backoff_base_s=1.0))
    return JsonTransport(url, sleep=rec.sleep, on_retry=rec.notes.append, **kw)


async def test_429_waits_exactly_retry_after(server: JsonServer) -> None:
    server.script = [json_reply({"error": "slow down"}, 429, {"Retry-After": "7"})]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        reply = await t.get_json("/markets", {"limit": 1})
    assert reply.data == {"path": "/markets"} and reply.attempts == 2
    assert rec.sleeps == [7.0]  # the server's number, no backoff and no jitter on top
    assert len(rec.notes) == 1 and "HTTP 429" in rec.notes[0] and "in 7.0s" in rec.notes[0]
    assert len(server.seen) == 2


async def test_retry_after_is_capped_and_its_absence_falls_back_to_backoff(server: JsonServer) -> None:
    server.script = [json_reply({}, 429, {"Retry-After": "86400"}), json_reply({}, 429)]
    rec = Recorder()
    async with transport(server.url, rec, retry=RetryPolicy(attempts=3, backoff_base_s=1.0, max_retry_after_s=5.0)) as t:
        await t.get_json("/x")
    assert rec.sleeps[0] == 5.0
    assert 1.0 <= rec.sleeps[1] <= 2.0  # second retry: ceiling 2 s, jitter in its upper half


async def test_5xx_is_retried_with_growing_backoff_then_succeeds(server: JsonServer) -> None:
    server.script = [(500, {}, b"oops"), (502, {}, b""), (503, {}, b"")]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        reply = await t.get_json("/markets")
    assert reply.data == {"path": "/markets"} and reply.attempts == 4
    assert len(rec.sleeps) == 3
    for n, wait in enumerate(rec.sleeps, 1):
        ceiling = 2 ** (n - 1)
        assert ceiling / 2 <= wait <= ceiling
    assert ["HTTP 500" in rec.notes[0], "HTTP 502" in rec.notes[1], "HTTP 503" in rec.notes[2]] == [True] * 3


async def test_malformed_json_is_retried_then_succeeds(server: JsonServer) -> None:
    server.script = ["malformed", "malformed"]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        reply = await t.get_json("/markets")
    assert reply.data == {"path": "/markets"} and len(server.seen) == 3
    assert all("malformed JSON" in n for n in rec.notes)


async def test_malformed_json_every_time_is_a_clear_error_naming_the_url(server: JsonServer) -> None:
    server.script = ["malformed"] * 5
    rec = Recorder()
    async with transport(server.url, rec, retry=RetryPolicy(attempts=3)) as t:
        with pytest.raises(GammaError) as info:
            await t.get_json("/markets", [("offset", "40")], what="Gamma /markets offset=40")
    err = info.value
    assert not isinstance(err, GammaUnavailable)  # Gamma answered; the answer was unreadable
    assert err.url == f"{server.url}/markets?offset=40" and err.status == 200 and err.attempts == 3
    assert str(err).startswith("Gamma /markets offset=40: malformed JSON in the response: '[{\"id\": \"1\"")
    assert str(err).endswith(f"(gave up after 3 attempts; GET {server.url}/markets?offset=40)")
    assert len(server.seen) == 3


async def test_a_body_cut_short_by_the_connection_is_retried(server: JsonServer) -> None:
    server.script = ["truncate"]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        reply = await t.get_json("/markets")
    assert reply.data == {"path": "/markets"}
    assert len(rec.notes) == 1 and "no complete answer" in rec.notes[0]


async def test_retries_exhausted_is_one_clear_error(server: JsonServer) -> None:
    server.script = [(503, {}, b"")] * 5
    rec = Recorder()
    async with transport(server.url, rec, retry=RetryPolicy(attempts=3)) as t:
        with pytest.raises(GammaError) as info:
            await t.get_json("/markets", {"closed": "true"})
    assert str(info.value) == f"Gamma /markets: HTTP 503 (gave up after 3 attempts; GET {server.url}/markets?closed=true)"
    assert info.value.status == 503 and len(server.seen) == 3 and len(rec.sleeps) == 2


async def test_client_errors_are_not_retried(server: JsonServer) -> None:
    server.script = [json_reply({"error": "bad limit"}, 422)]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        with pytest.raises(GammaError, match=r"Gamma /markets: HTTP 422 '\{\"error\": \"bad limit\"\}' \(GET ") as info:
            await t.get_json("/markets")
    assert info.value.status == 422 and len(server.seen) == 1 and rec.sleeps == []


async def test_unreachable_is_gamma_unavailable() -> None:
    with JsonServer() as srv:
        url = srv.url  # shut down on leaving: every connect is refused
    rec = Recorder()
    async with transport(url, rec, retry=RetryPolicy(attempts=2)) as t:
        with pytest.raises(GammaUnavailable, match=r": unavailable, cannot connect to .* \(gave up after 2 attempts; GET ") as info:
            await t.get_json("/markets")
    assert info.value.status is None and len(rec.sleeps) == 1


async def test_one_connection_is_reused_across_requests_until_aclose(server: JsonServer) -> None:
    rec = Recorder()
    t = transport(server.url, rec)
    for n in range(5):
        await t.get_json("/markets", {"offset": n})
    assert len(server.seen) == 5 and len(server.connections) == 1
    first = t.client
    await t.aclose()
    assert first.is_closed
    async with t:  # after aclose a request opens a fresh pool, closed again on leaving
        await t.get_json("/markets")
        second = t.client
    assert second is not first and second.is_closed and len(server.connections) == 2


async def test_retries_reuse_the_connection_too(server: JsonServer) -> None:
    server.script = [(500, {}, b""), "malformed"]
    rec = Recorder()
    async with transport(server.url, rec) as t:
        await t.get_json("/markets")
    assert len(server.seen) == 3 and len(server.connections) == 1


async def test_generic_over_base_url_and_name(server: JsonServer) -> None:
    rec = Recorder()
    server.script = [(404, {}, b"no such market")]
    async with transport(f"{server.url}/api/v2/", rec, name="Polymarket data-api") as t:
        with pytest.raises(GammaError, match=r"^Polymarket data-api /trades: HTTP 404") as info:
            await t.get_json("/trades", {"market": "0xabc"})
        reply = await t.get_json("/trades", {"market": "0xabc"})
    assert info.value.url == f"{server.url}/api/v2/trades?market=0xabc"
    assert reply.data == {"path": "/api/v2/trades"} and t.requests == 2


def test_bad_base_url_is_bad_input() -> None:
    with pytest.raises(BadInput, match="must start with http"):
        JsonTransport("gamma-api.polymarket.com")


def test_default_rate_is_the_documented_250_per_10s() -> None:
    limiter = JsonTransport("http://127.0.0.1:9").limiter
    assert isinstance(limiter, SlidingWindowLimiter)
    assert (limiter.max_requests, limiter.period_s) == (250, 10.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_sliding_window_never_exceeds_the_budget_in_any_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 10.0, clock=clock, sleep=clock.sleep)
    starts = []
    for i in range(8):
        if i == 5:
            clock.now += 4.0  # callers arrive unevenly
        async with limiter:
            starts.append(clock.now)
    # a token bucket would let the 4th request through ~3.3 s after the burst; a window does not
    assert starts == [1000.0, 1000.0, 1000.0, 1010.0, 1010.0, 1014.0, 1020.0, 1020.0]
    assert clock.sleeps == [10.0, 6.0]
    for s in starts:
        assert sum(1 for t in starts if s <= t < s + 10.0) <= 3


async def test_the_limiter_holds_back_every_attempt_retries_included(server: JsonServer) -> None:
    server.script = [(500, {}, b""), (500, {}, b"")]
    clock = FakeClock()
    rec = Recorder()
    t = transport(server.url, rec, limiter=SlidingWindowLimiter(2, 60.0, clock=clock, sleep=clock.sleep))
    async with t:
        await t.get_json("/markets")
    assert len(server.seen) == 3 and t.requests == 3
    assert clock.sleeps == [60.0]  # the third attempt waited for the window, on top of the backoff
    assert len(rec.sleeps) == 2
