"""Step D failures stop the run with the checkpoint where the work really is."""

from __future__ import annotations

import json

from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.mutations import pending_mutations
from engine.enrichment.schema import MUTATED_TABLES
from engine.enrichment.stepd import pnl_checksum
from engine.errors import ExitCode
from engine.events import CheckpointSaved, Failure, JobState, MutationStatus
from tests.enrichment.conftest import run_enrichment


def test_a_failing_batch_fails_the_run_without_advancing_the_checkpoint(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=25, remote_checkpoints=False, run_gates=False), settings, ch)
    reference = pnl_checksum(ch)
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1", settings={"mutations_sync": 2})

    def break_after_two(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.batch_idx == 2:
            ch.command("DROP TABLE $db.step_d_payouts")  # the next batch's UPDATE cannot run

    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=25, remote_checkpoints=False, run_gates=False),
                                  settings, ch, on_event=break_after_two)
    assert outcome.state is JobState.FAILED and outcome.exit_code == ExitCode.FAILED
    state = json.loads(state_path(settings.runtime).read_text())
    # batch 3 may have been written already when the table went away; the first failing batch is next
    n = state["batch_idx"]
    assert n in (2, 3) and state["pairs_done"] == 25 * n and state["status"] == "running"
    assert f"batch {n + 1} failed; the checkpoint still points after pair {25 * n}" in outcome.error
    failures = [f for f in rec.of(Failure) if f.step == "D"]
    assert failures and failures[0].where.startswith(f"batch {n + 1}")

    outcome, _ = run_enrichment(EnrichmentJob(["D"], resume=True, batch_size=25, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert pnl_checksum(ch) == reference


def test_mutation_wait_stops_on_a_failing_mutation_with_its_reason(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    ch.command("ALTER TABLE $db.trades_raw UPDATE shares = shares * throwIf(1, 'disk quota exceeded') WHERE 1",
               settings={"mutations_sync": 0})
    try:
        job = EnrichmentJob(["D"], batch_size=30, mutation_wait_every=2, mutation_timeout_s=120,
                            remote_checkpoints=False, run_gates=False)
        outcome, rec = run_enrichment(job, settings, ch)
    finally:
        ch.command("KILL MUTATION WHERE database = {db:String} SYNC", {"db": ch.database})
    assert outcome.state is JobState.FAILED
    assert "disk quota exceeded" in outcome.error and "failed" in outcome.error
    statuses = rec.of(MutationStatus)
    assert statuses and statuses[-1].pending == 1 and statuses[-1].details[0].latest_fail_reason
    # it stopped at the first wait (after batch 2), with batches 1–2 checkpointed
    assert json.loads(state_path(settings.runtime).read_text())["batch_idx"] <= 2


def test_mutation_wait_times_out_with_a_clear_message(settings, ch) -> None:
    """Pending but not (yet) failing: the wait is bounded."""
    generate_demo(ch, "small", seed=8)
    ch.command("SYSTEM STOP MERGES $db.trades_raw")
    ch.command("ALTER TABLE $db.trades_raw UPDATE fee_usd = fee_usd WHERE 1", settings={"mutations_sync": 0})
    try:
        assert len(pending_mutations(ch, MUTATED_TABLES)) == 1
        job = EnrichmentJob(["D"], batch_size=500, mutation_wait_every=1, mutation_timeout_s=1.5,
                            remote_checkpoints=False, run_gates=False)
        outcome, _ = run_enrichment(job, settings, ch)
    finally:
        ch.command("SYSTEM START MERGES $db.trades_raw")
        ch.command("KILL MUTATION WHERE database = {db:String} SYNC", {"db": ch.database})
    assert outcome.state is JobState.FAILED
    assert "still pending after 1.5s" in outcome.error


def test_patch_parts_are_applied_after_the_last_batch(settings, ch) -> None:
    generate_demo(ch, "small", seed=8)
    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=40, write_strategy="lightweight",
                                                remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert rec.messages()[-1].startswith("patch parts applied in ")
    applied = ch.query("SELECT command, is_done FROM system.mutations WHERE database = {d:String} AND table = 'trades_raw'",
                       {"d": ch.database}).rows
    assert [(c.strip().strip("()"), d) for c, d in applied] == [("APPLY PATCHES", 1)]


def test_a_failed_patch_apply_warns_and_leaves_step_d_done(settings, ch, monkeypatch) -> None:
    from engine.enrichment import sql

    generate_demo(ch, "small", seed=8)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=40, remote_checkpoints=False, run_gates=False), settings, ch)
    reference = pnl_checksum(ch)
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1", settings={"mutations_sync": 2})
    monkeypatch.setattr(sql, "APPLY_PATCHES", "ALTER TABLE $db.no_such_table APPLY PATCHES")
    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=40, write_strategy="lightweight",
                                                remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    warning = rec.messages("WARNING")[-1]
    assert warning.startswith("could not apply patch parts") and "no_such_table" in warning
    assert json.loads(state_path(settings.runtime).read_text())["status"] == "done"
    assert pnl_checksum(ch) == reference
