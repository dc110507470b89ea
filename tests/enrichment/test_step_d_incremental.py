"""Incremental Step D on real chDB: after new trades, new resolutions, a corrected resolution or a
market reset, a plain `enrich --step D` recomputes only the affected pairs, and the result (trades_raw
P&L, and wallet_resolution_outcomes after Step E) is bit for bit what a full recompute gives."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from engine.enrichment import sql
from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.resets import run_reset
from engine.enrichment.stepd import pnl_checksum
from engine.errors import BadInput
from engine.events import JobState, Progress
from tests.enrichment.conftest import run_enrichment

NONE = {"new_trades": 0, "newly_resolved": 0, "corrected": 0, "reset": 0}
OUTCOMES_CHECKSUM = (
    "SELECT count(), sumWithOverflow(cityHash64(wallet_address, condition_id, market_id, toString(resolved_outcome), "
    "toString(final_side), won, resolved_at, toString(canonical_category), num_trades, toString(final_shares), "
    "toString(realized_pnl_usd))) FROM $db.wallet_resolution_outcomes"
)
SYNC = {"mutations_sync": 2}


def outcomes_checksum(ch) -> tuple[int, int]:
    row = ch.query(OUTCOMES_CHECKSUM).rows[0]
    return int(row[0]), int(row[1])


LAST: dict[str, Any] = {}  # the last run's Step E result


def run_d_e(settings, ch, steps: tuple[str, ...] = ("D", "E"), **kwargs: Any) -> tuple[dict[str, Any], Any]:
    job = EnrichmentJob(list(steps), batch_size=7, remote_checkpoints=False, run_gates=False, **kwargs)
    outcome, rec = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    LAST["E"] = job.results.get("E")
    return job.results.get("D", {}), rec


def yardstick_checksum(ch) -> tuple[int, int]:
    """Every trade's P&L from one set-based statement over today's trades and payouts."""
    ch.command(sql.YARDSTICK_DROP)
    ch.command(sql.one_statement_pnl_sql(ch.database))
    row = ch.query("SELECT count(), sumWithOverflow(cityHash64(trade_id, ifNull(toString(realized_pnl_usd), 'NULL'), "
                   "is_resolved)) FROM $db.step_d_yardstick").rows[0]
    return int(row[0]), int(row[1])


def full_recompute(settings, ch) -> tuple[tuple[int, int], tuple[int, int]]:
    """What `--full` gives from scratch (every P&L NULLed first, so nothing is inherited)."""
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1", settings=SYNC)
    result, _ = run_d_e(settings, ch, full=True)
    assert result["mode"] == "full" and result["pairs_total"] == pairs(ch)
    assert LAST["E"]["mode"] == "full"  # a full Step D: Step E rebuilds every wallet
    return pnl_checksum(ch), outcomes_checksum(ch)


def pairs(ch, where: str = "1", params: dict | None = None) -> int:
    return int(ch.scalar(f"SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw WHERE {where}", params))


def rows(ch, where: str = "1", params: dict | None = None) -> int:
    return int(ch.scalar(f"SELECT count() FROM $db.trades_raw WHERE {where}", params))


WALLETS: dict[str, int] = {}  # wallets of the last change's affected pairs


def wallets(ch, where: str, params: dict | None = None) -> int:
    return int(ch.scalar(f"SELECT uniqExact(wallet_address) FROM $db.trades_raw WHERE {where}", params))


def check_incremental_e() -> None:
    e = LAST["E"]
    assert e["mode"] == "incremental" and e["wallets_rebuilt"] == WALLETS["expected"] > 0


def resolved_conditions(ch, n: int, offset: int = 0) -> list[str]:
    """Validly resolved conditions with trades, YES or NO winning (swapping their payouts changes them)."""
    return [str(r[0]) for r in ch.query(
        "SELECT condition_id FROM $db.market_resolutions FINAL WHERE payouts[1] != payouts[2] "
        "AND condition_id IN (SELECT condition_id FROM $db.trades_raw) ORDER BY condition_id LIMIT {n:UInt32} OFFSET {o:UInt32}",
        {"n": n, "o": offset}).rows]


def hold_back_resolutions(ch, conditions: list[str]) -> None:
    ch.command("CREATE TABLE $db.held_resolutions ENGINE = MergeTree ORDER BY condition_id AS "
               "SELECT condition_id, market_id, payouts, resolved_at, source FROM $db.market_resolutions FINAL "
               "WHERE condition_id IN {c:Array(String)}", {"c": conditions})
    ch.command("ALTER TABLE $db.market_resolutions DELETE WHERE condition_id IN {c:Array(String)}", {"c": conditions},
               settings=SYNC)


def release_resolutions(ch) -> None:
    ch.command("INSERT INTO $db.market_resolutions (condition_id, market_id, payouts, resolved_at, source, updated_at) "
               "SELECT condition_id, market_id, payouts, resolved_at, source, now64(3) FROM $db.held_resolutions")


def correct_resolution(ch, condition: str) -> None:
    """The source corrects a resolution: the other outcome won (a newer version of the row)."""
    ch.command("INSERT INTO $db.market_resolutions (condition_id, market_id, payouts, resolved_at, source, updated_at) "
               "SELECT condition_id, market_id, [payouts[2], payouts[1]], resolved_at, 'correction', "
               "updated_at + toIntervalSecond(1) FROM $db.market_resolutions FINAL WHERE condition_id = {c:String}",
               {"c": condition})


def append_trades(ch, where: str, params: dict, suffix: str, wallet: str | None = None) -> None:
    """Late trades: copies of existing ones under new ids (optionally of another wallet), without P&L."""
    w = "{w:String}" if wallet else "wallet_address"
    ch.command(
        "INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, "
        "shares, usd_value, fee_usd, timestamp, tx_hash, canonical_category, realized_pnl_usd, is_resolved) "
        f"SELECT concat(trade_id, {{s:String}}), {w}, market_id, condition_id, outcome_index, side, price, shares, "
        "usd_value, fee_usd, timestamp, tx_hash, canonical_category, NULL, 0 FROM $db.trades_raw WHERE " + where,
        {**params, "s": suffix, **({"w": wallet} if wallet else {})})


def a_pair(ch, condition_filter: str, params: dict | None = None, skip: int = 0) -> tuple[str, str]:
    row = ch.query("SELECT wallet_address, condition_id FROM $db.trades_raw WHERE " + condition_filter +
                   " GROUP BY wallet_address, condition_id ORDER BY wallet_address, condition_id "
                   "LIMIT 1 OFFSET {skip:UInt32}", {**(params or {}), "skip": skip}).rows[0]
    return str(row[0]), str(row[1])


PAIR = "wallet_address = {pw:String} AND condition_id = {pc:String}"


def pair_params(pair: tuple[str, str]) -> dict[str, str]:
    return {"pw": pair[0], "pc": pair[1]}


class Setup:
    """Demo data, two resolutions held back, a first (full) Step D + E."""

    def __init__(self, settings, ch, strategy: str) -> None:
        generate_demo(ch, "small", seed=3)
        self.held = resolved_conditions(ch, 2)
        self.corrected = resolved_conditions(ch, 1, offset=2)[0]
        hold_back_resolutions(ch, self.held)
        self.strategy = strategy
        result, _ = run_d_e(settings, ch, write_strategy=strategy)
        assert result["mode"] == "full" and result["affected"] is None  # no previous run: a full one
        assert result["pairs_total"] == pairs(ch)
        assert int(ch.scalar("SELECT count() FROM $db.stepd_pair_state FINAL")) == pairs(ch)


def change_new_trades(ch, s: Setup) -> tuple[dict[str, int], int]:
    resolved_pair = a_pair(ch, "condition_id IN (SELECT condition_id FROM $db.market_resolutions)")
    unresolved_pair = a_pair(ch, "condition_id NOT IN (SELECT condition_id FROM $db.market_resolutions) "
                                 "AND condition_id NOT IN {h:Array(String)}", {"h": s.held})
    append_trades(ch, PAIR, pair_params(resolved_pair), "-late")
    append_trades(ch, PAIR, pair_params(unresolved_pair), "-late")
    # a wallet new to a resolved condition: a pair that has no bookkeeping at all
    append_trades(ch, PAIR + " AND trade_id = (SELECT min(trade_id) FROM $db.trades_raw WHERE " + PAIR + ")",
                  pair_params(resolved_pair), "-new", wallet="0x" + "e" * 40)
    expected_rows = rows(ch, PAIR, pair_params(resolved_pair)) + rows(ch, PAIR, pair_params(unresolved_pair)) + 1
    WALLETS["expected"] = len({resolved_pair[0], unresolved_pair[0]}) + 1
    return {**NONE, "new_trades": 3}, expected_rows


def change_new_resolutions(ch, s: Setup) -> tuple[dict[str, int], int]:
    release_resolutions(ch)
    where, params = "condition_id IN {h:Array(String)}", {"h": s.held}
    WALLETS["expected"] = wallets(ch, where, params)
    return {**NONE, "newly_resolved": pairs(ch, where, params)}, rows(ch, where, params)


def change_corrected(ch, s: Setup) -> tuple[dict[str, int], int]:
    correct_resolution(ch, s.corrected)
    where, params = "condition_id = {c:String}", {"c": s.corrected}
    WALLETS["expected"] = wallets(ch, where, params)
    return {**NONE, "corrected": pairs(ch, where, params)}, rows(ch, where, params)


def change_market_reset(ch, s: Setup, settings) -> tuple[dict[str, int], int]:
    market = str(ch.scalar("SELECT market_id FROM $db.trades_raw WHERE is_resolved = 1 AND condition_id NOT IN "
                           "{h:Array(String)} AND condition_id != {c:String} ORDER BY market_id DESC LIMIT 1",
                           {"h": s.held, "c": s.corrected}))
    assert anyio.run(lambda: run_reset(ch, settings, market_id=market, confirm=lambda plan: True)) is not None
    where, params = "market_id = {m:String}", {"m": market}
    WALLETS["expected"] = wallets(ch, where, params)
    assert rows(ch, where + " AND realized_pnl_usd IS NOT NULL", params) == 0  # the reset really happened
    return {**NONE, "reset": pairs(ch, where, params)}, rows(ch, where, params)


CHANGES = ["new_trades", "new_resolutions", "corrected", "market_reset"]


def apply_change(name: str, ch, s: Setup, settings) -> tuple[dict[str, int], int]:
    if name == "new_trades":
        return change_new_trades(ch, s)
    if name == "new_resolutions":
        return change_new_resolutions(ch, s)
    if name == "corrected":
        return change_corrected(ch, s)
    return change_market_reset(ch, s, settings)


def check_incremental(result: dict[str, Any], rec: Any, expected: dict[str, int], expected_rows: int) -> None:
    total = sum(expected.values())
    assert total > 0
    assert result["mode"] == "incremental" and result["status"] == "done"
    assert result["affected"] == expected
    assert result["pairs_total"] == result["pairs_done"] == total  # only the affected pairs were the work
    assert result["rows_written"] == expected_rows
    assert [e.total for e in rec.of(Progress) if e.step == "D" and e.total][0] == total  # the progress total
    line = [m for m in rec.messages() if "pairs affected" in m][0]
    assert line.startswith(f"{total:,} of ")


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("strategy", ["lightweight", "classic"])
def test_incremental_run_equals_a_full_recompute(settings, ch, strategy, change) -> None:
    s = Setup(settings, ch, strategy)
    expected, expected_rows = apply_change(change, ch, s, settings)
    # An unaffected resolved pair carries a marker: a run that rewrote it would remove the marker.
    untouched = a_pair(ch, "is_resolved = 1 AND realized_pnl_usd IS NOT NULL", skip=5)
    marker = PAIR + " AND trade_id = (SELECT min(trade_id) FROM $db.trades_raw WHERE " + PAIR + ")"
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = realized_pnl_usd + 1 WHERE " + marker,
               pair_params(untouched), settings=SYNC)

    result, rec = run_d_e(settings, ch, ("D",), write_strategy=strategy)
    check_incremental(result, rec, expected, expected_rows)
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = realized_pnl_usd - 1 WHERE " + marker,
               pair_params(untouched), settings=SYNC)  # it was there: that pair was not written
    run_d_e(settings, ch, ("E",))
    check_incremental_e()
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert json.loads(state_path(settings.runtime).read_text())["mode"] == "incremental"

    assert full_recompute(settings, ch) == incremental
    assert yardstick_checksum(ch) == incremental[0]


def test_unchanged_inputs_affect_nothing_and_the_marker_shows_nothing_was_written(settings, ch) -> None:
    s = Setup(settings, ch, "lightweight")
    before = pnl_checksum(ch), outcomes_checksum(ch)
    result, rec = run_d_e(settings, ch)
    assert result["mode"] == "incremental" and result["affected"] == NONE
    assert (result["pairs_total"], result["batches"], result["rows_written"]) == (0, 0, 0)
    assert (pnl_checksum(ch), outcomes_checksum(ch)) == before
    assert any(m.startswith("0 of ") and "pairs affected" in m for m in rec.messages())
    del s


def test_chained_incremental_runs_equal_one_full_recompute(settings, ch) -> None:
    """Every kind of change, each followed by an incremental run (no full run in between)."""
    s = Setup(settings, ch, "lightweight")
    for change in CHANGES:
        expected, expected_rows = apply_change(change, ch, s, settings)
        result, rec = run_d_e(settings, ch)
        check_incremental(result, rec, expected, expected_rows)
        check_incremental_e()
        assert yardstick_checksum(ch) == pnl_checksum(ch), change
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert full_recompute(settings, ch) == incremental


def test_stopped_incremental_run_resumes_over_its_affected_pairs(settings, ch) -> None:
    from engine.events import CheckpointSaved

    s = Setup(settings, ch, "classic")
    expected, _ = change_new_resolutions(ch, s)
    total = sum(expected.values())
    assert total > 7  # more than one batch

    def stop(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx >= 1:
            control.stop("test stop")

    job = EnrichmentJob(["D"], batch_size=3, remote_checkpoints=False, run_gates=False, write_strategy="classic")
    outcome, _ = run_enrichment(job, settings, ch, on_event=stop)
    assert outcome.state is JobState.STOPPED
    state = json.loads(state_path(settings.runtime).read_text())
    assert state["mode"] == "incremental" and state["pairs_total"] == total and 0 < state["pairs_done"] < total

    job = EnrichmentJob(["D", "E"], resume=True, batch_size=3, remote_checkpoints=False, run_gates=False,
                        write_strategy="classic")
    outcome, rec = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert any("of an incremental run" in m for m in rec.messages())
    assert job.results["D"]["pairs_done"] == job.results["D"]["pairs_total"] == total
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    # The bookkeeping now covers every pair: the next plain run has nothing to do.
    result, _ = run_d_e(settings, ch)
    assert result["affected"] == NONE
    assert full_recompute(settings, ch) == incremental


def test_a_stopped_full_run_is_not_trusted_for_an_incremental_one(settings, ch) -> None:
    from engine.events import CheckpointSaved

    generate_demo(ch, "small", seed=3)

    def stop(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx >= 2:
            control.stop("test stop")

    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=7, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=stop)
    assert outcome.state is JobState.STOPPED
    result, _ = run_d_e(settings, ch)  # no complete previous run: full
    assert result["mode"] == "full" and result["pairs_total"] == pairs(ch)


def test_bookkeeping_from_an_older_build_missing_means_one_full_run(settings, ch) -> None:
    Setup(settings, ch, "lightweight")
    ch.command("TRUNCATE TABLE $db.stepd_pair_state")  # as a complete run of an older build leaves it
    result, rec = run_d_e(settings, ch)
    assert result["mode"] == "full" and result["pairs_total"] == pairs(ch)
    assert any("no per-pair bookkeeping" in m for m in rec.messages())
    result, _ = run_d_e(settings, ch)
    assert result["mode"] == "incremental" and result["affected"] == NONE


def test_full_and_resume_together_are_refused() -> None:
    with pytest.raises(BadInput, match="--full and --resume"):
        EnrichmentJob(["D"], resume=True, full=True)


def test_cli_full_with_resume_is_a_clear_bad_input(capsys) -> None:
    from console.cli import main

    assert main(["enrich", "--step", "D", "--full", "--resume", "--no-ui"]) == 4
    err = capsys.readouterr().err
    assert "--full and --resume contradict" in err and "Traceback" not in err


def test_step_e_after_a_resolution_date_correction_rebuilds_that_conditions_traders(settings, ch) -> None:
    """Payouts unchanged, resolved_at corrected: Step D has nothing to do, Step E still must."""
    s = Setup(settings, ch, "lightweight")
    ch.command("INSERT INTO $db.market_resolutions (condition_id, market_id, payouts, resolved_at, source, updated_at) "
               "SELECT condition_id, market_id, payouts, resolved_at + 3600, 'correction', updated_at + toIntervalSecond(1) "
               "FROM $db.market_resolutions FINAL WHERE condition_id = {c:String}", {"c": s.corrected})
    result, _ = run_d_e(settings, ch)
    assert result["affected"] == NONE
    assert LAST["E"]["mode"] == "incremental"
    assert LAST["E"]["wallets_rebuilt"] == wallets(ch, "condition_id = {c:String}", {"c": s.corrected}) > 0
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert full_recompute(settings, ch) == incremental


def test_step_e_after_a_category_change_rebuilds_that_markets_positions(settings, ch) -> None:
    Setup(settings, ch, "lightweight")
    market = str(ch.scalar("SELECT market_id FROM $db.wallet_resolution_outcomes ORDER BY market_id LIMIT 1"))
    ch.command("INSERT INTO $db.markets_dim (market_id, condition_id, canonical_category, updated_at) "
               "SELECT market_id, condition_id, 'Renamed', updated_at + toIntervalSecond(1) FROM $db.markets_dim FINAL "
               "WHERE market_id = {m:String}", {"m": market})
    ch.command("ALTER TABLE $db.trades_raw UPDATE canonical_category = '' WHERE market_id = {m:String}", {"m": market},
               settings=SYNC)  # Step E then takes the market's category from markets_dim
    run_d_e(settings, ch)
    positions = int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes WHERE market_id = {m:String}", {"m": market}))
    assert LAST["E"]["mode"] == "incremental" and LAST["E"]["pairs_rebuilt"] >= positions > 0
    assert int(ch.scalar("SELECT countIf(canonical_category = 'Renamed') FROM $db.wallet_resolution_outcomes")) == positions
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert full_recompute(settings, ch) == incremental


def test_a_trade_in_a_new_unresolved_market_keeps_step_e_incremental(settings, ch) -> None:
    """Every day brings new markets: their trades (and their markets_dim rows) must not make the
    next Step E rebuild every position."""
    Setup(settings, ch, "lightweight")
    ch.command("INSERT INTO $db.markets_dim (market_id, condition_id, canonical_category, updated_at) "
               "VALUES ('m-new', '0xnewcondition', 'Weather', now64(3))")
    ch.command("INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, "
               "price, shares, usd_value, fee_usd, timestamp, tx_hash) SELECT 'new-1', wallet_address, 'm-new', "
               "'0xnewcondition', 0, 'BUY', 0.5, 10, 5, 0, now(), '0xt' FROM $db.trades_raw LIMIT 1")
    result, _ = run_d_e(settings, ch)
    assert result["mode"] == "incremental" and result["affected"]["new_trades"] == 1
    assert LAST["E"]["mode"] == "incremental" and LAST["E"]["pairs_rebuilt"] == 1
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert full_recompute(settings, ch) == incremental


def test_a_pair_whose_trades_vanished_loses_its_outcome_row_as_in_a_full_recompute(settings, ch) -> None:
    """Trades deleted (a bad load taken back): no pair to recompute, but Step E must rebuild the
    wallet so the pair's outcome row goes, exactly as a full recompute leaves it."""
    s = Setup(settings, ch, "lightweight")
    gone = a_pair(ch, "is_resolved = 1 AND condition_id NOT IN {h:Array(String)}", {"h": s.held}, skip=4)
    assert int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes WHERE " + PAIR, pair_params(gone))) == 1
    ch.command("ALTER TABLE $db.trades_raw DELETE WHERE " + PAIR, pair_params(gone), settings=SYNC)

    result, _ = run_d_e(settings, ch)
    assert result["mode"] == "incremental" and result["affected"] == NONE and result["pairs_total"] == 0
    assert LAST["E"]["mode"] == "incremental" and LAST["E"]["wallets_rebuilt"] >= 1
    assert int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes WHERE " + PAIR, pair_params(gone))) == 0
    incremental = pnl_checksum(ch), outcomes_checksum(ch)
    assert full_recompute(settings, ch) == incremental


