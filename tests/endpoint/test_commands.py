"""`opsconsole status | pause | resume | stop` against real job processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.endpoint.helpers import WAIT, log_text, opsconsole, start_selftest, units_done, wait_for_socket, wait_until


def test_status_pause_resume_stop_commands(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = start_selftest(rt, units=100_000, unit_seconds=0.01)
    try:
        wait_for_socket(rt, proc)
        wait_until(lambda: units_done(rt) >= 2, proc, "a few units")

        status = opsconsole(rt, "status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        [job] = data["running"]
        assert job["job"] == "selftest" and job["pid"] == proc.pid and job["state"] == "running"
        assert job["step"] == "selftest" and job["total"] == 100_000 and job["done"] >= 2
        assert job["last_checkpoint"]["where"] == "local" and job["last_checkpoint"]["cursor"]["done"] >= 2
        assert job["started_at"].endswith("Z")
        text = opsconsole(rt, "status")
        assert text.returncode == 0 and "selftest" in text.stdout and "running" in text.stdout

        paused = opsconsole(rt, "pause", "selftest")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip().startswith("selftest: paused")
        assert "selftest paused" in log_text(rt)
        assert json.loads(opsconsole(rt, "status", "--json").stdout)["running"][0]["state"] == "paused"

        again = opsconsole(rt, "pause", "selftest")
        assert again.returncode == 4, again.stderr  # does not apply: already paused
        assert "pause does not apply: the job is paused" in again.stderr and "Traceback" not in again.stderr

        resumed = opsconsole(rt, "resume", "selftest")
        assert resumed.returncode == 0 and "now running" in resumed.stdout, resumed.stderr
        assert opsconsole(rt, "resume", "selftest").returncode == 4  # running: nothing to resume

        stopped = opsconsole(rt, "stop", "selftest")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip().startswith("selftest: stopped")
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    after = json.loads(opsconsole(rt, "status", "--json").stdout)
    assert after["running"] == []
    [last] = after["not_running"]
    assert last["job"] == "selftest" and last["outcome"] == "stopped" and last["exit"] == 0

    for cmd in ("pause", "resume", "stop"):
        gone = opsconsole(rt, cmd, "selftest")
        assert gone.returncode == 5, (cmd, gone.stderr)
        assert "no job 'selftest' is running" in gone.stderr and "Traceback" not in gone.stderr


def test_killed_job_is_interrupted_and_its_stale_socket_is_not_running(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = start_selftest(rt, units=100_000, unit_seconds=0.01)
    try:
        sock = wait_for_socket(rt, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert sock.exists()  # nobody removed it: a socket file with nobody listening
    data = json.loads(opsconsole(rt, "status", "--json").stdout)
    assert data["running"] == []
    assert data["not_running"] == [{**data["not_running"][0], "job": "selftest", "outcome": "interrupted"}]
    assert opsconsole(rt, "stop", "selftest").returncode == 5

    # The next run holds the lock, so it may replace the stale socket, and serves on it.
    again = start_selftest(rt, units=100_000, unit_seconds=0.01)
    try:
        wait_for_socket(rt, again)
        wait_until(lambda: json.loads(opsconsole(rt, "status", "--json").stdout)["running"] != [], again,
                   "the new run on the replaced socket")
        assert opsconsole(rt, "stop", "selftest").returncode == 0
        assert again.wait(timeout=WAIT) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert not sock.exists()


def test_enrichment_checkpoint_left_running_reads_as_interrupted(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    rt.mkdir()
    (rt / "full-enrichment.state.json").write_text(json.dumps(
        {"job": "enrichment", "step": "D", "batch_idx": 7, "pairs_done": 2100, "pairs_total": 9000,
         "status": "running", "updated_at": "2026-01-02T03:04:05.000Z"}))
    (rt / "full-enrichment.console.log").write_text(
        "2026-01-02T03:00:00.00Z START   full-enrichment pid=999999\n"
        "2026-01-02T03:04:05.00Z INFO    full-enrichment:D batch 7 written\n")
    data = json.loads(opsconsole(rt, "status", "--json").stdout)
    assert data["step_d_checkpoint"]["status"] == "interrupted" and data["step_d_checkpoint"]["pairs_done"] == 2100
    assert data["not_running"][0]["job"] == "full-enrichment" and data["not_running"][0]["outcome"] == "interrupted"
    text = opsconsole(rt, "status").stdout
    assert "Step D checkpoint: interrupted" in text and "--resume" in text


def test_status_finds_the_start_of_a_run_longer_than_the_logs_tail(tmp_path) -> None:
    """A long run's START lies megabytes before its END (two checkpoint lines per batch). status
    still says when it started; and one killed mid-run, with no END, is interrupted, not unknown."""
    from console.commands.status import last_outcome

    runtime = tmp_path / "rt"
    runtime.mkdir()
    log = runtime / "full-enrichment.console.log"
    checkpoints = "".join(f"2026-12-07T05:16:{i % 60:02d}.000Z CHECKPT full-enrichment D local batch {i} cursor {{}}\n"
                          for i in range(30_000))  # ~2.4 MB, several of status's read blocks
    log.write_text("2026-12-07T05:00:00.000Z START   full-enrichment pid=999999999\n"
                   "2026-12-07T05:00:09.000Z END     full-enrichment state=done exit=0\n"
                   "2026-12-07T05:16:54.291Z START   full-enrichment pid=999999998\n" + checkpoints
                   + "2026-12-07T05:17:27.527Z END     full-enrichment state=done exit=0\n")
    record = last_outcome(runtime, "full-enrichment")
    assert (record["outcome"], record["exit"]) == ("done", 0)
    assert record["started_at"] == "2026-12-07T05:16:54.291Z" and record["ended_at"] == "2026-12-07T05:17:27.527Z"
    log.write_text(log.read_text().rsplit("2026-12-07T05:17:27.527Z END", 1)[0])  # killed: no END
    record = last_outcome(runtime, "full-enrichment")
    assert record["outcome"] == "interrupted" and record["started_at"] == "2026-12-07T05:16:54.291Z"


def test_status_tells_a_stopped_step_d_from_a_killed_one(tmp_path) -> None:
    """A graceful stop marks its checkpoint stopped; only a `running` checkpoint with no process
    behind it is interrupted. Both say how to resume."""
    from console.commands.status import enrichment_checkpoint, render

    runtime = tmp_path / "rt"
    runtime.mkdir()
    for saved, shown in (("stopped", "stopped"), ("running", "interrupted"), ("done", "done")):
        (runtime / "full-enrichment.state.json").write_text(json.dumps(
            {"status": saved, "batch_idx": 3, "pairs_done": 900, "pairs_total": 2000, "updated_at": "t"}))
        cp = enrichment_checkpoint(runtime, running=False)
        assert cp is not None and cp["status"] == shown
        text = render({"running": [], "not_running": [], "step_d_checkpoint": cp})
        assert ("--resume" in text) is (shown != "done"), text
