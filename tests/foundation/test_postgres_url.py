"""Postgres by URL: a real password-protected server on loopback TCP (issue 8's server mode)."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from engine.errors import StoreUnavailable
from engine.settings import load_settings
from engine.stores.postgres import Postgres
from tests.conftest import OPSCONSOLE, PG_TCP_PASSWORD, subprocess_env


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_url(pg_tcp) -> str:  # type: ignore[no-untyped-def]
    name = f"u_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_tcp.url(sslmode="disable"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_tcp.url(name, sslmode="disable")


@pytest.mark.anyio
async def test_migrations_and_checkpoints_through_a_url(tmp_path: Path, db_url: str) -> None:
    settings = load_settings(runtime_dir=tmp_path, postgres_url=db_url)
    async with Postgres(settings) as pg:
        assert pg.where == "server"
        assert len(await pg.migrate()) >= 1
        await pg.execute("INSERT INTO ops_job_checkpoints (job, step, pairs_done) VALUES ('full-enrichment', 'D', 42)")
        assert (await pg.fetch_one("SELECT pairs_done FROM ops_job_checkpoints"))["pairs_done"] == 42


@pytest.mark.anyio
async def test_tls_required_against_a_server_without_tls_is_a_clear_error(tmp_path: Path, pg_tcp) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(runtime_dir=tmp_path, postgres_url=pg_tcp.url(sslmode="require"))
    with pytest.raises(StoreUnavailable) as err:
        await Postgres(settings, retry_seconds=1).open(timeout=3)
    text = str(err.value)
    assert "cannot connect to Postgres (server)" in text
    assert PG_TCP_PASSWORD not in text


@pytest.mark.anyio
async def test_wrong_password_is_reported_without_the_password(tmp_path: Path, pg_tcp) -> None:  # type: ignore[no-untyped-def]
    url = pg_tcp.url(sslmode="disable").replace(PG_TCP_PASSWORD, "Not-The-Password-9")
    settings = load_settings(runtime_dir=tmp_path, postgres_url=url)
    with pytest.raises(StoreUnavailable) as err:
        await Postgres(settings, retry_seconds=1).open(timeout=3)
    assert "password authentication failed" in str(err.value)
    assert "Not-The-Password-9" not in str(err.value)


async def _prepared_after_repeats(settings) -> int:  # type: ignore[no-untyped-def]
    async with Postgres(settings) as pg:
        async def go(conn) -> int:  # type: ignore[no-untyped-def]
            for i in range(10):
                await conn.execute("SELECT %s::int + 1", (i,))
            cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
            return (await cur.fetchone())[0]

        return await pg.run(go)


@pytest.mark.anyio
async def test_transaction_pooler_mode_uses_no_server_side_prepared_statements(tmp_path: Path, db_url: str) -> None:
    default = load_settings(runtime_dir=tmp_path, postgres_url=db_url)
    pooler = load_settings(runtime_dir=tmp_path, postgres_url=db_url, postgres_pooler="transaction")
    assert await _prepared_after_repeats(default) > 0  # psycopg prepares repeated statements...
    assert await _prepared_after_repeats(pooler) == 0  # ...which a transaction pooler cannot keep


@pytest.mark.anyio
async def test_work_survives_a_server_restart(tmp_path: Path, pg_tcp, db_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(runtime_dir=tmp_path, postgres_url=db_url)
    async with Postgres(settings, retry_seconds=60) as pg:
        await pg.migrate()
        pg_tcp.stop()
        restarter = threading.Timer(1.5, pg_tcp.start)
        restarter.start()
        started = time.monotonic()
        await pg.execute("INSERT INTO ops_job_checkpoints (job, step) VALUES ('j', 'D')")  # retried until back
        restarter.join()
        assert time.monotonic() - started >= 1.0  # it really waited for the server
        assert (await pg.fetch_one("SELECT count(*) AS n FROM ops_job_checkpoints"))["n"] == 1


def test_doctor_through_a_url_says_server_and_hides_the_password(tmp_path: Path, db_url: str) -> None:
    env = subprocess_env(POSTGRES_URL=db_url, OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), COLUMNS="250")
    out = subprocess.run([*OPSCONSOLE, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "server from POSTGRES_URL/SUPABASE_DB_URL" in out.stdout
    assert PG_TCP_PASSWORD not in out.stdout + out.stderr
