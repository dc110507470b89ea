"""Step D's batches compute each pair's P&L from the work list's sums; the trades' P&L is written in
one statement once every batch is done, and checked against those sums."""

from __future__ import annotations

import json

from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.stepd import freeze_payouts, freeze_worklist, pnl_agreement, pnl_checksum, write_pair_pnl
from engine.enrichment.writes import KeyRange, write_trades
from engine.events import CheckpointSaved, Failure, JobState, LogLine, Progress
from tests.enrichment.conftest import run_enrichment

RESET = "ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1"
PAIR_SUMS_EQUAL_TRADE_SUMS = """
SELECT countIf(p.realized_pnl_usd != t.pnl OR p.is_resolved != t.resolved), count()
FROM $db.step_d_pair_pnl AS p FINAL
INNER JOIN (SELECT wallet_address, condition_id, sum(realized_pnl_usd) AS pnl, max(is_resolved) AS resolved
            FROM $db.trades_raw GROUP BY wallet_address, condition_id) AS t
    ON t.wallet_address = p.wallet_address AND t.condition_id = p.condition_id
WHERE p.is_resolved = 1
"""


def _job(**kw) -> EnrichmentJob:
    return EnrichmentJob(["D"], batch_size=25, remote_checkpoints=False, run_gates=False, **kw)


