"""Crash equivalence for Step D: a real `opsconsole` process SIGKILLs itself at each named crash point
(engine.crashpoints, OPSCONSOLE_CRASH_AT=name:N) or is SIGKILLed at random moments; `--resume` until
done must end with exactly the P&L and wallet_resolution_outcomes of an uninterrupted run.

Small demo scale (206 pairs, 3,000 trades) with small batches, so every run has many batches; the
remote checkpoint goes to a real Postgres database (pg_url) so the mirror is part of every crash.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.durability.stepd_procs import KILLED, Site, finish

BATCH = 10  # 206 pairs -> 21 batches
WAIT_EVERY = 3  # mutation waits after batches 3, 6, 9, ...


def _expected_on_disk(point: str, nth: int) -> tuple[set[int], int | None]:
    """Checkpoint(s) the local file may hold at the crash, and what the remote mirror must hold.

    Batch k's checkpoint is written in the background while batch k+1 is written, so right before
    or after batch k+1's write the file holds checkpoint k or still k-1; never anything past what is
    written."""
    if point == "before_batch_write":  # batch nth about to be written; nth-1 written
        return {(nth - 2) * BATCH, (nth - 1) * BATCH}, None
    if point == "after_write_before_local_checkpoint":  # batch nth written, its checkpoint not started
        return {(nth - 2) * BATCH, (nth - 1) * BATCH}, None
    if point == "between_local_and_remote_checkpoint":
        # The mirror task is about to write checkpoint nth: Postgres holds nth-1; the local file nth,
        # or a later one when the batch loop ran ahead of the mirror.
        return set(range(nth * BATCH, 206, BATCH)), (nth - 1) * BATCH
    if point == "during_mutation_wait":  # after batch nth*WAIT_EVERY is written
        k = nth * WAIT_EVERY
        return {(k - 2) * BATCH, (k - 1) * BATCH}, None
    if point == "before_trades_write":  # every batch and checkpoint landed, both places; no trade written
        return {206}, 206
    raise AssertionError(point)


def _resume_to_the_end(site: Site) -> list[str]:
    outputs = []
    for _ in range(3):
        out = site.run("enrich", "--step", "D,E", "--resume", "--batch-size", str(BATCH), "--no-ui", "--log-format", "plain")
        outputs.append(out.stdout)
        if out.returncode == 0:
            return outputs
        assert out.returncode != KILLED, "a run without OPSCONSOLE_CRASH_AT was killed"
    raise AssertionError("resume did not complete: " + outputs[-1][-3000:])


@pytest.mark.parametrize("point, nth", [
    ("before_batch_write", 6),
    ("after_write_before_local_checkpoint", 6),
    ("between_local_and_remote_checkpoint", 6),
    ("during_mutation_wait", 2),
    ("before_trades_write", 1),
])
def test_sigkill_at_a_crash_point_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any], point: str, nth: int
) -> None:
    site = Site(tmp_path, pg_url, {"MUTATION_WAIT_EVERY": str(WAIT_EVERY)})
    out = site.run("demo", "--scale", "small", "--batch-size", str(BATCH), "--no-ui", "--log-format", "plain",
                   OPSCONSOLE_CRASH_AT=f"{point}:{nth}")
    assert out.returncode == KILLED, f"expected SIGKILL at {point}:{nth}, got {out.returncode}\n{out.stdout[-2000:]}"
    state = site.state()
    assert state is not None and state["status"] == "running"
    local, remote = _expected_on_disk(point, nth)
    assert state["pairs_done"] in local, (point, state["pairs_done"], local)
    if remote is not None:  # the crash fell between the two writes: the mirror is one checkpoint behind
        assert site.remote_checkpoint()["pairs_done"] == remote
    crashed = site.checksums()
    assert crashed["missing"] > 0  # the crash really left Step D unfinished

    outputs = _resume_to_the_end(site)
    assert f"resuming after pair {state['pairs_done']:,}" in outputs[0]
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_small["pnl"], reference_small["outcomes"], 0)
    assert site.state()["status"] == "done"
    assert site.remote_checkpoint() == site.state()  # the mirror caught up with the final checkpoint


def test_sigkill_during_stop_handling_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any]
) -> None:
    site = Site(tmp_path, pg_url)
    proc = site.spawn("demo", "--scale", "small", "--batch-size", "2", "--no-ui", "--log-format", "plain",
                      OPSCONSOLE_CRASH_AT="during_stop_handling")
    assert site.wait_for_checkpoint(proc, 0), "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGTERM)  # stop requested: the crash point fires while it is handled
    stdout, _ = finish(proc)
    assert proc.returncode == KILLED, stdout[-2000:]
    assert "SIGTERM received" in stdout and "stopped at a batch boundary" not in stdout
    state = site.state()
    assert state["status"] == "running" and 0 < state["pairs_done"] < state["pairs_total"]
    assert state["pairs_done"] % 2 == 0  # whole batches only

    outputs = _resume_to_the_end(site)
    assert f"resuming after pair {state['pairs_done']:,}" in outputs[0]
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_small["pnl"], reference_small["outcomes"], 0)


def test_many_sigkills_at_random_moments_in_one_step_d(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any]
) -> None:
    """12 SIGKILLs at random moments (0–0.2 s after a run's first checkpoint), resuming each time;
    then one run to the end."""
    rng = random.Random(20261122)
    site = Site(tmp_path, pg_url)
    batch = "1"  # 206 batches: every run advances a few before it is killed, with room for 12 kills
    args = ["demo", "--scale", "small"]
    kills, runs, history = 0, 0, []
    while True:
        runs += 1
        assert runs <= 40, f"Step D did not finish after {runs} runs ({kills} kills)"
        before = site.pairs_done()
        proc = site.spawn(*args, "--batch-size", batch, "--no-ui", "--log-format", "plain")
        if kills < 12 and site.wait_for_checkpoint(proc, before):
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
        stdout, stderr = finish(proc)
        if proc.returncode == KILLED:
            kills += 1
            state = site.state()
            assert state["pairs_done"] >= max(before, 0)  # a checkpoint never goes backwards
            history.append(state["pairs_done"])
            if state["status"] == "done":  # the kill came after Step D's last checkpoint
                break
        else:
            # 3 after `enrich --step D` alone: its closing gates FAIL until Step E has run.
            assert proc.returncode == (0 if args[0] == "demo" else 3), stdout[-2000:] + stderr[-2000:]
            assert site.state()["status"] == "done"
            break
        args = ["enrich", "--step", "D", "--resume"]
    print(f"{kills} SIGKILLs in {runs} runs; checkpoints after each kill: {history}")
    assert kills >= 10
    # What an operator does after a crash: run it again. Complete, it says so (and brings the mirror
    # up to date if the last kill fell between the final local checkpoint and Postgres).
    e_ran = args[0] == "demo" and proc.returncode == 0  # the demo's own Step E ran
    out = site.run("enrich", "--step", "D", "--resume", "--no-ui", "--log-format", "plain")
    assert out.returncode == (0 if e_ran else 3) and "Step D already complete" in out.stdout, out.stdout[-2000:]
    out = site.run("enrich", "--step", "E", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-2000:]
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_small["pnl"], reference_small["outcomes"], 0)
    assert site.remote_checkpoint() == site.state()


def test_sigkill_between_the_final_local_and_remote_checkpoint_then_a_rerun_catches_the_mirror_up(
    tmp_path: Path, pg_url: str
) -> None:
    site = Site(tmp_path, pg_url)
    # 21 batches are mirrored one by one; the 22nd time the point is reached is the final checkpoint.
    out = site.run("demo", "--scale", "small", "--batch-size", str(BATCH), "--no-ui", "--log-format", "plain",
                   OPSCONSOLE_CRASH_AT="between_local_and_remote_checkpoint:22")
    assert out.returncode == KILLED, out.stdout[-2000:]
    assert site.state()["status"] == "done"
    behind = site.remote_checkpoint()
    assert behind["status"] == "running" and behind["pairs_done"] == 206

    out = site.run("enrich", "--step", "D", "--resume", "--no-ui", "--log-format", "plain")
    assert out.returncode == 3, out.stdout[-2000:]  # Step E never ran: the closing gates FAIL
    assert "Step D already complete" in out.stdout
    assert "the Postgres mirror was behind the local checkpoint (status running, pairs_done=206); brought up to date" in out.stdout
    assert site.remote_checkpoint() == site.state()
