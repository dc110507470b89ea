"""`opsconsole pipeline` / `opsconsole replay` as an operator runs them (subprocesses), and replay."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.pipeline.replay import replay_run
from tests.conftest import OPSCONSOLE, REPO, subprocess_env
from tests.pipeline.conftest import count, opts, rows, run_pipeline
from tests.support.terminal import needs_tmux, run_on_terminal

SNAPSHOT = REPO / "engine" / "pipeline" / "data" / "sample_markets.json"


def cli(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPSCONSOLE, *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), **env))


def test_dry_run_on_the_bundled_snapshot_without_keys(tmp_path):
    summary = tmp_path / "summary.json"
    p = cli("pipeline", "--dry-run", "--limit", "5", "--source", str(SNAPSHOT), "--no-ui",
            "--summary-path", str(summary), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Pipeline summary" in out and "status completed_with_errors" in out
    assert "openai     skipped: OPENAI_API_KEY is not set" in out
    assert "gemini     skipped: GEMINI_API_KEY is not set" in out
    assert "market has no id" in out and "normalization failed" in out
    data = json.loads(summary.read_text())
    assert data["suites"]["baseline"]["forecast_ok"] == 2 and data["counts"]["markets_seen"] == 5
    assert not (tmp_path / "rt" / "postgres").exists()  # a dry run never even starts the database
    assert list((tmp_path / "rt" / "debug-dumps").glob("*/baseline/*.json"))


@needs_tmux
def test_dry_run_on_a_terminal_prints_its_summary(tmp_path):
    """On a terminal the run has its own process with the console attached; the summary is still
    printed when the command returns (from runtime/pipeline.last.json), however quickly it ended."""
    env = {"OPSCONSOLE_RUNTIME_DIR": str(tmp_path / "rt"), "OPENAI_API_KEY": "", "GEMINI_API_KEY": ""}
    code, screen = run_on_terminal(["pipeline", "--dry-run", "--limit", "5", "--source", str(SNAPSHOT)], env,
                                   tmp_path / "done")
    assert code == "EXIT=0", screen
    assert "Pipeline summary" in screen and "status completed_with_errors" in screen, screen


def test_list_experiments_is_offline_and_reflects_filters_and_overrides(tmp_path):
    p = cli("pipeline", "--list-experiments", "--include-forecast", "gpt5",
            "--experiment-override", "openai:forecast:gpt5.model=gpt-x", tmp_path=tmp_path,
            POLYMARKET_BASE_URL="http://127.0.0.1:9", SUPABASE_DB_URL="postgresql://u:p@127.0.0.1:9/none")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["selected"] == ["openai:research:openai_web_search", "openai:forecast:gpt5"]
    gpt5 = next(e for s in data["suites"] for e in s["experiments"] if e["name"] == "openai:forecast:gpt5")
    assert data["will_run"] == []  # no OPENAI_API_KEY here: listed, but it would be skipped
    assert gpt5["config"]["model"] == "gpt-x" and gpt5["requires"] == ["openai:research:openai_web_search"]


def test_bad_overrides_and_flags_fail_before_any_work(tmp_path):
    p = cli("pipeline", "--source", str(SNAPSHOT), "--no-ui", "--experiment-override", "openai:forecast:gpt9.model=x",
            tmp_path=tmp_path)
    assert p.returncode == 4 and "unknown experiment 'openai:forecast:gpt9'" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "rt").exists()  # nothing started: no lock, no log, no dumps
    p = cli("pipeline", "--window-days", "2", "--target-date", "2026-12-01", tmp_path=tmp_path)
    assert p.returncode == 2 and "not allowed with argument" in p.stderr
    p = cli("pipeline", "--target-date", "12/01/2026", tmp_path=tmp_path)
    assert p.returncode == 2 and "not a date" in p.stderr
    p = cli("pipeline", "--no-ui", "--source", str(SNAPSHOT), "--include-forecast", "nope", tmp_path=tmp_path)
    assert p.returncode == 4 and "matches no forecast variant" in p.stderr


def test_help_says_which_dates_are_taken(tmp_path):
    p = cli("pipeline", "--help", tmp_path=tmp_path)
    assert "00:00:00Z" in p.stdout and "23:59:59Z" in p.stdout and "UTC" in p.stdout


@pytest.mark.anyio
async def test_replay_persists_dumps_without_llm_calls_idempotently(make_settings, pg_url, openai_app, gemini_app):
    settings = make_settings()
    # The run "lost" its database writes (a dry run writes none); its dumps still hold every answer.
    run = await run_pipeline(settings, opts(dry_run=True))
    calls = (sum(openai_app.calls.values()), sum(gemini_app.calls.values()))
    checked = await replay_run(settings, run.job.run_id, dry_run=True)
    assert checked.research_inserted == 6 and checked.forecasts_inserted == 9 and not checked.problems
    assert rows(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]

    first = await replay_run(settings, run.job.run_id)
    assert (first.research_inserted, first.forecasts_inserted) == (6, 9)
    assert count(pg_url, "experiment_results") == 9 and count(pg_url, "processed_markets") == 4
    second = await replay_run(settings, run.job.run_id)
    assert (second.research_inserted, second.forecasts_inserted) == (0, 0)
    assert (second.research_present, second.forecasts_present) == (6, 9)
    assert count(pg_url, "experiment_results") == 9
    assert rows(pg_url, "SELECT status FROM processing_runs") == [("replayed",)]
    # and a normal run afterwards has nothing left to pay for
    rerun = await run_pipeline(settings, opts())
    assert rerun.summary["counts"]["events_skipped_complete"] == 3
    assert (sum(openai_app.calls.values()), sum(gemini_app.calls.values())) == calls


@pytest.mark.anyio
async def test_replay_reports_bad_dumps_and_missing_runs(make_settings, pg_url, tmp_path):
    from engine.errors import BadInput

    settings = make_settings()
    with pytest.raises(BadInput, match="no debug dumps for run 'nope'"):
        await replay_run(settings, "nope")
    run = await run_pipeline(settings, opts(suites=["baseline"], dry_run=True))
    run_dir = settings.debug_dump_dir / run.job.run_id
    victim = sorted(run_dir.glob("baseline/*.json"))[0]
    doc = json.loads(victim.read_text())
    doc["experiments"]["baseline:forecast:market_prices"]["probabilities"] = {"nope": {"Yes": 2}}
    victim.write_text(json.dumps(doc))
    report = await replay_run(settings, run.job.run_id)
    assert len(report.problems) == 1 and "probabilities do not cover" in report.problems[0]
    assert report.forecasts_inserted == 2


def test_replay_cli_dry_run(tmp_path):
    p = cli("pipeline", "--dry-run", "--source", str(SNAPSHOT), "--no-ui", "--log-format", "json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    run_id = next(json.loads(line)["data"]["run_id"] for line in p.stdout.splitlines()
                  if line.startswith("{") and '"Summary"' in line)
    r = cli("replay", "--run-id", run_id, "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "would insert 0, already stored 0" in r.stdout.splitlines()[2]
    assert "forecast results:   would insert 6" in r.stdout
