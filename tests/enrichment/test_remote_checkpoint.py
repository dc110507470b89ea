"""The Postgres mirror of Step D's checkpoint: written every batch, failures shown and retried."""

from __future__ import annotations

import json

import anyio
import psycopg

from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.events import CheckpointSaved, Failure, JobState
from engine.settings import load_settings
from engine.stores.postgres import Postgres
from tests.enrichment.conftest import run_enrichment


def test_checkpoint_is_mirrored_in_postgres(settings, ch, pg_url) -> None:
    generate_demo(ch, "small", seed=4)
    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=40, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    local = json.loads(state_path(settings.runtime).read_text())
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT batch_idx, pairs_done, cursor, fingerprint, pairs_total, status, batch_size, state "
            "FROM ops_job_checkpoints WHERE job = 'full-enrichment' AND step = 'D'"
        ).fetchone()
    assert row is not None
    assert row[0] == local["batch_idx"] and row[1] == local["pairs_done"] == local["pairs_total"]
    assert row[2] == local["cursor"] and row[3] == local["fingerprint"] and row[5] == "done" and row[6] == 40
    assert row[7] == local
    remote = [e for e in rec.of(CheckpointSaved) if e.where == "remote"]
    assert len(remote) == len([e for e in rec.of(CheckpointSaved) if e.where == "local"])


def test_resume_from_the_postgres_mirror_when_the_local_file_is_gone(settings, ch) -> None:
    generate_demo(ch, "small", seed=4)

    def stop(event, control) -> None:
        # The mirror runs beside the batch loop (it may lag); a stop drains it, so the mirror ends
        # equal to the local checkpoint.
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx == 2:
            control.stop("test")

    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=30, run_gates=False), settings, ch, on_event=stop)
    assert outcome.state is JobState.STOPPED
    stopped_at = json.loads(state_path(settings.runtime).read_text())["pairs_done"]
    state_path(settings.runtime).unlink()
    outcome, rec = run_enrichment(EnrichmentJob(["D"], resume=True, batch_size=30, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert any("resuming from the Postgres mirror" in m for m in rec.messages("WARNING"))
    assert any(f"resuming after pair {stopped_at}" in m for m in rec.messages())


def test_unreachable_postgres_is_reported_and_not_fatal(tmp_path, chdb_path, ch_database, ch) -> None:
    # A port nothing listens on: every remote write fails; the local checkpoint carries on.
    settings = load_settings(runtime_dir=tmp_path / "rt", postgres_url="postgresql://u:pw@127.0.0.1:9/none?connect_timeout=1",
                             clickhouse_path=chdb_path, clickhouse_database=ch_database)
    generate_demo(ch, "small", seed=4)
    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=50, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert json.loads(state_path(settings.runtime).read_text())["status"] == "done"
    warnings = [m for m in rec.messages("WARNING") if "remote checkpoint (Postgres) not saved" in m]
    assert warnings and "local checkpoint is saved" in warnings[0]
    assert [f for f in rec.of(Failure) if f.where == "remote checkpoint"]
    assert not [e for e in rec.of(CheckpointSaved) if e.where == "remote"]
    assert "pw" not in " ".join(rec.messages())  # the DSN's password never shows


def test_failing_remote_write_is_retried_and_catches_up(settings, ch, pg_url) -> None:
    """Real failure: the table is missing for a while, then back; the mirror ends up current."""
    generate_demo(ch, "small", seed=4)

    async def prepare() -> None:
        async with Postgres(settings) as pg:
            await pg.migrate()
            await pg.execute("ALTER TABLE ops_job_checkpoints RENAME TO ops_job_checkpoints_away")

    anyio.run(prepare)

    def on_event(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx == 3:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("ALTER TABLE ops_job_checkpoints_away RENAME TO ops_job_checkpoints")

    outcome, rec = run_enrichment(EnrichmentJob(["D"], batch_size=20, run_gates=False), settings, ch, on_event=on_event)
    assert outcome.state is JobState.DONE, outcome.error
    warnings = [m for m in rec.messages("WARNING") if "remote checkpoint (Postgres) not saved" in m]
    assert warnings, rec.messages()
    assert any("remote checkpoint caught up" in m for m in rec.messages())
    local = json.loads(state_path(settings.runtime).read_text())
    with psycopg.connect(pg_url) as conn:
        state = conn.execute("SELECT state FROM ops_job_checkpoints WHERE job = 'full-enrichment'").fetchone()[0]
    assert state == local
