"""The daily path on real chDB: `enrich --step daily` runs the registered ingest step (when
configured), A–E incrementally and the gates as one job; a second day's run recomputes only what
changed and ends equal to a full recompute; an interrupted Step D is finished before new data is
ingested; a FAILing gate makes the run exit 3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.enrichment import daily
from engine.enrichment.daily import DAILY_SEQUENCE, DailyEnrichmentJob, ExtraStep, is_daily, plan
from engine.enrichment.demo import generate_demo
from engine.enrichment.stepd import pnl_checksum
from engine.errors import BadInput, ExitCode
from engine.events import CheckpointSaved, JobState
from engine.runner import exit_code_for
from engine.settings import Settings
from tests.conftest import OPSCONSOLE, REPO, subprocess_env
from tests.enrichment.conftest import Recorder, run_enrichment
from tests.enrichment.test_step_d_incremental import append_trades, full_recompute, outcomes_checksum

SNAPSHOT = "demo-gamma-snapshot.json"


def demo_day_zero(settings: Settings, ch: Any) -> Path:
    """Demo data with some markets and resolutions held back in a Gamma snapshot (Steps A and C's
    work, offline)."""
    snapshot = settings.runtime / SNAPSHOT
    settings.runtime.mkdir(parents=True, exist_ok=True)
    generate_demo(ch, "small", seed=5, snapshot_path=snapshot)
    return snapshot


def run_daily(settings: Settings, ch: Any, snapshot: Path, on_event: Any = None, **options: Any) -> tuple[Any, Recorder, DailyEnrichmentJob]:
    job = DailyEnrichmentJob(batch_size=9, remote_checkpoints=False,
                             abc_options={"snapshot": snapshot, "offline": True}, **options)
    outcome, rec = run_enrichment(job, settings, ch, on_event=on_event)
    return outcome, rec, job


def checksums(ch: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    return pnl_checksum(ch), outcomes_checksum(ch)


FILL = "tx_hash = {tx:String}"


def late_trades(ch: Any) -> int:
    """A day's new trades: a late fill (both its sides) in a resolved and in an unresolved market.
    Returns the pairs they touch."""
    touched = 0
    for where in ("condition_id IN (SELECT condition_id FROM $db.market_resolutions)",
                  "condition_id NOT IN (SELECT condition_id FROM $db.market_resolutions)"):
        tx = str(ch.scalar(f"SELECT tx_hash FROM $db.trades_raw WHERE {where} ORDER BY tx_hash LIMIT 1 OFFSET 3"))
        touched += int(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw WHERE " + FILL,
                                 {"tx": tx}))
        append_trades(ch, FILL, {"tx": tx}, "-day1")
    return touched


def test_the_daily_sequence_skips_an_unregistered_step_t_with_its_reason(settings: Settings) -> None:
    assert DAILY_SEQUENCE[0] == "T" and DAILY_SEQUENCE[1:] == ("A", "B", "C", "D", "E")
    steps, skipped = plan(settings)
    assert steps == ["A", "B", "C", "D", "E"] and set(skipped) == {"T"}


def test_a_registered_but_unconfigured_step_is_skipped_and_a_configured_one_runs_first(settings, monkeypatch) -> None:
    async def nothing(ctx: Any, ch: Any) -> None:
        return None

    monkeypatch.setitem(daily.EXTRA_STEPS, "T", ExtraStep(nothing, lambda s: "POLYMARKET_DATA_API_URL is not set"))
    assert plan(settings) == (["A", "B", "C", "D", "E"], {"T": "POLYMARKET_DATA_API_URL is not set"})
    monkeypatch.setitem(daily.EXTRA_STEPS, "T", ExtraStep(nothing, lambda s: None))
    assert plan(settings) == (["T", "A", "B", "C", "D", "E"], {})


def test_two_days_of_daily_runs_end_equal_to_a_full_recompute(settings, ch) -> None:
    snapshot = demo_day_zero(settings, ch)
    outcome, rec, job = run_daily(settings, ch, snapshot)
    assert outcome.state is JobState.DONE, outcome.error
    assert exit_code_for(outcome) == ExitCode.OK
    messages = rec.messages()
    assert "daily enrichment: A → B → C → D → E → gates" in messages
    assert any(m.startswith("step T not configured: ") for m in messages)
    assert set(job.results["skipped"]) == {"T"} and "POLYMARKET_DATA_API_URL is not set" in job.results["skipped"]["T"]
    assert job.results["A"]["written"] > 0, job.results["A"]  # the held-back markets, from the snapshot
    assert job.results["D"]["mode"] == "full"  # the first run has no bookkeeping to trust
    assert all(g.status != "FAIL" for g in job.gates)

    # Day 1: late trades, and nothing else; the same command recomputes only those pairs.
    touched = late_trades(ch)
    outcome, rec, job = run_daily(settings, ch, snapshot)
    assert outcome.state is JobState.DONE and exit_code_for(outcome) == ExitCode.OK, (outcome, job.gates)
    d = job.results["D"]
    assert d["mode"] == "incremental" and d["affected"]["new_trades"] == d["pairs_total"] == touched >= 3
    assert job.results["E"]["mode"] == "incremental"
    assert "D_resumed" not in job.results  # day 0 completed: nothing to finish first
    daily_result = checksums(ch)
    assert full_recompute(settings, ch) == daily_result


def test_an_interrupted_step_d_is_finished_before_anything_new_is_ingested(settings, ch, monkeypatch) -> None:
    snapshot = demo_day_zero(settings, ch)
    outcome, _, _ = run_daily(settings, ch, snapshot)
    assert outcome.state is JobState.DONE
    # Every P&L lost (as after a reset): the next run has every resolved pair to recompute; stop it
    # after its first batch.
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1",
               settings={"mutations_sync": 2})

    def stop_after_first_batch(event: Any, control: Any) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local":
            control.stop("test")

    outcome, _, job = run_daily(settings, ch, snapshot, on_event=stop_after_first_batch)
    assert outcome.state is JobState.STOPPED and job.results["D"]["status"] == "stopped"
    assert "E" not in job.results

    # The next day's ingest appends trades; it must run only after the stopped Step D is finished.
    order: list[str] = []
    touched: list[int] = []

    async def ingest(ctx: Any, ch: Any) -> dict[str, int]:
        order.append("T")
        assert json.loads((ctx.settings.runtime / "full-enrichment.state.json").read_text())["status"] == "done"
        touched.append(late_trades(ch))
        return {"fills": 2}

    monkeypatch.setitem(daily.EXTRA_STEPS, "T", ExtraStep(ingest, lambda s: None))
    outcome, rec, job = run_daily(settings, ch, snapshot)
    assert outcome.state is JobState.DONE, outcome.error
    assert order == ["T"] and job.results["T"] == {"fills": 2}
    assert any("did not complete" in m and "finishing it before ingesting new data" in m for m in rec.messages())
    assert job.results["D_resumed"]["status"] == "done" and job.results["D_resumed"]["mode"] == "incremental"
    assert job.results["D"]["mode"] == "incremental" and job.results["D"]["affected"]["new_trades"] == touched[0]
    daily_result = checksums(ch)
    assert full_recompute(settings, ch) == daily_result


def test_a_failing_gate_ends_the_daily_run_with_exit_3(settings, ch) -> None:
    snapshot = demo_day_zero(settings, ch)
    # Trades of two markets nobody knows (not in markets_dim, not in the snapshot): Step A cannot
    # fetch them offline, so markets_missing_dim FAILs (2 missing).
    for market in ("unknown-1", "unknown-2"):
        ch.command("INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, "
                   "price, shares, usd_value, fee_usd, timestamp, tx_hash) VALUES ({t:String}, {w:String}, {m:String}, "
                   "{c:String}, 0, 'BUY', 0.5, 10, 5, 0, now(), 'tx')",
                   {"t": f"t-{market}", "w": "0x" + "a" * 40, "m": market, "c": "0x" + market.encode().hex().ljust(64, "0")})
    outcome, rec, job = run_daily(settings, ch, snapshot)
    assert outcome.state is JobState.DONE
    assert {g.name: g.status for g in job.gates}["markets_missing_dim"] == "FAIL"
    assert exit_code_for(outcome) == ExitCode.GATES_FAILED == 3


@pytest.mark.parametrize("argv, message", [
    (["--step", "daily,D"], "--step daily runs T, A, B, C, D, E by itself"),
    (["--step", "daily", "--resume"], "--resume does not apply to --step daily"),
    (["--step", "daily", "--full", "--resume"], "--resume does not apply to --step daily"),
])
def test_cli_daily_refuses_contradictions_clearly(capsys, argv: list[str], message: str) -> None:
    from console.cli import main

    assert main(["enrich", *argv, "--no-ui"]) == 4
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_is_daily() -> None:
    assert is_daily("daily") and is_daily(["Daily"]) and not is_daily("D,E") and not is_daily("all")
    with pytest.raises(BadInput):
        is_daily("E daily")


def test_the_daily_command_writes_its_summary_and_log(tmp_path: Path, pg_url: str) -> None:
    """The workflow's command, end to end in its own process: exit 0, the summary with every gate,
    the log file."""
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), CLICKHOUSE_PATH=str(tmp_path / "ch"),
                         CLICKHOUSE_DATABASE="demo", POSTGRES_URL=pg_url)
    summary = tmp_path / "artifacts" / "daily-enrichment-summary.json"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*OPSCONSOLE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=240)

    out = run("demo", "--scale", "small", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    out = run("enrich", "--step", "daily", "--offline", "--no-ui", "--log-format", "plain", "--summary-path", str(summary))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "step T not configured" in out.stdout
    assert "0 of " in out.stdout and "pairs affected" in out.stdout  # the demo's own run left nothing to do
    document = json.loads(summary.read_text())
    assert document["ok"] is True and document["steps"] == ["A", "B", "C", "D", "E"]
    assert {g["name"] for g in document["gate_results"]} >= {"markets_missing_dim", "pnl_nulls"}
    assert document["D"]["mode"] == "incremental"
    assert "daily enrichment: A → B → C → D → E → gates" in (tmp_path / "rt" / "full-enrichment.console.log").read_text()


def test_ingest_joins_the_daily_run_only_when_the_data_api_is_named(tmp_path) -> None:
    from engine.enrichment.daily import EXTRA_STEPS
    from engine.settings import load_settings

    check = EXTRA_STEPS["T"].unconfigured
    assert "POLYMARKET_DATA_API_URL is not set" in (check(load_settings(runtime_dir=tmp_path)) or "")
    assert check(load_settings(runtime_dir=tmp_path, data_api_base_url="http://127.0.0.1:9")) is None
