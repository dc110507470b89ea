"""Step T against the loopback data-api: every fill exactly once despite the API's quirks, a
resumable per-scope cursor, and incremental reruns."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.enrichment.gates import compute_gates
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.stept import STATE_FILE
from engine.events import JobState, Progress
from tests.conftest import with_settings
from tests.enrichment.conftest import run_enrichment
from tests.enrichment.polymarket_world import (
    EXPECTED_PNL, FILLS, M1, M2, M3, MARKETS, T0, addr, gamma_snapshot, matches,
)
from tests.support.data_api_server import DataApiServer, match, row


def _ids(ch) -> list[str]:
    return [r[0] for r in ch.query("SELECT trade_id FROM $db.trades_raw ORDER BY trade_id").rows]


def _run(settings, ch, server: DataApiServer, steps: list[str] | None = None, on_event=None, **options: Any):
    s = with_settings(settings, data_api_base_url=server.url, polymarket_base_url=server.url)
    job = EnrichmentJob(steps or ["T"], remote_checkpoints=False, run_gates=steps is not None, abc_options=options)
    outcome, rec = run_enrichment(job, s, ch, on_event=on_event)
    assert outcome.state is JobState.DONE, outcome.error
    return job.results.get("T"), rec, job


def _trades_queries(server: DataApiServer) -> list[dict[str, str]]:
    return [{k: v[-1] for k, v in s.query.items()} for s in server.seen if s.path == "/trades"]


def test_every_fill_once_through_the_quirks(settings, ch) -> None:
    server = DataApiServer(max_limit=2, duplicate_every=3)
    with server:
        server.add(*matches())
        bad = dict(matches()[0].taker, price="n/a", transactionHash="0x" + "ab" * 32)
        server.add_raw(T0 + 15, bad)  # a malformed row
        server.add_raw(T0 + 16, dict(matches()[1].taker, outcomeIndex=999, transactionHash="0x" + "cd" * 32))  # half activity
        server.script.extend([(429, {"Retry-After": "0", "Content-Type": "application/json"}, b'{"error": "slow down"}'),
                              (503, {"Retry-After": "0"}, b"upstream"), "malformed"])
        result, rec, _ = _run(settings, ch, server, conditions=[m.condition_id for m in MARKETS])
        queries = _trades_queries(server)
    assert result["status"] == "done" and result["scopes_done"] == 3
    ids = _ids(ch)
    assert len(ids) == FILLS and len(set(ids)) == FILLS
    assert result["inserted"] == FILLS and result["invalid"] == 2 and result["duplicates"] > 0
    assert all(q["takerOnly"] == "false" for q in queries)  # both sides of every fill
    assert all(q["limit"] == "500" for q in queries)  # the documented maximum; the stand-in clamps to 2
    assert result["requests"] == len(queries)  # the 429, 503 and malformed answers were retried
    failures = [e.reason for e in rec.events if type(e).__name__ == "Failure"]
    assert sum("malformed data-api row skipped" in f for f in failures) == 2
    assert any("half trade, half activity" in f for f in failures)
    state = json.loads((settings.runtime / STATE_FILE).read_text())
    m1 = state["scopes"][f"market:{M1.condition_id}"]
    assert (m1["newest_ts"], m1["walk"]) == (T0 + 20, None) and isinstance(m1["walked_at"], int)
    assert any(isinstance(e, Progress) and e.step == "T" for e in rec.events)


def test_a_rerun_fetches_only_newer_trades(settings, ch) -> None:
    with DataApiServer(max_limit=2) as server:
        server.add(*matches())
        first, _, _ = _run(settings, ch, server, conditions=[m.condition_id for m in MARKETS])
        assert first["inserted"] == FILLS
        before = len(server.seen)
        server.add(match(M2, "tx5", T0 + 100, "frank", "SELL", 1, Decimal("0.30"), [("erin", Decimal(5), "opposite")]))
        second, _, _ = _run(settings, ch, server, conditions=[m.condition_id for m in MARKETS])
        queries = [{k: v[-1] for k, v in s.query.items()} for s in server.seen[before:]]
    assert second["inserted"] == 2 and len(_ids(ch)) == FILLS + 2
    # Each walk pages until it sees a trade OLDER than its cursor (or the end): trades in the cursor's
    # own second may still be new, so that page is read too; its known rows are skipped by id.
    # M1: tx2 (the cursor's second), then tx1 (older): stop. M2: the new tx5, tx3 (cursor), end.
    by_market = {m.condition_id: [int(q["offset"]) for q in queries if q["market"] == m.condition_id] for m in MARKETS}
    assert by_market == {M1.condition_id: [0, 2], M2.condition_id: [0, 2, 4], M3.condition_id: [0, 2]}
    assert second["rows_older_than_cursor"] == 2  # tx1's two rows: fetched on that page, never loaded
    assert second["already_loaded"] == 6  # tx2, tx3, tx4: the cursors' own seconds


def test_the_offset_cap_ends_the_walk_and_is_reported(settings, ch) -> None:
    many = [match(M1, f"cap{i}", T0 + i, f"w{i}", "BUY", 0, Decimal("0.40"), [(f"v{i}", Decimal(1), "opposite")])
            for i in range(10)]  # 20 rows
    with DataApiServer(max_limit=4, offset_cap=8) as server:  # pages at 0, 4, 8; past 8 the page at 8 again
        server.add(*many)
        result, rec, _ = _run(settings, ch, server, conditions=[M1.condition_id])
        offsets = [int(q["offset"]) for q in _trades_queries(server)]
    assert offsets == [0, 4, 8, 12]  # 12 answered like 8: recognised as the repeat, the walk ends
    assert len(_ids(ch)) == 12  # what the API lets anyone page; the rest is reported, not invented
    assert result["truncated"] == [f"market:{M1.condition_id}"]
    assert any("offset cap" in m for m in rec.messages("WARNING"))


def test_a_400_past_the_offset_cap_ends_the_walk_too(settings, ch) -> None:
    many = [match(M1, f"c4{i}", T0 + i, f"w{i}", "SELL", 1, Decimal("0.30"), [(f"v{i}", Decimal(2), "opposite")])
            for i in range(6)]  # 12 rows
    with DataApiServer(max_limit=4, offset_cap=4, past_cap="400") as server:
        server.add(*many)
        result, _, _ = _run(settings, ch, server, conditions=[M1.condition_id])
        offsets = [int(q["offset"]) for q in _trades_queries(server)]
    assert offsets == [0, 4, 8] and len(_ids(ch)) == 8
    assert result["truncated"] == [f"market:{M1.condition_id}"] and result["status"] == "done"


def test_stop_between_pages_then_resume_at_the_cursor(settings, ch) -> None:
    with DataApiServer(max_limit=2) as server:
        server.add(*matches())

        def stop_after_second_page(event, control) -> None:
            if isinstance(event, Progress) and event.step == "T" and event.detail.get("offset") == 4:
                control.stop("test")

        s = with_settings(settings, data_api_base_url=server.url)
        job = EnrichmentJob(["T"], remote_checkpoints=False, run_gates=False,
                            abc_options={"conditions": [m.condition_id for m in MARKETS]})
        outcome, _ = run_enrichment(job, s, ch, on_event=stop_after_second_page)
        assert job.results["T"]["status"] == "stopped"
        state = json.loads((settings.runtime / STATE_FILE).read_text())
        assert state["scopes"][f"market:{M1.condition_id}"]["walk"]["offset"] == 4
        seen_before = len(server.seen)
        result, _, _ = _run(settings, ch, server, conditions=[m.condition_id for m in MARKETS])
        resumed = [{k: v[-1] for k, v in q.query.items()} for q in server.seen[seen_before:]]
    assert resumed[0]["market"] == M1.condition_id and resumed[0]["offset"] == "4"
    ids = _ids(ch)
    assert len(ids) == FILLS and len(set(ids)) == FILLS


def test_event_slug_and_wallet_scopes(settings, ch) -> None:
    with DataApiServer() as server:
        server.add(*matches())
        result, _, _ = _run(settings, ch, server, event_slug="who-wins")
        assert result["scopes"] == 2  # the negRisk event's two binary markets
        assert {r[0] for r in ch.query("SELECT DISTINCT condition_id FROM $db.trades_raw").rows} == {M2.condition_id, M3.condition_id}
        ch.command("TRUNCATE TABLE $db.trades_raw")
        (settings.runtime / STATE_FILE).unlink()
        erin = matches()[2].makers[0]["proxyWallet"]
        result, _, _ = _run(settings, ch, server, wallet=erin)
    assert result["scopes"] == 1
    assert {r[0] for r in ch.query("SELECT DISTINCT wallet_address FROM $db.trades_raw").rows} == {erin.lower()}
    assert int(ch.scalar("SELECT count() FROM $db.trades_raw")) == 2


def test_step_t_then_a_to_e_and_gates(settings, ch, tmp_path: Path) -> None:
    """The markets of markets_dim are the default scope; fetched trades go through A–E and the gates."""
    snapshot = gamma_snapshot(tmp_path / "gamma.json")
    from engine.enrichment.gamma import GammaMarket
    from engine.enrichment.loaders import upsert_markets
    from engine.enrichment.schema import ensure_schema
    from engine.enrichment.steps_abc import market_row

    ensure_schema(ch)
    raw = json.loads(snapshot.read_text())["markets"]
    upsert_markets(ch, [market_row(GammaMarket.from_api(m), m["id"], "snapshot") for m in raw])
    with DataApiServer() as server:
        server.add(*matches())
        result, _, job = _run(settings, ch, server, steps=["T", "A", "B", "C", "D", "E"], snapshot=snapshot)
    assert result["inserted"] == FILLS
    assert dict(ch.query("SELECT DISTINCT condition_id, market_id FROM $db.trades_raw").rows) == {
        m.condition_id: m.gamma_id for m in MARKETS}  # markets_dim known: no placeholders
    assert {g.name: g.status for g in compute_gates(ch)}["bad_markets"] == "PASS"
    pnl = {(w, c): Decimal(str(p)) for w, c, p in ch.query(
        "SELECT wallet_address, condition_id, sum(realized_pnl_usd) FROM $db.trades_raw GROUP BY 1, 2").rows}
    assert pnl == {(addr(w), m.condition_id): v for (w, m), v in EXPECTED_PNL.items()}  # the hand computation


def test_closed_markets_walked_after_their_end_are_not_asked_again(settings, ch, tmp_path: Path) -> None:
    from engine.enrichment.gamma import GammaMarket
    from engine.enrichment.loaders import upsert_markets
    from engine.enrichment.schema import ensure_schema
    from engine.enrichment.steps_abc import market_row

    ensure_schema(ch)
    raw = json.loads(gamma_snapshot(tmp_path / "gamma.json").read_text())["markets"]
    raw[1]["closed"] = False  # M2 still open
    upsert_markets(ch, [market_row(GammaMarket.from_api(m), m["id"], "snapshot") for m in raw])
    with DataApiServer() as server:
        server.add(*matches())
        first, _, _ = _run(settings, ch, server)  # scope: every market in markets_dim
        before = len(server.seen)
        second, _, _ = _run(settings, ch, server)
        asked = {q["market"] for q in _trades_queries(server)[before:]}
    assert first["inserted"] == FILLS and first["skipped_closed"] == 0
    # M1 and M3 closed on 2025-02-01 and were walked completely since: nothing new can come
    assert second["skipped_closed"] == 2 and asked == {M2.condition_id} and second["scopes_done"] == 3


def test_the_client_keeps_under_the_published_rate_limit() -> None:
    from engine.data_api import RATE, DataApiClient
    from engine.gamma_transport import SlidingWindowLimiter

    client = DataApiClient("http://127.0.0.1:9")
    limiter = client.http.limiter
    assert isinstance(limiter, SlidingWindowLimiter)
    assert (limiter.max_requests, limiter.period_s) == RATE == (150, 10.0)  # the data-api publishes 200 / 10 s


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"scopes": []}', 'must be a JSON object with a "scopes" object'),
    ('{"scopes": {"market:x": {"walk": {"offset": -1}}}}', "walk.offset must be an integer"),
])
def test_a_damaged_checkpoint_is_bad_input(settings, ch, text: str, message: str) -> None:
    from engine.enrichment.stept import read_state
    from engine.errors import BadInput

    path = settings.runtime / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    with pytest.raises(BadInput, match=message):
        read_state(path)


def test_the_stand_in_serves_taker_rows_only_by_default(settings) -> None:
    import httpx

    with DataApiServer() as server:
        server.add(*matches())
        default = httpx.get(f"{server.url}/trades", params={"market": M1.condition_id}).json()
        both = httpx.get(f"{server.url}/trades", params={"market": M1.condition_id, "takerOnly": "false"}).json()
    assert len(default) == 2 and len(both) == 5
    assert {r["transactionHash"] for r in default} == {mt.tx for mt in matches()[:2]}
    _ = row  # (the builders are shared with the export fixtures)
