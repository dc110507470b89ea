"""The Gamma client against a loopback server through real httpx: batching, paging, 429 Retry-After,
5xx retries, malformed JSON, unreachable host, JSON-encoded string fields."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from engine.enrichment.gamma import GammaClient, GammaError, GammaUnavailable, SnapshotSource
from engine.errors import BadInput
from tests.enrichment.abc_data import cond, gamma_market
from tests.enrichment.gamma_server import GammaServer
from tests.support.json_server import JsonServer, json_reply


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(url: str, sleeps: list[float] | None = None, **kw) -> GammaClient:
    """A client whose retry and rate-limit waits are recorded in `sleeps` instead of slept."""
    kw.setdefault("backoff_base_s", 0.01)
    record = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        record.append(seconds)

    return GammaClient(url, sleep=sleep, **kw)


@pytest.mark.anyio
async def test_batches_condition_ids_and_decodes_string_fields() -> None:
    markets = [gamma_market(n, closed=n % 2 == 0) for n in range(1, 8)]
    with GammaServer(markets, hide_closed_by_default=True) as srv:
        async with client(srv.url, batch_size=3) as gc:
            report = await gc.markets_by_condition_ids([cond(n) for n in range(1, 8)] + [cond(99)])
    assert sorted(m.condition_id for m in report.markets) == [cond(n) for n in range(1, 8)]
    m2 = next(m for m in report.markets if m.condition_id == cond(2))
    assert m2.outcomes == ["Yes", "No"] and m2.outcome_prices == [Decimal(1), Decimal(0)]
    assert m2.clob_token_ids == ["tok2a", "tok2b"] and m2.event_id == "e2" and m2.raw_category == "Politics"
    first_pass = [r for r in srv.market_requests() if "closed" not in r]
    assert [len(r["condition_ids"]) for r in first_pass] == [3, 3, 2]  # batched, never one per id
    # closed markets hidden by default were asked for again with closed=true
    assert any(r.get("closed") == ["true"] for r in srv.market_requests())


@pytest.mark.anyio
async def test_paging_closed_markets() -> None:
    with GammaServer([gamma_market(n) for n in range(1, 12)]) as srv:
        async with client(srv.url) as gc:
            report = await gc.closed_markets(page_size=5)
    assert len(report.markets) == 11
    assert [r["offset"] for r in srv.market_requests()] == [["0"], ["5"], ["10"]]


@pytest.mark.anyio
async def test_429_retry_after_is_honoured_then_succeeds() -> None:
    with GammaServer([gamma_market(1)]) as srv:
        srv.faults = [("429", {"Retry-After": "1"}), ("500", {}), ("503", {})]
        waits: list[float] = []
        async with client(srv.url, waits, max_attempts=5) as gc:
            report = await gc.markets_by_condition_ids([cond(1)])
    assert [m.condition_id for m in report.markets] == [cond(1)]
    assert len(srv.market_requests()) >= 4
    assert waits[0] == 1.0  # the server's Retry-After, not our backoff
    assert len(waits) == 3 and all(w < 1 for w in waits[1:])


@pytest.mark.anyio
async def test_gives_up_after_max_attempts_with_the_reason() -> None:
    with GammaServer([gamma_market(1)]) as srv:
        srv.faults = [("500", {})] * 3
        async with client(srv.url, max_attempts=3) as gc:
            with pytest.raises(GammaError, match=r"HTTP 500 \(gave up after 3 attempts; GET http://127\.0\.0\.1:\d+/markets\?condition_ids="):
                await gc.markets_by_condition_ids([cond(1)])
    assert len(srv.market_requests()) == 3


@pytest.mark.anyio
async def test_malformed_json_is_retried_then_a_clear_error_naming_the_url() -> None:
    with GammaServer([gamma_market(1)]) as srv:
        srv.faults = [("malformed", {})]  # a body garbled once (a proxy hiccup): the retry gets the answer
        async with client(srv.url) as gc:
            report = await gc.markets_by_condition_ids([cond(1)])
        assert [m.condition_id for m in report.markets] == [cond(1)] and len(srv.market_requests()) == 2
        srv.faults = [("malformed", {})] * 3
        async with client(srv.url, max_attempts=3) as gc:
            with pytest.raises(GammaError) as info:
                await gc.markets_by_condition_ids([cond(1)])
    message = str(info.value)
    assert message.startswith("Gamma /markets offset=0: malformed JSON in the response")
    assert f"(gave up after 3 attempts; GET {srv.url}/markets?condition_ids=" in message
    assert not isinstance(info.value, GammaUnavailable) and info.value.status == 200


@pytest.mark.anyio
async def test_an_answer_that_is_not_a_list_is_a_clear_error_without_retries() -> None:
    with GammaServer([gamma_market(1)]) as srv:
        srv.faults = [("notalist", {})]
        async with client(srv.url) as gc:
            with pytest.raises(GammaError, match=r"offset=0 \(GET http://.*\) answered dict, expected a JSON list"):
                await gc.markets_by_condition_ids([cond(1)])
    assert len(srv.market_requests()) == 1  # well-formed but wrong: asking again would not help


@pytest.mark.anyio
async def test_one_pooled_connection_across_batches() -> None:
    by_condition = {cond(n): gamma_market(n) for n in range(1, 4)}

    def serve(path: str, query: dict[str, list[str]]):
        return json_reply([by_condition[c] for c in query.get("condition_ids", []) if c in by_condition])

    with JsonServer(serve) as srv:
        async with client(srv.url, batch_size=1) as gc:
            report = await gc.markets_by_condition_ids([cond(1), cond(2), cond(3)])
    assert len(report.markets) == 3 and len(srv.seen) == 3
    assert len(srv.connections) == 1  # three requests, one keep-alive connection


@pytest.mark.anyio
async def test_malformed_market_entries_are_reported_not_fatal() -> None:
    bad = gamma_market(2, outcomePrices="[not json")
    with GammaServer([gamma_market(1), bad]) as srv:
        async with client(srv.url) as gc:
            report = await gc.markets_by_condition_ids([cond(1), cond(2)])
    assert [m.condition_id for m in report.markets] == [cond(1)]
    assert report.malformed and report.malformed[0][0] == cond(2)


@pytest.mark.anyio
async def test_unreachable_host() -> None:
    with GammaServer() as srv:
        url = srv.url
    # the server is shut down: connection refused on every attempt
    async with client(url, max_attempts=2) as gc:
        with pytest.raises(GammaUnavailable, match=r": unavailable, cannot connect to .* \(gave up after 2 attempts; GET "):
            await gc.markets_by_condition_ids([cond(1)])


def test_snapshot_source_reads_api_shaped_files(tmp_path) -> None:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"markets": [gamma_market(1), gamma_market(2)]}))
    assert set(SnapshotSource(path).by_condition) == {cond(1), cond(2)}
    lines = tmp_path / "snap.jsonl"
    lines.write_text(json.dumps(gamma_market(3)) + "\n")
    assert set(SnapshotSource(lines).by_condition) == {cond(3)}
    (tmp_path / "bad.json").write_text('{"nope": 1}')
    with pytest.raises(BadInput, match="expected a JSON list"):
        SnapshotSource(tmp_path / "bad.json")


@pytest.mark.anyio
async def test_client_side_rate_limit_holds_requests_back() -> None:
    with GammaServer([gamma_market(n) for n in range(1, 4)]) as srv:
        waits: list[float] = []
        async with client(srv.url, waits, batch_size=1, rate=(2, 3600)) as gc:
            report = await gc.markets_by_condition_ids([cond(1), cond(2), cond(3)])
    # 2 requests per hour: the third waited (recorded, not slept) for the window to free a slot
    assert len(report.markets) == 3 and len(srv.market_requests()) == 3
    assert len(waits) == 1 and 3599 < waits[0] <= 3600