def _stop_at(batch: int):
    from engine.events import CheckpointSaved

    def stop(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx >= batch:
            control.stop("test stop")

    return stop


def test_batches_write_no_bookkeeping_a_complete_run_writes_every_pair_once(settings, ch) -> None:
    """A batch is one statement (its P&L); the bookkeeping waits for the run to be complete."""
    generate_demo(ch, "small", seed=3)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=7, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=_stop_at(2))
    assert outcome.state is JobState.STOPPED
    assert int(ch.scalar(sql.PAIR_STATE_COUNT)) == 0
    job = EnrichmentJob(["D"], resume=True, batch_size=7, remote_checkpoints=False, run_gates=False)
    outcome, _ = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert int(ch.scalar("SELECT count() FROM $db.stepd_pair_state FINAL")) == pairs(ch)
    result, _ = run_d_e(settings, ch, steps=("D",))
    assert result["mode"] == "incremental" and result["affected"] == NONE


def test_pairs_before_a_hand_written_checkpoint_get_no_bookkeeping(settings, ch) -> None:
    """Nobody can vouch for what the pairs before a hand-written checkpoint were computed from: the
    resumed run records only its own pairs, and the next incremental run recomputes the others."""
    generate_demo(ch, "small", seed=3)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=7, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=_stop_at(2))
    assert outcome.state is JobState.STOPPED
    state_path(settings.runtime).write_text(json.dumps({"job": "enrichment", "step": "D", "batch_idx": 2, "pairs_done": 14}))
    job = EnrichmentJob(["D"], resume=True, batch_size=7, remote_checkpoints=False, run_gates=False)
    outcome, _ = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert int(ch.scalar("SELECT count() FROM $db.stepd_pair_state FINAL")) == pairs(ch) - 14
    result, _ = run_d_e(settings, ch, steps=("D",))
    assert result["mode"] == "incremental" and result["affected"] == {**NONE, "new_trades": 14}
