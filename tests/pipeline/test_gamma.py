"""The Gamma client: real httpx against a loopback /markets server."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from engine.errors import BadInput
from engine.gamma_transport import SlidingWindowLimiter
from engine.pipeline.gamma import GammaClient, GammaError, Window, load_snapshot, parse_retry_after
from engine.pipeline.options import PipelineOptions
from tests.pipeline.fakes import GammaApp, gamma_market
from tests.support.json_server import JsonServer

pytestmark = pytest.mark.anyio
WINDOW = Window(datetime(2026, 12, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc))


def client(gamma, sleeps: list[float] | None = None, **kw) -> tuple[GammaClient, list[str]]:
    """A client whose retry waits are recorded in `sleeps` instead of slept."""
    notes: list[str] = []
    kw.setdefault("page_size", 2)
    kw.setdefault("backoff_base_s", 0.01)
    record = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        record.append(seconds)

    return GammaClient(gamma.url, on_retry=notes.append, sleep=sleep, **kw), notes


def keepalive_server(app: GammaApp) -> JsonServer:
    """`app` behind a server that numbers its TCP connections (the fakes' server does not)."""
    def serve(path: str, query: dict[str, list[str]]):
        return app("GET", path, {k: v if len(v) > 1 else v[0] for k, v in query.items()}, b"", {})
    return JsonServer(serve)


def markets(n: int) -> list[dict]:
    return [gamma_market(str(i), f"Q{i}?", (f"E{i}", f"Event {i}")) for i in range(1, n + 1)]


async def test_pages_until_a_short_page_and_dedups_across_pages(gamma: GammaApp):
    ms = markets(4)
    # offset paging over a live list: market 2 shows up again on the next page
    gamma.markets = [ms[0], ms[1], ms[1], ms[2], ms[3]]
    c, notes = client(gamma)
    result = await c.fetch(WINDOW)
    assert [m["id"] for m in result.markets] == ["1", "2", "3", "4"]
    assert result.duplicates == 1 and result.pages == 3
    assert [q["offset"] for q in gamma.requests] == ["0", "2", "4"]
    assert all(q["limit"] == "2" and q["closed"] == "false" for q in gamma.requests)
    assert gamma.requests[0]["end_date_min"] == "2026-12-01T00:00:00Z"
    assert gamma.requests[0]["end_date_max"] == "2026-12-31T23:59:59Z"


async def test_limit_stops_paging(gamma: GammaApp):
    gamma.markets = markets(9)
    c, _ = client(gamma)
    result = await c.fetch(WINDOW, limit=3)
    assert [m["id"] for m in result.markets] == ["1", "2", "3"]
    assert len(gamma.requests) == 2


async def test_filters_pass_through_and_reserved_keys_are_refused(gamma: GammaApp):
    gamma.markets = markets(1)
    c, _ = client(gamma, filters={"tag_id": 21, "order": "volume", "ascending": False, "related_tags": True})
    await c.fetch(WINDOW)
    q = gamma.requests[0]
    assert q["tag_id"] == "21" and q["order"] == "volume" and q["ascending"] == "false" and q["related_tags"] == "true"
    with pytest.raises(BadInput, match="INGESTION_FILTERS may not set closed"):
        GammaClient(gamma.url, filters={"closed": True})


async def test_429_waits_exactly_retry_after_then_succeeds(gamma: GammaApp):
    gamma.markets = markets(1)
    gamma.script = [(429, {"Retry-After": "1", "Content-Type": "application/json"}, b'{"error":"slow down"}')]
    sleeps: list[float] = []
    c, notes = client(gamma, sleeps)
    result = await c.fetch(WINDOW)
    assert [m["id"] for m in result.markets] == ["1"]
    assert len(gamma.requests) == 2 and sleeps == [1.0]
    assert len(notes) == 1 and "HTTP 429" in notes[0] and "in 1.0s" in notes[0]


async def test_500s_and_malformed_json_are_retried(gamma: GammaApp):
    gamma.markets = markets(1)
    gamma.script = [(500, {}, b"oops"), "malformed", (503, {}, b"")]
    c, notes = client(gamma)
    result = await c.fetch(WINDOW)
    assert len(result.markets) == 1 and len(gamma.requests) == 4
    assert ["HTTP 500" in notes[0], "malformed JSON" in notes[1], "HTTP 503" in notes[2]] == [True, True, True]


async def test_gives_up_after_the_last_attempt_naming_the_page(gamma: GammaApp):
    gamma.script = [(500, {}, b"")] * 5
    c, _ = client(gamma, attempts=3)
    with pytest.raises(GammaError, match=r"offset=0: HTTP 500 \(gave up after 3 attempts; GET http://127\.0\.0\.1:\d+/markets\?"):
        await c.fetch(WINDOW)
    assert len(gamma.requests) == 3


async def test_malformed_json_on_every_attempt_names_the_page_and_url(gamma: GammaApp):
    gamma.script = ["malformed"] * 5
    c, notes = client(gamma, attempts=3)
    with pytest.raises(GammaError) as info:
        await c.fetch(WINDOW)
    assert str(info.value).startswith("Gamma /markets offset=0: malformed JSON in the response")
    assert "(gave up after 3 attempts; GET " in str(info.value) and info.value.url.startswith(f"{gamma.url}/markets?")
    assert len(gamma.requests) == 3 and len(notes) == 2


async def test_a_json_answer_that_is_not_a_list_is_not_retried(gamma: GammaApp):
    gamma.script = [(200, {"Content-Type": "application/json"}, b'{"error": "nope"}')]
    c, _ = client(gamma)
    with pytest.raises(GammaError, match=r"offset=0: expected a JSON list of markets, got dict \(GET "):
        await c.fetch(WINDOW)
    assert len(gamma.requests) == 1


async def test_one_connection_per_fetch_and_per_held_client():
    app = GammaApp(markets(5))
    with keepalive_server(app) as srv:
        c = GammaClient(srv.url, page_size=2)
        result = await c.fetch(WINDOW)
        assert len(result.markets) == 5 and len(srv.seen) == 3
        assert len(srv.connections) == 1  # three pages, one pooled connection
        await c.fetch(WINDOW)  # not held open: the first fetch closed its pool
        assert len(srv.connections) == 2
        async with GammaClient(srv.url, page_size=2) as held:
            await held.fetch(WINDOW)
            await held.fetch(WINDOW)
        assert len(srv.seen) == 12 and len(srv.connections) == 3


async def test_client_error_is_not_retried(gamma: GammaApp):
    gamma.script = [(400, {}, b"bad param")]
    c, _ = client(gamma)
    with pytest.raises(GammaError, match="HTTP 400"):
        await c.fetch(WINDOW)
    assert len(gamma.requests) == 1


async def test_markets_without_id_are_rejects(gamma: GammaApp):
    gamma.markets = [gamma_market(None, "Nameless?", None, slug="nameless"), gamma_market("7", "Seven?", None), "junk"]
    c, _ = client(gamma, page_size=5)
    result = await c.fetch(WINDOW)
    assert [m["id"] for m in result.markets] == ["7"]
    assert [r for _, r in result.rejects] == ["market has no id (slug='nameless', item 0)",
                                             "market is not a JSON object (item 2)"]


async def test_server_ignoring_offset_does_not_loop_forever(gamma: GammaApp):
    class Stuck(GammaApp):
        def __call__(self, method, path, query, body, headers):
            self.requests.append(query)
            return 200, {"Content-Type": "application/json"}, json.dumps(self.markets[:2]).encode()

    stuck = Stuck(markets(2))
    from tests.pipeline.fakes import LoopbackServer

    server = LoopbackServer(stuck)
    try:
        c = GammaClient(server.url, page_size=2)
        result = await c.fetch(WINDOW)
    finally:
        server.close()
    assert len(result.markets) == 2 and len(stuck.requests) == 2


def test_rate_limit_is_under_gammas_published_limit():
    c = GammaClient("http://127.0.0.1:9")
    assert isinstance(c.limiter, SlidingWindowLimiter)
    assert c.limiter.max_requests == 250 and c.limiter.period_s == 10.0  # Gamma allows 300 per 10 s


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("100000") == 120.0  # capped
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_windows_are_exact_utc_ranges():
    o = PipelineOptions(target_date=date(2026, 12, 24))
    assert o.window().params() == {"end_date_min": "2026-12-24T00:00:00Z", "end_date_max": "2026-12-24T23:59:59Z"}
    now = datetime(2026, 11, 22, 7, 0, 0, 123, tzinfo=timezone.utc)
    assert PipelineOptions(window_days=3).window(now).params() == {
        "end_date_min": "2026-11-22T07:00:00Z", "end_date_max": "2026-11-25T07:00:00Z"}
    with pytest.raises(BadInput, match="mutually exclusive"):
        PipelineOptions(window_days=3, target_date=date(2026, 12, 24)).validate()


def test_snapshot_reader_applies_window_limit_and_dedup(tmp_path):
    ms = markets(3)
    ms[2]["endDate"] = "2027-06-01T00:00:00Z"
    path = tmp_path / "snap.json"
    path.write_text(json.dumps([ms[0], ms[0], ms[1], ms[2]]))
    result = load_snapshot(path, WINDOW)
    assert [m["id"] for m in result.markets] == ["1", "2"] and result.duplicates == 1
    assert len(load_snapshot(path, None, limit=1).markets) == 1
    path.write_text("{not json")
    with pytest.raises(BadInput, match="invalid JSON"):
        load_snapshot(path)
