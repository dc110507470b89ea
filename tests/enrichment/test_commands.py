"""The commands end to end in subprocesses: demo, SIGTERM mid-Step D + resume, gates exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import OPSCONSOLE, REPO, subprocess_env


def _env(tmp_path: Path, pg_url: str, database: str = "demo") -> dict[str, str]:
    return subprocess_env(
        OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), CLICKHOUSE_PATH=str(tmp_path / "ch"),
        CLICKHOUSE_DATABASE=database, POSTGRES_URL=pg_url,
    )


def _run(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(OPSCONSOLE + args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _checksum(env: dict[str, str], database: str) -> list:
    code = (
        "import json,sys; from engine.settings import load_settings; from engine.stores.clickhouse import open_clickhouse;"
        "from engine.enrichment.stepd import pnl_checksum;"
        f"print(json.dumps(pnl_checksum(open_clickhouse(load_settings(), {database!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_demo_ends_with_every_gate_passing(tmp_path, pg_url) -> None:
    env = _env(tmp_path, pg_url)
    out = _run(["demo", "--scale", "small", "--no-ui"], env)
    assert out.returncode == 0, out.stderr + out.stdout
    gates = [line for line in out.stdout.splitlines() if "Gate" in line and not line[:1].isdigit()]  # the final table
    assert len(gates) == 5 and all("[PASS" in line for line in gates), out.stdout
    out = _run(["gates", "--json"], env)
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True
    # The runbook's monitoring files exist.
    assert json.loads((tmp_path / "rt" / "full-enrichment.state.json").read_text())["status"] == "done"
    assert "Step D done" in (tmp_path / "rt" / "full-enrichment.console.log").read_text()


def test_sigterm_mid_step_d_then_resume_matches_an_uninterrupted_run(tmp_path, pg_url) -> None:
    env = _env(tmp_path, pg_url)
    state = tmp_path / "rt" / "full-enrichment.state.json"
    proc = subprocess.Popen(OPSCONSOLE + ["demo", "--scale", "medium", "--batch-size", "40", "--no-ui"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if state.exists():
                try:
                    if json.loads(state.read_text()).get("pairs_done", 0) > 0:
                        break
                except json.JSONDecodeError:
                    pass  # never happens with atomic replace; tolerate anyway
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr + stdout
    stopped = json.loads(state.read_text())
    assert stopped["status"] == "stopped" and 0 < stopped["pairs_done"] < stopped["pairs_total"]
    assert stopped["pairs_done"] % 40 == 0  # whole batches only
    assert "SIGTERM received" in stdout

    out = _run(["gates", "--json"], env)
    assert out.returncode == 3  # P&L incomplete: gates say so
    assert {g["name"] for g in json.loads(out.stdout)["gates"] if g["status"] == "FAIL"} >= {"pnl_nulls"}

    # Resume, then abort with two signals: exit 130, and the checkpoint on disk is still valid.
    proc = subprocess.Popen(OPSCONSOLE + ["enrich", "--step", "D", "--resume", "--batch-size", "25", "--no-ui"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if json.loads(state.read_text())["pairs_done"] > stopped["pairs_done"]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130 = aborted by the second signal. If the first signal's batch ended and the process was
    # already exiting when the second arrived, it is 0 or killed by the signal (-15). The checkpoint
    # on disk must be valid in every case.
    assert proc.returncode in (0, 130, -signal.SIGTERM), stderr
    aborted = json.loads(state.read_text())
    assert aborted["pairs_done"] > stopped["pairs_done"]
    # Aborted: the last batch's checkpoint (running); a graceful end marks it stopped.
    assert aborted["status"] in (("stopped",) if proc.returncode == 0 else ("running", "stopped"))

    out = _run(["enrich", "--step", "D,E", "--resume", "--batch-size", "300", "--no-ui"], env)
    assert out.returncode == 0, out.stderr + out.stdout
    assert f"resuming after pair {aborted['pairs_done']:,}" in out.stdout
    assert _run(["gates"], env).returncode == 0

    ref_env = _env(tmp_path, pg_url, database="reference")
    ref_env["OPSCONSOLE_RUNTIME_DIR"] = str(tmp_path / "rt-ref")
    out = _run(["demo", "--scale", "medium", "--batch-size", "5000", "--no-ui"], ref_env)
    assert out.returncode == 0, out.stderr
    assert _checksum(env, "demo") == _checksum(env, "reference")


@pytest.mark.parametrize("args, code, message", [
    (["enrich", "--step", "Z", "--no-ui"], 4, "unknown step 'Z'"),
    (["demo", "--scale", "huge"], 2, "invalid choice"),
    (["enrich", "--step", "D", "--batch-size", "0", "--no-ui"], 2, "at least 1"),
    (["demo", "--batch-size", "-3", "--no-ui"], 2, "at least 1"),
])
def test_bad_arguments_are_refused_clearly(tmp_path, pg_url, args, code, message) -> None:
    out = _run(args, _env(tmp_path, pg_url))
    assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr


def _point_env_at(monkeypatch, settings) -> None:
    """`opsconsole` run in this process reads the test's stores from the environment."""
    monkeypatch.setenv("CLICKHOUSE_PATH", str(settings.clickhouse_dir))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", settings.clickhouse_database)
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(settings.runtime))
    monkeypatch.setenv("POSTGRES_URL", settings.postgres_url.get_secret_value())


