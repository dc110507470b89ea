"""Shared fixtures: the real stores, embedded.

One embedded PostgreSQL server per test session, a fresh database per test. One chDB data path per
test process (chDB allows one per process), a fresh ClickHouse database per test. Tests never read
the developer's environment or .env files: every settings variable is cleared and the working
directory is a temporary one.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent

SETTINGS_VARS = [
    "ENVIRONMENT", "OPSCONSOLE_RUNTIME_DIR", "SUPABASE_DB_URL", "POSTGRES_URL", "POSTGRES_POOLER_MODE",
    "CLICKHOUSE_URL", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD",
    "CLICKHOUSE_DATABASE", "CLICKHOUSE_SECURE", "CLICKHOUSE_PATH", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL", "POLYMARKET_BASE_URL", "INGESTION_FILTERS",
    "INGESTION_PAGE_SIZE", "PIPELINE_EVENT_BATCH_SIZE", "PIPELINE_DEBUG_DUMP_DIR", "BATCH_SIZE",
    "MUTATION_WAIT_EVERY", "MUTATION_WAIT_TIMEOUT", "STEP_D_WRITE_STRATEGY", "CLICKHOUSE_CLUSTER", "PIPELINE_WORKER_LEASE_S",
    "STEP_D_APPLY_PATCHES", "FOCUS_FILE", "POLYMARKET_DATA_API_URL", "CLICKHOUSE_NICE",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URI of a session-wide embedded PostgreSQL (short path: the unix socket lives inside)."""
    from engine.stores.postgres import start_embedded

    root = Path(tempfile.mkdtemp(prefix="opspg-"))
    os.chmod(root, 0o755)
    uri = start_embedded(root / "pg")
    yield uri
    shutil.rmtree(root, ignore_errors=True)


def _with_db(uri: str, dbname: str) -> str:
    # embedded URIs look like postgresql://postgres:@/postgres?host=/tmp/...
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{dbname}" + (f"?{query}" if query else "")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the session server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def chdb_path() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="opsch-"))
    yield root / "clickhouse"
    from engine.stores.clickhouse import ChdbClickHouse

    ChdbClickHouse.close_all()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ch_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, chdb_path: Path, ch_database: str) -> Settings:
    """Settings on the real embedded stores, isolated per test (own PG database, own CH database)."""
    return load_settings(
        runtime_dir=tmp_path / "runtime",
        postgres_url=pg_url,
        clickhouse_path=chdb_path,
        clickhouse_database=ch_database,
    )


@pytest.fixture
def ch(settings: Settings) -> Iterator["object"]:
    from engine.stores.clickhouse import open_clickhouse

    client = open_clickhouse(settings)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")


def with_settings(settings: Settings, **changes: object) -> Settings:
    """A validated copy of `settings` with some fields changed (model_copy would skip validation)."""
    return load_settings(**{**settings.model_dump(), **changes})


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for `python -m console ...` subprocesses: no inherited settings variables."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


OPSCONSOLE = [sys.executable, "-m", "console"]


# --- ClickHouse over HTTP (the server backend) ---------------------------------------------------
CH_HTTP_PASSWORD = "Loopback-CH-Secret-1"


@pytest.fixture(scope="session")
def clickhouse_http() -> Iterator[dict[str, object]]:
    """A ClickHouse HTTP endpoint for clickhouse-connect: a real server when CLICKHOUSE_TEST_URL is
    set, else the loopback endpoint backed by chDB in a process of its own (tests/support)."""
    import subprocess

    url = os.environ.get("CLICKHOUSE_TEST_URL")
    if url:
        yield {"clickhouse_url": url}
        return
    root = Path(tempfile.mkdtemp(prefix="opschhttp-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.clickhouse_http", "--path", str(root / "ch"), "--password", CH_HTTP_PASSWORD],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("PORT "), f"loopback ClickHouse endpoint did not start: {line!r}"
    yield {"clickhouse_host": "127.0.0.1", "clickhouse_port": int(line.split()[1]), "clickhouse_password": CH_HTTP_PASSWORD}
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["chdb", "http"])
def ch_backend(request: pytest.FixtureRequest, settings: Settings) -> Iterator["object"]:
    """The same test on both ClickHouse backends: embedded chDB and clickhouse-connect over HTTP."""
    from engine.stores.clickhouse import open_clickhouse

    if request.param == "http":
        server = request.getfixturevalue("clickhouse_http")
        settings = with_settings(settings, **server)
    client = open_clickhouse(settings)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")
    client.close()


PG_TCP_PASSWORD = "Loopback-PG-Secret-2"


@pytest.fixture(scope="session")
def pg_tcp() -> Iterator["object"]:
    """A second PostgreSQL on a loopback TCP port with a password (server mode by URL)."""
    from tests.support.pg_tcp import remove, start_tcp_postgres

    server = start_tcp_postgres(PG_TCP_PASSWORD)
    yield server
    remove(server)
