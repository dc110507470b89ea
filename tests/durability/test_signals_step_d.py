"""Signals, locks and restarts around Step D, with real processes on real stores.

* SIGTERM at the default batch size (300, medium demo): exit 0 soon after the signal, a durable
  checkpoint whose cursor is the last pair of the last written batch, and a `--resume` whose first
  batch starts right after it. A second signal aborts at once; the last checkpoint still loads.
* Two runners: the second is refused with exit 75 naming the holder; after the holder is SIGKILLed
  a new runner gets the lock and finishes.
* The Postgres mirror's server restarted during Step D: the job keeps going on local checkpoints,
  reports the failures, and the mirror catches up once the server is back.

Durations are measured and printed (the issue asks for "within 2 s" and "within 1 s"); the asserts
on them are generous because timed assertions do not belong in tests.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from engine.enrichment.checkpoint import parse_checkpoint
from tests.durability.stepd_procs import KILLED, Site, finish, json_events, local_checkpoints


def _logs(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "LogLine"]


def test_sigterm_at_default_batch_size_then_resume_continues_right_after_the_last_batch(
    tmp_path: Path, pg_url: str, reference_medium: dict[str, Any]
) -> None:
    site = Site(tmp_path, pg_url)
    proc = site.spawn("demo", "--scale", "medium", "--no-ui", "--log-format", "json")  # batch size 300
    assert site.wait_for_checkpoint(proc, 0), "the run ended before its first checkpoint"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    seconds = time.monotonic() - sent
    stdout, stderr = finish(proc)
    print(f"\nSIGTERM during Step D (batch size 300, medium): exit {proc.returncode} after {seconds:.2f}s")
    assert proc.returncode == 0, stderr[-3000:]
    assert seconds < 10

    # The checkpoint on disk is complete, loads, and covers whole batches only.
    text = site.state_file.read_text()
    stopped = parse_checkpoint(text, "after SIGTERM")
    assert stopped.status == "stopped" and stopped.batch_size == 300  # not "running": not a killed run
    assert 0 < stopped.pairs_done < stopped.pairs_total and stopped.pairs_done == 300 * stopped.batch_idx
    events = json_events(stdout)
    last = local_checkpoints(events)[-1]
    assert (last["pairs_done"], last["batch_idx"]) == (stopped.pairs_done, stopped.batch_idx)
    assert last["cursor"] == stopped.cursor.model_dump()
    assert site.remote_checkpoint()["pairs_done"] == stopped.pairs_done  # the mirror is current too
    # ... and its cursor is the last pair of the last written batch in the stable order.
    first_next, last_next = stopped.pairs_done, stopped.pairs_done + 299
    pairs = site.checksums([stopped.pairs_done - 1, first_next, last_next])["pairs_at"]
    assert pairs[str(stopped.pairs_done - 1)] == [stopped.cursor.wallet_address, stopped.cursor.condition_id]

    # Resume; once its first batch is checkpointed, two signals: the second aborts at once.
    proc = site.spawn("enrich", "--step", "D,E", "--resume", "--no-ui", "--log-format", "json")
    site.wait_for_checkpoint(proc, stopped.pairs_done)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    second = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    abort_seconds = time.monotonic() - second
    stdout, stderr = finish(proc)
    print(f"second SIGTERM: exit {proc.returncode} after {abort_seconds:.2f}s")
    # 130 = aborted; 0 or -15 when the first signal's batch had already ended and the process was exiting.
    assert proc.returncode in (0, 130, -signal.SIGTERM), stderr[-3000:]
    events = json_events(stdout)
    assert f"resuming after pair {stopped.pairs_done:,} of {stopped.pairs_total:,} (batch_idx {stopped.batch_idx})" in _logs(events)
    first = local_checkpoints(events)[0]
    # The first resumed batch is exactly the 300 pairs after the cursor: nothing repeated, nothing skipped.
    assert (first["pairs_done"], first["batch_idx"]) == (stopped.pairs_done + 300, stopped.batch_idx + 1)
    assert [first["cursor"]["wallet_address"], first["cursor"]["condition_id"]] == pairs[str(last_next)]
    aborted = parse_checkpoint(site.state_file.read_text(), "after the second signal")  # still loads
    assert aborted.pairs_done >= first["pairs_done"]

    out = site.run("enrich", "--step", "D,E", "--resume", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-3000:]
    if aborted.status != "done":
        assert f"resuming after pair {aborted.pairs_done:,}" in out.stdout
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_medium["pnl"], reference_medium["outcomes"], 0)


def test_second_runner_is_refused_and_a_killed_holder_frees_the_lock(
    tmp_path: Path, pg_url: str, reference_small: dict[str, Any]
) -> None:
    site = Site(tmp_path, pg_url)
    holder = site.spawn("demo", "--scale", "small", "--batch-size", "1", "--no-ui", "--log-format", "plain")
    try:
        assert site.wait_for_checkpoint(holder, 0), "the holder ended before its first checkpoint"
        started = time.monotonic()
        second = site.run("enrich", "--step", "D", "--resume", "--no-ui")
        seconds = time.monotonic() - started
        print(f"\nsecond runner refused: exit {second.returncode} after {seconds:.2f}s (process start included)")
        assert second.returncode == 75, second.stderr
        assert "full-enrichment" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert seconds < 10
        assert holder.poll() is None  # the refusal did not disturb the holder
    finally:
        holder.send_signal(signal.SIGKILL)
        finish(holder)
    assert holder.returncode == KILLED
    killed_at = site.pairs_done()
    assert 0 < killed_at < 206

    out = site.run("enrich", "--step", "D,E", "--resume", "--batch-size", "50", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"resuming after pair {killed_at:,}" in out.stdout
    final = site.checksums()
    assert (final["pnl"], final["outcomes"], final["missing"]) == (
        reference_small["pnl"], reference_small["outcomes"], 0)


def test_postgres_restarted_during_step_d_the_mirror_catches_up(tmp_path: Path) -> None:
    from tests.support.pg_tcp import remove, start_tcp_postgres

    server = start_tcp_postgres("Restart-PG-Secret-3")
    try:
        site = Site(tmp_path, server.url())
        # Batches of 15 (~1,400): Step D outlasts the mirror's stuck attempt (up to 10 s) with room
        # to show the mirror catching up while Step D still runs.
        proc = site.spawn("demo", "--scale", "medium", "--batch-size", "15", "--no-ui", "--log-format", "json")
        try:
            assert site.wait_for_checkpoint(proc, 0)
            deadline = time.monotonic() + 60
            while _remote_pairs(server.url()) is None:  # the mirror works before the restart
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            server.stop()
            down_at = site.pairs_done()
            # The server stays down until the mirror has reported a failed attempt (a fixed sleep
            # raced with slow connection attempts under load: the retry could land after the restart).
            log = site.runtime / "full-enrichment.console.log"
            deadline = time.monotonic() + 60
            while "remote checkpoint (Postgres) not saved" not in log.read_text():
                assert time.monotonic() < deadline, "no mirror failure while Postgres was down:\n" + log.read_text()[-3000:]
                assert proc.poll() is None, "Step D died (or ended) while Postgres was down"
                time.sleep(0.05)
            server.start()
            up_at = site.pairs_done()
            stdout, stderr = finish(proc, timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert up_at > down_at  # local checkpoints kept coming while the server was down
        events = json_events(stdout)
        failures = [e for e in events if e["type"] == "Failure"]
        assert any(f["where"] == "remote checkpoint" for f in failures), failures
        logs = _logs(events)
        assert any("remote checkpoint (Postgres) not saved" in m for m in logs)
        caught_up = [i for i, m in enumerate(logs) if m.startswith("remote checkpoint caught up")]
        done = next(i for i, m in enumerate(logs) if m.startswith("Step D done"))
        assert caught_up and caught_up[0] < done, "the mirror did not resume while Step D was running"
        remote_after = [e for e in events if e["type"] == "CheckpointSaved" and e["where"] == "remote"
                        and e["pairs_done"] > up_at]
        assert remote_after, "no remote checkpoint after the restart"
        print(f"\nPostgres down at pair {down_at}, up at pair {up_at}; mirror caught up at pair "
              f"{remote_after[0]['pairs_done']} of {site.state()['pairs_total']}")
        assert site.remote_checkpoint() == site.state() and site.state()["status"] == "done"
    finally:
        remove(server)


def _remote_pairs(url: str) -> int | None:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT pairs_done FROM ops_job_checkpoints WHERE job = 'full-enrichment'").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])
