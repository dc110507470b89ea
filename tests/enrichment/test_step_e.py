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
