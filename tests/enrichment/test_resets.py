"""`reset --hard` and `reset --market` on real chDB + Postgres, with real P&L from the job: backup
first, confirmation, checkpoints removed, and the next Step D reprocessing exactly what was reset."""

from __future__ import annotations

import csv
import json

import anyio
import psycopg
import pytest

from console.cli import main
from engine.enrichment.job import DemoRequest, EnrichmentJob
from engine.enrichment.resets import run_reset
from engine.enrichment.stepd import pnl_checksum
from engine.errors import BadInput, ExitCode, LockHeld
from engine.runner import job_lock
from tests.enrichment.conftest import run_enrichment


def full_run(settings, ch) -> tuple[int, int]:
    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], demo=DemoRequest("small", 3), batch_size=50,
                                              abc_options={"offline": True}), settings, ch)
    assert outcome.exit_code == 0, outcome.error
    return pnl_checksum(ch)


def resolved(ch, where: str = "1", params: dict | None = None) -> int:
    return int(ch.scalar(f"SELECT count() FROM $db.trades_raw WHERE (realized_pnl_usd IS NOT NULL OR is_resolved = 1) "
                         f"AND {where}", params))


def remote_rows(settings) -> int:
    with psycopg.connect(settings.postgres_url.get_secret_value()) as conn:
        return conn.execute("SELECT count(*) FROM ops_job_checkpoints WHERE job = 'full-enrichment'").fetchone()[0]


def reset(ch, settings, market=None, confirm=True):
    return anyio.run(lambda: run_reset(ch, settings, market_id=market, confirm=lambda plan: confirm))


def test_reset_hard_backs_up_resets_and_step_d_recomputes_identically(settings, ch) -> None:
    before = full_run(settings, ch)
    n_resolved = resolved(ch)
    n_outcomes = int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes"))
    state = settings.runtime / "full-enrichment.state.json"
    assert n_resolved > 0 and n_outcomes > 0 and state.exists() and remote_rows(settings) == 1

    assert reset(ch, settings, confirm=False) is None  # not confirmed: nothing changes
    assert resolved(ch) == n_resolved and state.exists()

    result = reset(ch, settings)
    assert result is not None
    assert (result.backed_up_trades, result.backed_up_outcomes) == (n_resolved, n_outcomes)
    with (result.backup_dir / "trades_raw_resolved.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_resolved and all(r["is_resolved"] == "1" for r in rows)
    manifest = json.loads((result.backup_dir / "manifest.json").read_text())
    assert manifest["trades_raw_resolved.csv"] == n_resolved
    assert (result.backup_dir / "full-enrichment.state.json").exists()
    assert resolved(ch) == 0
    assert int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes")) == 0
    assert not state.exists() and remote_rows(settings) == 0

    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], batch_size=70), settings, ch)
    assert outcome.exit_code == 0, outcome.error
    assert pnl_checksum(ch) == before


def test_reset_market_only_that_market_and_next_step_d_reprocesses_it(settings, ch) -> None:
    before = full_run(settings, ch)
    market = ch.scalar("SELECT market_id FROM $db.trades_raw WHERE is_resolved = 1 ORDER BY market_id LIMIT 1")
    in_market = resolved(ch, "market_id = {m:String}", {"m": market})
    others = resolved(ch) - in_market
    result = reset(ch, settings, market=market)
    assert result is not None and result.backed_up_trades == in_market
    assert result.backup_dir.name.endswith(f"-market-{market}")
    assert resolved(ch) == others  # every other market untouched
    assert int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes WHERE market_id = {m:String}",
                         {"m": market})) == 0
    assert (settings.runtime / "full-enrichment.state.json").exists()  # the checkpoint stays
    # the next Step D (even with --resume over a "done" checkpoint) reprocesses the market
    outcome, _ = run_enrichment(EnrichmentJob(["D"], resume=True), settings, ch)
    # Step D alone: the market's outcomes wait for Step E, so its closing gates FAIL (exit 3).
    assert outcome.exit_code == ExitCode.GATES_FAILED, outcome.error
    assert pnl_checksum(ch) == before


def test_reset_refuses_unknown_market_and_a_running_job(settings, ch) -> None:
    full_run(settings, ch)
    with pytest.raises(BadInput, match="market 'nope' has no trades"):
        reset(ch, settings, market="nope")
    lock = job_lock(settings, "full-enrichment")
    lock.acquire()
    try:
        with pytest.raises(LockHeld):
            reset(ch, settings)
    finally:
        lock.release()
    assert resolved(ch) > 0


def test_cli_requires_confirmation(settings, ch, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CLICKHOUSE_PATH", str(settings.clickhouse_dir))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", settings.clickhouse_database)
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(settings.runtime))
    monkeypatch.setenv("POSTGRES_URL", settings.postgres_url.get_secret_value())
    full_run(settings, ch)
    n = resolved(ch)
    assert main(["reset", "--hard"]) == 2  # no terminal, no --yes: refused
    err = capsys.readouterr()
    assert "--yes" in err.err and "wallet_resolution_outcomes" in err.out and resolved(ch) == n
    assert main(["reset", "--hard", "--yes"]) == 0
    assert "backup:" in capsys.readouterr().out and resolved(ch) == 0
