"""Step D and Step E on generated data, checked against an independent Python calculation.

The demo data has transfers (one BUY + one SELL), complete-set mints and merges, fees, unresolved
markets, 50/50 splits and invalid resolution candidates that must be ignored.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.events import JobState
from tests.enrichment.conftest import run_enrichment

ONE_CENT = Decimal("0.01")


def _trades(ch) -> list[dict]:
    return ch.query(
        "SELECT trade_id, tx_hash, wallet_address, market_id, condition_id, outcome_index, toString(side) AS side, "
        "price, shares, fee_usd, realized_pnl_usd, is_resolved FROM $db.trades_raw"
    ).dicts()


def _payouts(ch) -> dict[str, list[Decimal]]:
    rows = ch.query("SELECT condition_id, payouts FROM $db.market_resolutions FINAL").rows
    return {c: [Decimal(p[0]), Decimal(p[1])] for c, p in rows}


def expected_pnl(trade: dict, payouts: dict[str, list[Decimal]]) -> Decimal | None:
    p = payouts.get(trade["condition_id"])
    if p is None:
        return None
    s = 1 if trade["side"] == "BUY" else -1
    return s * trade["shares"] * (p[trade["outcome_index"]] - trade["price"]) - trade["fee_usd"]


@pytest.mark.parametrize("strategy", ["lightweight", "classic"])
def test_step_d_and_e_match_an_independent_calculation(settings, ch, strategy) -> None:
    report = generate_demo(ch, "small", seed=11)
    assert report.rejected > 0  # invalid resolutions exist and were kept out
    job = EnrichmentJob(["D", "E"], batch_size=17, write_strategy=strategy, remote_checkpoints=False)
    outcome, rec = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert job.results["D"]["write_strategy"] == strategy

    trades = _trades(ch)
    payouts = _payouts(ch)
    rejected = {r[0] for r in ch.query("SELECT condition_id FROM $db.resolution_rejects").rows}
    # The data exercise what matters: sells, fees, mints, unresolved, rejected resolutions.
    by_tx: dict[str, list[dict]] = defaultdict(list)
    for t in trades:
        by_tx[t["tx_hash"]].append(t)
    kinds = {tuple(sorted((x["side"], x["outcome_index"]) for x in legs)) for legs in by_tx.values()}
    assert (("BUY", 0), ("BUY", 1)) in kinds  # complete-set mint
    assert any(t["side"] == "SELL" for t in trades)
    assert any(t["fee_usd"] > 0 for t in trades)
    assert any(t["condition_id"] not in payouts for t in trades)
    assert any(t["condition_id"] in rejected for t in trades)

    for t in trades:
        want = expected_pnl(t, payouts)
        assert t["realized_pnl_usd"] == want, t["trade_id"]  # exact Decimal equality
        assert t["is_resolved"] == (1 if want is not None else 0)
        if t["condition_id"] in rejected:
            assert t["realized_pnl_usd"] is None

    # Value conservation per resolved market, exactly.
    per_market: dict[str, Decimal] = defaultdict(Decimal)
    for t in trades:
        if t["realized_pnl_usd"] is not None:
            per_market[t["market_id"]] += t["realized_pnl_usd"] + t["fee_usd"]
    assert per_market and all(v == 0 for v in per_market.values())

    # Step E: positions of resolved conditions, flat ones excluded.
    positions: dict[tuple[str, str], dict] = {}
    for t in trades:
        if t["condition_id"] not in payouts:
            continue
        key = (t["wallet_address"], t["condition_id"])
        pos = positions.setdefault(key, {"exposure": Decimal(0), "n": 0, "pnl": Decimal(0), "market": t["market_id"]})
        s = 1 if t["side"] == "BUY" else -1
        pos["exposure"] += s * (1 if t["outcome_index"] == 0 else -1) * t["shares"]
        pos["n"] += 1
        pos["pnl"] += expected_pnl(t, payouts)
    want_rows = {}
    for (wallet, cond), pos in positions.items():
        if abs(pos["exposure"]) < ONE_CENT:
            continue
        p = payouts[cond]
        side = "YES" if pos["exposure"] > 0 else "NO"
        won = p[0] > p[1] if side == "YES" else p[1] > p[0]
        want_rows[(wallet, cond)] = (pos["market"], side, int(won), pos["n"], abs(pos["exposure"]), pos["pnl"])
    got = {
        (r["wallet_address"], r["condition_id"]): (r["market_id"], r["final_side"], r["won"], r["num_trades"], r["final_shares"], r["realized_pnl_usd"])
        for r in ch.query("SELECT * FROM $db.wallet_resolution_outcomes").dicts()
    }
    assert got == want_rows
    assert any(v[2] == 1 for v in got.values()) and any(v[2] == 0 for v in got.values())

    accuracy = {r[0]: (int(r[1]), int(r[2])) for r in ch.query("SELECT wallet_address, resolved_positions, wins FROM $db.wallet_accuracy").rows}
    want_acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (wallet, _), v in want_rows.items():
        want_acc[wallet][0] += 1
        want_acc[wallet][1] += v[2]
    assert accuracy == {w: tuple(v) for w, v in want_acc.items()}

    gates = {g.name: g.status for g in job.gates}
    assert set(gates.values()) == {"PASS"}, job.gates


def test_demo_generation_is_deterministic_and_idempotent(ch) -> None:
    first = generate_demo(ch, "small", seed=5)
    sums1 = ch.query("SELECT count(), sumWithOverflow(cityHash64(trade_id, wallet_address, price, shares, fee_usd)) FROM $db.trades_raw").rows
    second = generate_demo(ch, "small", seed=5)
    sums2 = ch.query("SELECT count(), sumWithOverflow(cityHash64(trade_id, wallet_address, price, shares, fee_usd)) FROM $db.trades_raw").rows
    assert sums1 == sums2 and first.trades == second.trades == sums1[0][0]
    generate_demo(ch, "small", seed=6)
    assert ch.query("SELECT count(), sumWithOverflow(cityHash64(trade_id, wallet_address, price, shares, fee_usd)) FROM $db.trades_raw").rows != sums1
    # every fill has both of its sides
    assert ch.scalar("SELECT countIf(c != 2) FROM (SELECT tx_hash, count() AS c FROM $db.trades_raw GROUP BY tx_hash)") == 0


def test_unknown_demo_scale_is_bad_input(ch) -> None:
    from engine.errors import BadInput

    with pytest.raises(BadInput, match="unknown demo scale 'huge'"):
        generate_demo(ch, "huge")


@pytest.mark.parametrize("strategy", ["auto", "lightweight"])
def test_same_results_on_both_clickhouse_backends(ch_backend, settings, strategy) -> None:
    """The same SQL through clickhouse-connect (HTTP server) and embedded chDB."""
    ch = ch_backend
    generate_demo(ch, "small", seed=12)
    job = EnrichmentJob(["D", "E"], batch_size=40, write_strategy=strategy, remote_checkpoints=False)
    outcome, _ = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    payouts = _payouts(ch)
    for t in _trades(ch):
        assert t["realized_pnl_usd"] == expected_pnl(t, payouts)
    assert {g.status for g in job.gates} == {"PASS"}