def test_each_pairs_pnl_equals_the_sum_of_its_trades_pnl(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    outcome, _ = run_enrichment(_job(), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    differing, resolved_pairs = ch.query(PAIR_SUMS_EQUAL_TRADE_SUMS).rows[0]
    assert resolved_pairs > 20 and differing == 0


def test_a_stopped_run_leaves_trades_as_they_were_and_its_resume_writes_them(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    run_enrichment(_job(), settings, ch)
    reference = pnl_checksum(ch)
    ch.command(RESET, settings={"mutations_sync": 2})
    reset = pnl_checksum(ch)

    def stop_after_two(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.batch_idx == 2:
            control.stop("test stop")

    outcome, _ = run_enrichment(_job(full=True), settings, ch, on_event=stop_after_two)
    assert outcome.state is JobState.STOPPED, outcome.error
    state = json.loads(state_path(settings.runtime).read_text())
    done = state["pairs_done"]
    assert state["status"] == "stopped" and 0 < done < state["pairs_total"]  # stopped, not killed
    assert pnl_checksum(ch) == reset  # nothing of trades_raw is written before every batch is done
    assert ch.scalar("SELECT count() FROM $db.step_d_pair_pnl FINAL") == done

    outcome, rec = run_enrichment(_job(resume=True), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert pnl_checksum(ch) == reference
    assert any(m.startswith("trades' P&L written in ") and m.endswith("matches the pairs' P&L") for m in rec.messages())


def test_the_check_names_what_differs_between_trades_and_pairs(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    freeze_payouts(ch)
    freeze_worklist(ch)
    last = tuple(ch.query("SELECT wallet_address, condition_id FROM $db.step_d_worklist "
                          "ORDER BY wallet_address DESC, condition_id DESC LIMIT 1").rows[0])
    everything = KeyRange(None, (str(last[0]), str(last[1])))
    write_pair_pnl(ch, everything)
    write_trades(ch, "classic", everything)
    assert pnl_agreement(ch, everything, incremental=False) == ""

    # One resolved trade's price edited after the freeze: its P&L no longer adds up to the pair's.
    trade = ch.query("SELECT trade_id FROM $db.trades_raw WHERE is_resolved = 1 ORDER BY trade_id LIMIT 1").rows[0][0]
    ch.command("ALTER TABLE $db.trades_raw UPDATE price = price / 2 WHERE trade_id = {t:String}", {"t": trade},
               settings={"mutations_sync": 2})
    write_trades(ch, "classic", everything)
    problem = pnl_agreement(ch, everything, incremental=False)
    assert problem.startswith("the trades' P&L sums to ") and "the pairs' to " in problem

    # A resolved trade left unmarked: counted, by name.
    write_trades(ch, "classic", everything)
    ch.command("ALTER TABLE $db.trades_raw UPDATE is_resolved = 0 WHERE trade_id = {t:String}", {"t": trade},
               settings={"mutations_sync": 2})
    assert "trades are marked resolved" in pnl_agreement(ch, everything, incremental=False)


def test_trades_added_while_the_batches_ran_fail_the_run_and_a_fresh_run_completes(settings, ch) -> None:
    """An ingester adds a fill to a resolved pair after the work list was frozen: the trades' write
    prices it, the pairs' sums do not know it, and the run must say so instead of finishing."""
    generate_demo(ch, "small", seed=8)
    pair = ch.query("SELECT wallet_address, condition_id, market_id FROM $db.trades_raw WHERE condition_id IN "
                    "(SELECT condition_id FROM $db.market_resolutions) ORDER BY wallet_address LIMIT 1").rows[0]

    def add_a_trade(event, control) -> None:
        if isinstance(event, LogLine) and event.message.startswith("every batch done"):
            ch.command("INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, "
                       "price, shares, usd_value, timestamp, tx_hash) VALUES ('late-fill', {w:String}, {m:String}, "
                       "{c:String}, 0, 'BUY', 0.5, 10, 5, now(), '0xlate')", {"w": pair[0], "c": pair[1], "m": pair[2]})

    outcome, rec = run_enrichment(_job(), settings, ch, on_event=add_a_trade)
    assert outcome.state is JobState.FAILED
    assert "trades' P&L does not match the pairs' P&L" in outcome.error and "marked resolved" in outcome.error
    assert any(f.where == "trades' P&L check" for f in rec.of(Failure))
    assert json.loads(state_path(settings.runtime).read_text())["status"] == "running"

    outcome, _ = run_enrichment(_job(), settings, ch)  # a fresh run freezes the new trade with the rest
    assert outcome.state is JobState.DONE, outcome.error
    assert ch.scalar("SELECT count() FROM $db.trades_raw WHERE trade_id = 'late-fill' AND is_resolved = 1") == 1


def test_a_work_list_frozen_by_an_older_build_is_frozen_again_on_resume(settings, ch) -> None:
    """An older build's work list has no P&L sums (its columns were added as zeros): a resume freezes
    it again and recomputes the pairs before the cursor too, so the check still covers them."""
    generate_demo(ch, "small", seed=8)
    run_enrichment(_job(), settings, ch)
    reference = pnl_checksum(ch)
    ch.command(RESET, settings={"mutations_sync": 2})

    def stop_after_two(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.batch_idx == 2:
            control.stop("test stop")

    run_enrichment(_job(full=True), settings, ch, on_event=stop_after_two)
    ch.command("ALTER TABLE $db.step_d_worklist UPDATE a_yes = 0, a_no = 0, cost = 0 WHERE 1", settings={"mutations_sync": 2})
    ch.command("ALTER TABLE $db.step_d_meta UPDATE layout = 1 WHERE 1", settings={"mutations_sync": 2})
    ch.command("TRUNCATE TABLE $db.step_d_pair_pnl")

    outcome, rec = run_enrichment(_job(resume=True), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert any(m.startswith("freezing the work list") for m in rec.messages())
    assert pnl_checksum(ch) == reference
    differing, _ = ch.query(PAIR_SUMS_EQUAL_TRADE_SUMS).rows[0]
    assert differing == 0


def test_auto_writes_a_full_run_classically_and_an_incremental_one_with_patch_parts(settings, ch) -> None:
    from engine.enrichment.writes import resolve_strategy

    assert resolve_strategy(ch, "auto") == "classic"
    assert resolve_strategy(ch, "auto", incremental=True) == "lightweight"  # chDB 26.9 has lightweight UPDATE
    assert resolve_strategy(ch, "classic", incremental=True) == "classic"  # what the operator set wins
    generate_demo(ch, "small", seed=8)
    first, _ = run_enrichment(_job(), settings, ch)
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE condition_id = "
               "(SELECT min(condition_id) FROM $db.market_resolutions)", settings={"mutations_sync": 2})
    job = _job()
    second, _ = run_enrichment(job, settings, ch)
    assert first.state is second.state is JobState.DONE
    assert job.results["D"]["mode"] == "incremental" and job.results["D"]["write_strategy"] == "lightweight"


def test_a_write_still_pending_from_an_earlier_attempt_is_waited_for_before_writing_again(settings, ch) -> None:
    """On a server a timed-out trades' write keeps running: a resume must not send a second one
    beside it. Here a pending mutation stands in for it (merges stopped); the resume waits for it
    and sends nothing."""
    from engine.enrichment.mutations import pending_mutations
    from engine.enrichment.schema import MUTATED_TABLES

    generate_demo(ch, "small", seed=8)

    def stop_after_two(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.batch_idx == 2:
            control.stop("test stop")

    outcome, _ = run_enrichment(_job(), settings, ch, on_event=stop_after_two)
    assert outcome.state is JobState.STOPPED, outcome.error
    ch.command("SYSTEM STOP MERGES $db.trades_raw")
    try:
        ch.command("ALTER TABLE $db.trades_raw UPDATE fee_usd = fee_usd WHERE 1", settings={"mutations_sync": 0})
        assert len(pending_mutations(ch, MUTATED_TABLES)) == 1
        before = pnl_checksum(ch)
        # No wait between batches here: the one before the trades' write is the one that must hold.
        # (Lightweight: a classic write sent beside a stuck mutation would queue behind it for ever.)
        job = _job(resume=True, mutation_wait_every=1000, mutation_timeout_s=1.5, write_strategy="lightweight")
        outcome, rec = run_enrichment(job, settings, ch)
        pending = pending_mutations(ch, MUTATED_TABLES)
        after = pnl_checksum(ch)
    finally:
        ch.command("SYSTEM START MERGES $db.trades_raw")
        ch.command("KILL MUTATION WHERE database = {db:String} SYNC", {"db": ch.database})
    assert outcome.state is JobState.FAILED and "still pending after 1.5s" in outcome.error
    assert any(m.startswith("every batch done") for m in rec.messages())
    assert len(pending) == 1 and after == before  # nothing was written beside the pending mutation


def test_a_run_stopped_before_its_first_batch_leaves_the_complete_runs_checkpoint(settings, ch) -> None:
    """Only a run that saved a checkpoint marks it stopped: one stopped before its first batch
    leaves the previous complete run's checkpoint as it was, so the next run is still incremental."""
    generate_demo(ch, "small", seed=8)
    run_enrichment(_job(), settings, ch)
    complete = state_path(settings.runtime).read_text()
    assert json.loads(complete)["status"] == "done"
    ch.command("INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, "
               "price, shares, usd_value, timestamp, tx_hash) SELECT concat(trade_id, '-late'), wallet_address, "
               "market_id, condition_id, outcome_index, side, price, shares, usd_value, timestamp, tx_hash "
               "FROM $db.trades_raw ORDER BY trade_id LIMIT 1")

    def stop_at_once(event, control) -> None:
        if isinstance(event, Progress) and event.step == "D":
            control.stop("test stop")

    outcome, _ = run_enrichment(_job(), settings, ch, on_event=stop_at_once)
    assert outcome.state is JobState.STOPPED, outcome.error
    assert state_path(settings.runtime).read_text() == complete

    outcome, _ = run_enrichment(_job(), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    after = json.loads(state_path(settings.runtime).read_text())
    assert (after["status"], after["mode"], after["pairs_total"]) == ("done", "incremental", 1)