def test_enrich_exits_3_when_its_closing_gates_fail_as_demo_does(settings, ch, monkeypatch, capsys) -> None:
    from console.cli import main
    from engine.enrichment.demo import generate_demo
    from engine.enrichment.gates import compute_gates

    _point_env_at(monkeypatch, settings)
    generate_demo(ch, "small", 7)
    # Step D alone: P&L complete, but Step E has not written a single outcome, so the closing gate
    # wallets_with_outcomes FAILs. The job itself finished fine; the exit code is the gates'.
    assert main(["enrich", "--step", "D", "--no-ui", "--log-format", "plain"]) == 3
    err = capsys.readouterr().err
    assert "closing gates FAILED: wallets_with_outcomes" in err and "Traceback" not in err
    assert {g.name: g.status for g in compute_gates(ch)}["wallets_with_outcomes"] == "FAIL"
    log = (settings.runtime / "full-enrichment.console.log").read_text()
    assert "state=done exit=3" in log  # the log file's END line says the same code
    # Step E completes the picture: every gate passes, exit 0.
    assert main(["enrich", "--step", "E", "--no-ui", "--log-format", "plain"]) == 0
    assert "closing gates FAILED" not in capsys.readouterr().err


def test_an_empty_trades_table_is_named_before_the_steps_pass_on_nothing(settings, ch) -> None:
    """Pointed at the wrong store (or before any load), every step is a no-op and every gate PASSes:
    the run says so, once, naming the database. With trades there is no such line."""
    from engine.enrichment.demo import generate_demo
    from engine.enrichment.job import EnrichmentJob
    from engine.events import JobState
    from tests.enrichment.conftest import run_enrichment

    outcome, seen = run_enrichment(EnrichmentJob(["D", "E"], run_gates=True), settings, ch)
    assert outcome.state is JobState.DONE
    empty = [m for m in seen.messages("WARNING") if "trades_raw is empty" in m]
    assert len(empty) == 1 and repr(settings.clickhouse_database) in empty[0] and "data load trades" in empty[0]
    assert any("the previous complete run had no pairs" in m or "freezing the work list" in m for m in seen.messages())

    generate_demo(ch, "small", 7)
    _, seen = run_enrichment(EnrichmentJob(["D", "E"], run_gates=False), settings, ch)
    assert not [m for m in seen.messages() if "trades_raw is empty" in m]
    assert any("the previous complete run had no pairs" in m for m in seen.messages())  # not "an older build"
