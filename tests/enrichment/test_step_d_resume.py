"""Step D stops at batch boundaries and resumes from its cursor to the identical table."""

from __future__ import annotations

import json

import pytest

from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.stepd import input_fingerprint, pnl_checksum
from engine.errors import ExitCode
from engine.events import CheckpointSaved, JobState, Progress
from tests.enrichment.conftest import run_enrichment


def _reset_pnl(ch) -> None:
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1", settings={"mutations_sync": 2})


def _stop_after(batches: int):
    def on_event(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx >= batches:
            control.stop("test stop")
    return on_event


def _uninterrupted(settings, ch) -> tuple[int, int]:
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=23, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    return pnl_checksum(ch)


@pytest.mark.parametrize("resume_batch_size", [23, 7, 500])
def test_stop_then_resume_gives_the_identical_table(settings, ch, resume_batch_size) -> None:
    generate_demo(ch, "small", seed=3)
    reference = _uninterrupted(settings, ch)
    _reset_pnl(ch)
    reset = pnl_checksum(ch)
    assert reset != reference

    first = EnrichmentJob(["D"], batch_size=23, remote_checkpoints=False, run_gates=False)
    outcome, rec = run_enrichment(first, settings, ch, on_event=_stop_after(3))
    assert outcome.state is JobState.STOPPED and outcome.exit_code == ExitCode.OK
    state = json.loads(state_path(settings.runtime).read_text())
    # The stop lands at the next boundary: after batch 3, or after batch 4 when its UPDATE had already
    # started while checkpoint 3 was being written. Whole batches either way.
    assert state["status"] == "stopped" and state["batch_idx"] in (3, 4)
    assert state["pairs_done"] == state["batch_idx"] * 23
    assert state["cursor"]["wallet_address"] and state["fingerprint"].startswith("fp2:sha256:")
    # a fresh run takes its fingerprint from the work-list build: it must equal the full-scan one
    assert state["fingerprint"] == input_fingerprint(ch)
    # what the checkpoint says is done, is done (the pairs' P&L); nothing after the cursor was
    # touched, and the trades wait for the last batch
    cursor = {"w": state["cursor"]["wallet_address"], "c": state["cursor"]["condition_id"]}
    done = ch.scalar("SELECT count() FROM $db.step_d_pair_pnl FINAL WHERE (wallet_address, condition_id) <= ({w:String}, {c:String})", cursor)
    after = ch.scalar("SELECT count() FROM $db.step_d_pair_pnl WHERE (wallet_address, condition_id) > ({w:String}, {c:String})", cursor)
    assert done == state["pairs_done"] and after == 0
    assert pnl_checksum(ch) == reset

    second = EnrichmentJob(["D"], resume=True, batch_size=resume_batch_size, remote_checkpoints=False, run_gates=False)
    outcome, rec = run_enrichment(second, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    first_progress = [e for e in rec.of(Progress) if e.step == "D" and e.total][0]
    assert first_progress.done == state["pairs_done"]  # continued after the cursor, not from zero
    assert second.results["D"]["pairs_done"] == second.results["D"]["pairs_total"]
    assert pnl_checksum(ch) == reference
    final = json.loads(state_path(settings.runtime).read_text())
    assert final["status"] == "done" and final["batch_size"] == resume_batch_size
    assert final["batch_idx"] > state["batch_idx"]  # batch_idx keeps counting across resumes


def test_resume_refuses_when_inputs_changed(settings, ch) -> None:
    generate_demo(ch, "small", seed=3)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=20, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=_stop_after(2))
    assert outcome.state is JobState.STOPPED
    before = state_path(settings.runtime).read_text()
    ch.command("ALTER TABLE $db.trades_raw UPDATE fee_usd = fee_usd + 1 WHERE trade_id = (SELECT min(trade_id) FROM $db.trades_raw)",
               settings={"mutations_sync": 2})
    outcome, _ = run_enrichment(EnrichmentJob(["D"], resume=True, batch_size=20, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.FAILED and outcome.exit_code == ExitCode.BAD_INPUT
    assert "inputs changed" in outcome.error and "without --resume" in outcome.error
    assert state_path(settings.runtime).read_text() == before  # nothing written


@pytest.mark.parametrize("inputs_changed", [False, True])
def test_checkpoint_from_an_older_build_keeps_its_fingerprint_version(settings, ch, inputs_changed) -> None:
    """Version-1 fingerprints (text-formatted decimals) are recomputed the old way on --resume:
    an upgrade in the middle of a Step D run neither refuses a good checkpoint nor accepts a stale one."""
    generate_demo(ch, "small", seed=3)
    reference = _uninterrupted(settings, ch)
    _reset_pnl(ch)
    # An older build's run is always a full one (incremental runs did not exist yet).
    outcome, _ = run_enrichment(EnrichmentJob(["D"], full=True, batch_size=20, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=_stop_after(2))
    assert outcome.state is JobState.STOPPED
    state = json.loads(state_path(settings.runtime).read_text())
    state["fingerprint"] = input_fingerprint(ch, like="sha256:")
    assert state["fingerprint"].startswith("sha256:") and state["fingerprint"] != input_fingerprint(ch)
    state_path(settings.runtime).write_text(json.dumps(state))
    if inputs_changed:
        ch.command("ALTER TABLE $db.trades_raw UPDATE shares = shares + 1 WHERE trade_id = (SELECT min(trade_id) FROM $db.trades_raw)",
                   settings={"mutations_sync": 2})
    outcome, rec = run_enrichment(EnrichmentJob(["D"], resume=True, batch_size=20, remote_checkpoints=False, run_gates=False), settings, ch)
    if inputs_changed:
        assert outcome.state is JobState.FAILED and "inputs changed" in outcome.error
        return
    assert outcome.state is JobState.DONE, outcome.error
    assert [e for e in rec.of(Progress) if e.step == "D" and e.total][0].done == state["pairs_done"]
    assert pnl_checksum(ch) == reference


def test_hand_written_runbook_checkpoint_loads(settings, ch) -> None:
    """The runbook's recovery file has only batch_idx/pairs_done: the stable order gives the cursor."""
    generate_demo(ch, "small", seed=3)
    reference = _uninterrupted(settings, ch)
    # pairs 0..59 really were done by an earlier job (the old system): only the later pairs lost their P&L
    sixtieth = ch.query("SELECT wallet_address, condition_id FROM $db.step_d_worklist ORDER BY wallet_address, condition_id "
                        "LIMIT 1 OFFSET 59").rows[0]
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 "
               "WHERE (wallet_address, condition_id) > ({w:String}, {c:String})", {"w": sixtieth[0], "c": sixtieth[1]},
               settings={"mutations_sync": 2})
    assert pnl_checksum(ch) != reference
    state_path(settings.runtime).write_text(json.dumps({
        "job": "enrichment", "step": "D", "batch_idx": 2, "pairs_done": 60, "last_mutations": 0,
        "updated_at": "2025-10-28T12:00:00.000Z",
    }))
    outcome, rec = run_enrichment(EnrichmentJob(["D"], resume=True, batch_size=30, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert any("no input fingerprint" in m for m in rec.messages("WARNING"))
    assert any("checkpoint has no cursor" in m for m in rec.messages())
    assert [e for e in rec.of(Progress) if e.step == "D" and e.total][0].done == 60
    assert pnl_checksum(ch) == reference


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": -5}', "pairs_done"),
    ('{"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": 999999}', "only"),
])
def test_bad_checkpoint_files_are_refused_clearly(settings, ch, content, message) -> None:
    generate_demo(ch, "small", seed=3)
    settings.runtime.mkdir(parents=True, exist_ok=True)
    state_path(settings.runtime).write_text(content)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], resume=True, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.FAILED and outcome.exit_code == ExitCode.BAD_INPUT
    assert message in outcome.error
    assert "Traceback" not in outcome.error


def test_live_batch_size_change_applies_at_the_next_batch(settings, ch) -> None:
    generate_demo(ch, "small", seed=3)
    reference = _uninterrupted(settings, ch)
    _reset_pnl(ch)

    def on_event(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx == 2:
            control.update_live({"batch_size": 50})

    job = EnrichmentJob(["D"], batch_size=10, remote_checkpoints=False, run_gates=False)
    outcome, rec = run_enrichment(job, settings, ch, on_event=on_event)
    assert outcome.state is JobState.DONE
    done = [e.pairs_done for e in rec.of(CheckpointSaved) if e.where == "local"]
    steps = [b - a for a, b in zip([0] + done, done, strict=False)]
    # batches of 10 until the change is seen (batch 3 may have started already), then 50
    assert steps[:2] == [10, 10] and 50 in steps[2:4]
    later = [x for x in steps[steps.index(50):] if x]  # the final "done" checkpoint repeats the count
    assert all(x == 50 for x in later[:-1]) and 0 < later[-1] <= 50
    assert pnl_checksum(ch) == reference


def test_read_ahead_batches_equal_the_per_batch_query(ch) -> None:
    """Chunked read-ahead gives exactly the batches a fresh query after each cursor would."""
    from engine.enrichment.stepd import WorklistReader, freeze_worklist, next_batch

    generate_demo(ch, "small", seed=3)
    freeze_worklist(ch, "test")
    reader = WorklistReader(ch, None, chunk=7)
    cursor = None
    sizes = [5, 23, 1, 7, 8, 50]
    seen = 0
    for i in range(1000):
        size = sizes[i % len(sizes)]
        got = reader.take(cursor, size)
        want = next_batch(ch, cursor, size)
        assert got == want
        if got is None:
            break
        seen += got.pairs
        cursor = got.range.last
    assert seen == ch.scalar("SELECT count() FROM $db.step_d_worklist")


def test_pause_holds_at_a_batch_boundary_with_the_checkpoint_saved(settings, ch) -> None:
    import asyncio

    from engine.events import StateChanged

    generate_demo(ch, "small", seed=3)
    reference = _uninterrupted(settings, ch)
    _reset_pnl(ch)
    seen: dict = {}

    def on_event(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx == 2 and "paused" not in seen:
            seen["paused"] = False
            control.pause()
        if isinstance(event, StateChanged) and event.state is JobState.PAUSED:
            # Paused: the file on disk already covers every pair written so far.
            state = json.loads(state_path(settings.runtime).read_text())
            done = ch.scalar("SELECT count() FROM $db.step_d_worklist WHERE (wallet_address, condition_id) <= "
                             "(SELECT wallet_address, condition_id FROM $db.step_d_pair_pnl "
                             "ORDER BY wallet_address DESC, condition_id DESC LIMIT 1)")
            seen["paused"] = True
            seen["state"] = state
            seen["done_pairs"] = done
            asyncio.get_running_loop().call_later(0.2, control.resume)  # listener runs on the job's loop

    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=20, remote_checkpoints=False, run_gates=False), settings, ch, on_event=on_event)
    assert outcome.state is JobState.DONE, outcome.error
    assert seen["paused"] is True
    assert seen["state"]["pairs_done"] >= seen["done_pairs"] > 0  # nothing written beyond the checkpoint
    assert pnl_checksum(ch) == reference


def test_invalid_live_settings_are_bad_input() -> None:
    from engine.errors import BadInput

    with pytest.raises(BadInput, match="batch_size"):
        EnrichmentJob(["D"], batch_size=0)
