"""Step D's CheckpointWriter on real stores: the local file (real filesystem) and the Postgres mirror
(the embedded server, or a port nothing listens on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest

from engine.errors import OpsError
from engine.bus import EventBus
from engine.control import Control
from engine.enrichment.checkpoint import (
    JOB_NAME, Cursor, RemoteCheckpoints, StepDCheckpoint, load_local, save_local, state_path,
)
from engine.enrichment.checkpoint_writer import CheckpointWriter
from engine.enrichment.job import EnrichmentLive
from engine.events import CheckpointSaved, Failure
from engine.runner import JobContext
from engine.settings import Settings, load_settings
from tests.enrichment.conftest import Recorder


def _context(settings: Settings) -> tuple[JobContext, Recorder]:
    bus = EventBus()
    recorder = Recorder()
    bus.add_listener(recorder)
    return JobContext(name=JOB_NAME, settings=settings, control=Control(JOB_NAME, bus, EnrichmentLive()), bus=bus), recorder


def _state(k: int, status: str = "running") -> StepDCheckpoint:
    """Checkpoint k: k batches of 10 pairs done, the cursor on pair k."""
    return StepDCheckpoint(batch_idx=k, pairs_done=10 * k, cursor=Cursor(wallet_address=f"0xw{k:04d}", condition_id=f"0xc{k:04d}"),
                           fingerprint="fp2:sha256:test", pairs_total=100, batch_size=10, write_strategy="lightweight",
                           status=status)


def _on_disk(settings: Settings) -> int | None:
    cp = load_local(settings.runtime)
    return None if cp is None else cp.pairs_done


def _mirrored(pg_url: str) -> dict[str, object] | None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT state FROM ops_job_checkpoints WHERE job = %s AND step = 'D'", (JOB_NAME,)).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def unreachable(tmp_path: Path, chdb_path: Path, ch_database: str) -> Iterator[Settings]:
    # A port nothing listens on: every connection is refused.
    yield load_settings(runtime_dir=tmp_path / "rt", postgres_url="postgresql://u:pw@127.0.0.1:9/none?connect_timeout=1",
                        clickhouse_path=chdb_path, clickhouse_database=ch_database)


def test_checkpoints_land_in_order_and_the_file_never_runs_ahead(settings) -> None:
    ctx, rec = _context(settings)
    writer = CheckpointWriter(ctx, None)
    on_disk_when_built: list[int | None] = []
    on_disk_after_handing: list[int | None] = []

    def make(k: int) -> StepDCheckpoint:
        on_disk_when_built.append(_on_disk(settings))
        return _state(k)

    async def body() -> str:
        for k in range(1, 6):
            await writer.save_next(lambda k=k: make(k))
            on_disk_after_handing.append(_on_disk(settings))
        await writer.settle()
        return "exhausted"

    assert anyio.run(writer.run, body) == "exhausted"
    # Each checkpoint is built only once the previous one is on disk: they land one at a time, in order.
    assert on_disk_when_built == [None, 10, 20, 30, 40]
    # The file is never ahead of the newest checkpoint handed over (at most one behind it).
    for k, seen in enumerate(on_disk_after_handing, start=1):
        assert seen in (10 * (k - 1) or None, 10 * k)
    assert _on_disk(settings) == 50 and writer.last_saved is not None and writer.last_saved.pairs_done == 50
    local = [e for e in rec.of(CheckpointSaved) if e.where == "local"]
    assert [e.pairs_done for e in local] == [10, 20, 30, 40, 50]
    assert local[-1].cursor == {"wallet_address": "0xw0005", "condition_id": "0xc0005"}
    assert json.loads(state_path(settings.runtime).read_text())["batch_idx"] == 5


def test_background_saves_need_run(settings) -> None:
    writer = CheckpointWriter(_context(settings)[0], None)
    with pytest.raises(RuntimeError, match="only available inside CheckpointWriter.run"):
        anyio.run(writer.save_next, lambda: _state(1))
    assert _on_disk(settings) is None


def test_a_failing_body_is_raised_after_its_last_checkpoint_landed(settings) -> None:
    ctx, _ = _context(settings)
    writer = CheckpointWriter(ctx, None)

    async def body() -> None:
        for k in (1, 2, 3):
            await writer.save_next(lambda k=k: _state(k))
        raise ValueError("batch 4 failed")  # checkpoint 3 is still in flight here

    with pytest.raises(ValueError, match="batch 4 failed"):
        anyio.run(writer.run, body)
    # Exactly the last checkpoint handed over: landed, and nothing beyond it.
    assert _on_disk(settings) == 30


def test_a_failing_local_write_fails_the_run_as_itself(settings) -> None:
    # A directory where the state file goes: the atomic replace cannot put a file there.
    state_path(settings.runtime).mkdir(parents=True)
    ctx, rec = _context(settings)
    writer = CheckpointWriter(ctx, None)

    async def body() -> None:
        await writer.save_next(lambda: _state(1))
        await writer.settle()

    with pytest.raises(OpsError) as info:  # a clear error naming the file, not an ExceptionGroup
        anyio.run(writer.run, body)
    assert not isinstance(info.value, BaseExceptionGroup)
    assert "full-enrichment.state.json" in str(info.value)
    assert rec.of(CheckpointSaved) == []


def test_leaving_run_drains_the_mirror_into_postgres(settings, pg_url) -> None:
    ctx, rec = _context(settings)
    remote = RemoteCheckpoints(settings)
    writer = CheckpointWriter(ctx, remote)

    async def body() -> None:
        for k in range(1, 6):
            await writer.save_next(lambda k=k: _state(k))

    async def go() -> None:
        try:
            await writer.run(body)
        finally:
            await remote.close()

    anyio.run(go)
    local = load_local(settings.runtime)
    assert local is not None and local.pairs_done == 50
    # Every queued state was written (a healthy mirror skips none), in order, ending equal to the file.
    assert [e.pairs_done for e in rec.of(CheckpointSaved) if e.where == "remote"] == [10, 20, 30, 40, 50]
    assert _mirrored(pg_url) == local.document()
    assert rec.of(Failure) == [] and rec.messages("WARNING") == []


def test_a_final_checkpoint_is_mirrored_before_save_returns(settings, pg_url) -> None:
    ctx, _ = _context(settings)
    remote = RemoteCheckpoints(settings)
    writer = CheckpointWriter(ctx, remote)
    seen: list[object] = []

    async def go() -> None:
        try:
            await writer.run(lambda: writer.save_next(lambda: _state(4)))
            await writer.save(_state(10, "done"), final=True)
            seen.append(_mirrored(pg_url))
        finally:
            await remote.close()

    anyio.run(go)
    assert isinstance(seen[0], dict) and seen[0]["status"] == "done" and seen[0]["pairs_done"] == 100


def test_a_failing_mirror_is_reported_not_swallowed(unreachable) -> None:
    ctx, rec = _context(unreachable)
    remote = RemoteCheckpoints(unreachable, timeout_s=0.5, reconnect_every_s=3600)
    writer = CheckpointWriter(ctx, remote)

    async def body() -> None:
        for k in (1, 2, 3):
            await writer.save_next(lambda k=k: _state(k))

    async def go() -> None:
        try:
            await writer.run(body)
            await writer.save(_state(10, "done"), final=True)
        finally:
            await remote.close()

    anyio.run(go)
    # The local checkpoints carried on; the job was not failed.
    assert _on_disk(unreachable) == 100
    assert [e.pairs_done for e in rec.of(CheckpointSaved)] == [10, 20, 30, 100]  # all local
    assert remote.failures >= 2 and remote.last_error
    warnings = rec.messages("WARNING")
    assert any("remote checkpoint (Postgres) not saved" in m and "1 consecutive failure(s)" in m for m in warnings)
    assert any("the remote checkpoint in Postgres is behind the local one (pairs_done=100 locally)" in m for m in warnings)
    # One Failure event per outage, not one per attempt; the password never shows.
    [failure] = rec.of(Failure)
    assert failure.where == "remote checkpoint" and failure.retriable
    assert not any("pw@" in m for m in rec.messages())


def test_a_stopped_run_retries_a_mirror_that_is_behind(settings, pg_url) -> None:
    """A stop's final checkpoint (Step D saves it `stopped`, `final`) is mirrored inline: a mirror
    that fell behind during the run is current when the job ends."""
    ctx, rec = _context(settings)
    remote = RemoteCheckpoints(settings)
    writer = CheckpointWriter(ctx, remote)

    async def go() -> None:
        try:
            await writer.run(lambda: writer.save_next(lambda: _state(3)))
            remote.failures = 1  # as after a failed attempt; the next real attempt catches up
            await writer.save(_state(3, "stopped"), final=True)
        finally:
            await remote.close()

    anyio.run(go)
    remote_saves = [e for e in rec.of(CheckpointSaved) if e.where == "remote"]
    assert [e.pairs_done for e in remote_saves] == [30, 30]
    assert "remote checkpoint caught up after 1 failed attempt(s)" in rec.messages()
    assert _mirrored(pg_url) == load_local(settings.runtime).document()


def test_catch_up_brings_an_empty_or_stale_mirror_to_the_local_checkpoint(settings, pg_url) -> None:
    done = _state(10, "done")
    save_local(settings.runtime, done)
    ctx, rec = _context(settings)
    remote = RemoteCheckpoints(settings)
    writer = CheckpointWriter(ctx, remote)

    async def go() -> None:
        try:
            await writer.catch_up_mirror(done)  # empty
            await writer.catch_up_mirror(done)  # equal: nothing to do
            await remote.save(_state(7))  # stale
            await writer.catch_up_mirror(done)
        finally:
            await remote.close()

    anyio.run(go)
    assert [m for m in rec.messages() if "Postgres mirror" in m] == [
        "the Postgres mirror was behind the local checkpoint (empty); brought up to date",
        "the Postgres mirror was behind the local checkpoint (status running, pairs_done=70); brought up to date",
    ]
    assert _mirrored(pg_url) == done.document()


def test_catch_up_reports_an_unreachable_mirror(unreachable) -> None:
    ctx, rec = _context(unreachable)
    remote = RemoteCheckpoints(unreachable, timeout_s=0.5)
    writer = CheckpointWriter(ctx, remote)

    async def go() -> None:
        try:
            await writer.catch_up_mirror(_state(10, "done"))
        finally:
            await remote.close()

    anyio.run(go)
    [warning] = rec.messages("WARNING")
    assert warning.startswith("could not compare the Postgres mirror with the local checkpoint: ")
