"""Every gate passes on a complete run and fails when its condition is broken."""

from __future__ import annotations

import pytest

from engine.enrichment.demo import generate_demo
from engine.enrichment.gates import compute_gates
from engine.enrichment.job import EnrichmentJob
from engine.events import JobState
from tests.enrichment.conftest import run_enrichment


def _status(ch) -> dict[str, tuple[str, object]]:
    return {g.name: (g.status, g.actual) for g in compute_gates(ch)}


@pytest.fixture
def enriched(settings, ch):
    generate_demo(ch, "small", seed=9)
    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], batch_size=100, remote_checkpoints=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert {s for s, _ in _status(ch).values()} == {"PASS"}
    return ch


def _sync(ch, statement: str) -> None:
    ch.command(statement, settings={"mutations_sync": 2})


def test_markets_missing_dim_warns_on_one_and_fails_on_two(enriched) -> None:
    ch = enriched
    markets = [r[0] for r in ch.query("SELECT DISTINCT market_id FROM $db.trades_raw ORDER BY market_id LIMIT 2").rows]
    _sync(ch, f"ALTER TABLE $db.markets_dim DELETE WHERE market_id = '{markets[0]}'")
    assert _status(ch)["markets_missing_dim"] == ("WARN", 1)
    _sync(ch, f"ALTER TABLE $db.markets_dim DELETE WHERE market_id = '{markets[1]}'")
    assert _status(ch)["markets_missing_dim"] == ("FAIL", 2)


def test_pnl_nulls_fails_before_step_d_and_after_a_partial_reset(settings, ch) -> None:
    generate_demo(ch, "small", seed=9)
    status, actual = _status(ch)["pnl_nulls"]
    assert status == "FAIL" and actual > 0  # nothing computed yet: the old gate said 0 here
    run_enrichment(EnrichmentJob(["D"], remote_checkpoints=False, run_gates=False), settings, ch)
    assert _status(ch)["pnl_nulls"] == ("PASS", 0)
    market = ch.scalar("SELECT any(market_id) FROM $db.trades_raw WHERE is_resolved = 1")
    _sync(ch, f"ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL WHERE market_id = '{market}'")
    status, actual = _status(ch)["pnl_nulls"]
    assert status == "FAIL" and actual > 0


def test_wallets_with_outcomes_fails_when_outcomes_are_missing_or_stale(enriched) -> None:
    ch = enriched
    expected = _status(ch)["wallets_with_outcomes"][1]
    wallet = ch.scalar("SELECT any(wallet_address) FROM $db.wallet_resolution_outcomes")
    _sync(ch, f"ALTER TABLE $db.wallet_resolution_outcomes DELETE WHERE wallet_address = '{wallet}'")
    assert _status(ch)["wallets_with_outcomes"] == ("FAIL", expected - 1)
    _sync(ch, "TRUNCATE TABLE $db.wallet_resolution_outcomes")
    assert _status(ch)["wallets_with_outcomes"] == ("FAIL", 0)


def test_pending_mutations_fails_while_one_is_pending(enriched) -> None:
    ch = enriched
    # A mutation that cannot finish stays pending (with latest_fail_reason) until killed.
    ch.command("ALTER TABLE $db.trades_raw UPDATE shares = shares * throwIf(1, 'boom') WHERE 1",
               settings={"mutations_sync": 0})
    gates = {g.name: g for g in compute_gates(ch)}
    assert gates["pending_mutations"].status == "FAIL" and gates["pending_mutations"].actual == 1
    ch.command("KILL MUTATION WHERE database = {db:String} SYNC", {"db": ch.database})
    assert _status(ch)["pending_mutations"] == ("PASS", 0)


def test_bad_markets_fails_when_value_is_not_conserved(enriched) -> None:
    ch = enriched
    trade = ch.scalar("SELECT any(trade_id) FROM $db.trades_raw WHERE is_resolved = 1")
    _sync(ch, f"ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = realized_pnl_usd + 0.5 WHERE trade_id = '{trade}'")
    gates = {g.name: g for g in compute_gates(ch)}
    assert gates["bad_markets"].status == "FAIL" and gates["bad_markets"].actual == 1
    market = ch.scalar(f"SELECT market_id FROM $db.trades_raw WHERE trade_id = '{trade}'")
    assert market in gates["bad_markets"].detail


def test_missing_fill_side_is_reported_not_judged(settings, ch) -> None:
    """Drop one side of a fill: the market's P&L cannot conserve, and the gate says so as WARN (one
    market not checked, with the reason) instead of FAILing — real data (data-api takerOnly=true) is
    one-sided everywhere. The other markets are still checked."""
    generate_demo(ch, "small", seed=9)
    trade = ch.scalar("SELECT min(trade_id) FROM $db.trades_raw WHERE condition_id IN (SELECT condition_id FROM $db.market_resolutions)")
    market = ch.scalar(f"SELECT market_id FROM $db.trades_raw WHERE trade_id = '{trade}'")
    _sync(ch, f"ALTER TABLE $db.trades_raw DELETE WHERE trade_id = '{trade}'")
    run_enrichment(EnrichmentJob(["D", "E"], remote_checkpoints=False, run_gates=False), settings, ch)
    gate = {g.name: g for g in compute_gates(ch)}["bad_markets"]
    assert (gate.status, gate.actual) == ("WARN", 0)
    assert "1 resolved market(s) not checked: one-sided fills (1 transaction(s)" in gate.detail and market in gate.detail
    assert "(1 one-sided not checked)" in gate.expected
    # ... and a broken complete market next to it still FAILs
    other = ch.scalar(f"SELECT any(trade_id) FROM $db.trades_raw WHERE is_resolved = 1 AND market_id != '{market}'")
    _sync(ch, f"ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = realized_pnl_usd + 0.5 WHERE trade_id = '{other}'")
    assert _status(ch)["bad_markets"] == ("FAIL", 1)
