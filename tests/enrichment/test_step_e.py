"""Step E: refuses on incomplete inputs, builds aside and swaps, never leaves the table empty."""

from __future__ import annotations

import threading

from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.stepe import build_and_swap
from engine.events import JobState, Progress
from tests.enrichment.conftest import run_enrichment


def test_step_e_refuses_while_step_d_is_incomplete_unless_forced(settings, ch) -> None:
    generate_demo(ch, "small", seed=2)
    outcome, _ = run_enrichment(EnrichmentJob(["E"], remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.FAILED
    assert "Step E refused: Step D is incomplete" in outcome.error and "--force" in outcome.error
    assert ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes") == 0

    outcome, rec = run_enrichment(EnrichmentJob(["E"], force=True, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE
    assert any("--force" in m for m in rec.messages("WARNING"))


def test_step_e_refuses_while_mutations_are_pending(settings, ch) -> None:
    generate_demo(ch, "small", seed=2)
    run_enrichment(EnrichmentJob(["D"], remote_checkpoints=False, run_gates=False), settings, ch)
    ch.command("ALTER TABLE $db.trades_raw UPDATE shares = shares * throwIf(1, 'stuck') WHERE 1", settings={"mutations_sync": 0})
    try:
        outcome, _ = run_enrichment(EnrichmentJob(["E"], remote_checkpoints=False, run_gates=False), settings, ch)
        assert outcome.state is JobState.FAILED and "mutation(s) are pending" in outcome.error
    finally:
        ch.command("KILL MUTATION WHERE database = {db:String} SYNC", {"db": ch.database})


def test_step_e_alone_does_not_rerun_other_steps(settings, ch) -> None:
    generate_demo(ch, "small", seed=2)
    run_enrichment(EnrichmentJob(["D"], remote_checkpoints=False, run_gates=False), settings, ch)
    outcome, rec = run_enrichment(EnrichmentJob("E", remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE
    assert {e.step for e in rec.of(Progress)} == {"E"}


def test_readers_never_see_an_empty_table_while_step_e_rebuilds(settings, ch) -> None:
    generate_demo(ch, "small", seed=2)
    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE
    full = ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes")
    assert full > 0
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes")))
            seen.append(int(ch.scalar("SELECT count() FROM $db.wallet_accuracy")))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(15):
            build_and_swap(ch)
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 10
    assert min(seen) > 0
    assert ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes") == full
    assert ch.scalar("EXISTS TABLE $db.wallet_resolution_outcomes_build") == 0


def test_incremental_step_e_rebuilds_the_marked_positions_only(settings, ch) -> None:
    """Marks are positions: a marked (wallet, condition) is recomputed, its wallet's other positions
    are copied as they were. A mark without a condition (how an older build marked) rebuilds the
    whole wallet. Shown by damaging outcome rows and seeing which ones Step E puts right."""
    generate_demo(ch, "small", seed=2)
    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    rows = ch.query("SELECT wallet_address, groupArray(3)(condition_id) AS cs FROM $db.wallet_resolution_outcomes "
                    "GROUP BY wallet_address HAVING length(cs) = 3 ORDER BY wallet_address LIMIT 2").rows
    (w, (c1, c2, _)), (w3, (c3, c4, _)) = rows
    damaged = [(w, c1), (w, c2), (w3, c3), (w3, c4)]
    keys = {"p": [f"{a}:{b}" for a, b in damaged]}
    where = "concat(wallet_address, ':', condition_id) IN {p:Array(String)}"

    def pnl() -> dict[tuple[str, str], object]:
        return {(str(a), str(b)): v for a, b, v in ch.query(
            f"SELECT wallet_address, condition_id, realized_pnl_usd FROM $db.wallet_resolution_outcomes WHERE {where}",
            keys).rows}

    good = pnl()
    ch.command(f"ALTER TABLE $db.wallet_resolution_outcomes UPDATE realized_pnl_usd = 12345 WHERE {where}", keys,
               settings={"mutations_sync": 2})
    ch.command("INSERT INTO $db.step_e_dirty_wallets (wallet_address, condition_id) VALUES ({w:String}, {c:String})",
               {"w": w, "c": c1})
    ch.command("INSERT INTO $db.step_e_dirty_wallets (wallet_address) VALUES ({w:String})", {"w": w3})

    outcome, rec = run_enrichment(EnrichmentJob(["E"], remote_checkpoints=False, run_gates=False), settings, ch)

    assert outcome.state is JobState.DONE, outcome.error
    assert any("rebuilding 1 position(s) of 2 wallet(s)" in m for m in rec.messages())
    after = pnl()
    assert after[(w, c1)] == good[(w, c1)]  # marked: recomputed
    assert str(after[(w, c2)]) == "12345"  # same wallet, not marked: copied as it was
    assert (after[(w3, c3)], after[(w3, c4)]) == (good[(w3, c3)], good[(w3, c4)])  # the whole wallet
