"""Secrets never leave memory, and runtime files are the owner's alone.

A canary OpenAI key, a canary Gemini key and a real database password (the password-protected
Postgres of tests/support/pg_tcp.py) are set for full runs of the pipeline (LLM suites against
loopback servers, writing to Postgres, with dumps and a summary file), the enrichment demo (with its
Postgres checkpoint mirror), `config`, `doctor` and failing commands. Every byte they print and
every file they leave under runtime/ is searched for the secrets.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import OPSCONSOLE, PG_TCP_PASSWORD, REPO, subprocess_env
from tests.pipeline.fakes import GeminiApp, LoopbackServer, OpenAIApp

OPENAI_CANARY = "sk-canary-" + "7f3a9c" * 5
GEMINI_CANARY = "AIzaCanary" + "Q1w2E3r4" * 4
SECRETS = (OPENAI_CANARY, GEMINI_CANARY, PG_TCP_PASSWORD)
SNAPSHOT = REPO / "engine" / "pipeline" / "data" / "sample_markets.json"
STORE_DATA = ("postgres", "clickhouse")  # the stores' own files, managed by their servers


def echo_key_401(method: str, path: str, query: dict, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """An OpenAI-compatible server rejecting the key and quoting it back, as real providers do."""
    import json

    key = headers.get("Authorization", headers.get("authorization", "")).removeprefix("Bearer ")
    payload = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error",
                         "code": "invalid_api_key"}}
    return 401, {"Content-Type": "application/json"}, json.dumps(payload).encode()


@pytest.fixture
def llm_servers() -> Iterator[tuple[str, str]]:
    openai_server, gemini_server = LoopbackServer(OpenAIApp()), LoopbackServer(GeminiApp())
    yield openai_server.url + "/v1", gemini_server.url
    openai_server.close()
    gemini_server.close()


def _new_database(pg_tcp) -> str:  # type: ignore[no-untyped-def]
    name = f"s_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_tcp.url(sslmode="disable"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_tcp.url(name, sslmode="disable")


@pytest.fixture
def secret_env(tmp_path: Path, pg_tcp, llm_servers: tuple[str, str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "OPSCONSOLE_RUNTIME_DIR": str(tmp_path / "runtime"),
        "CLICKHOUSE_PATH": str(tmp_path / "ch"),
        "POSTGRES_URL": _new_database(pg_tcp),
        "OPENAI_API_KEY": OPENAI_CANARY, "OPENAI_BASE_URL": llm_servers[0],
        "GEMINI_API_KEY": GEMINI_CANARY, "GEMINI_BASE_URL": llm_servers[1],
        "COLUMNS": "250",
    }


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPSCONSOLE, *args], env=subprocess_env(**env), cwd=cwd, capture_output=True, text=True, timeout=600)


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


def _runtime_files(runtime: Path) -> list[Path]:
    return [p for p in runtime.rglob("*") if p.is_file() and p.relative_to(runtime).parts[0] not in STORE_DATA]


def test_no_secret_in_any_output_or_runtime_file(tmp_path: Path, secret_env: dict[str, str], pg_tcp) -> None:  # type: ignore[no-untyped-def]
    runtime = Path(secret_env["OPSCONSOLE_RUNTIME_DIR"])
    runs = {
        "pipeline": _run(secret_env, tmp_path, "pipeline", "--source", str(SNAPSHOT), "--limit", "4", "--no-ui",
                         "--log-format", "plain", "--summary-path", str(runtime / "summary.json")),
        "demo": _run(secret_env, tmp_path, "demo", "--scale", "small", "--no-ui", "--log-format", "json"),
        "config": _run(secret_env, tmp_path, "config"),
        "config-json": _run(secret_env, tmp_path, "config", "--json"),
        "doctor": _run(secret_env, tmp_path, "doctor"),
        "gates": _run(secret_env, tmp_path, "gates", "--json"),
        # failures that quote connection strings back at the operator:
        "bad-pg": _run({**secret_env, "POSTGRES_URL": secret_env["POSTGRES_URL"].replace("127.0.0.1", "127.0.0.2")
                        .replace("?sslmode=disable", "?sslmode=require&connect_timeout=2")}, tmp_path, "db", "migrate"),
        "bad-ch": _run({**secret_env, "CLICKHOUSE_URL": f"http://default:{PG_TCP_PASSWORD}@127.0.0.1:1"}, tmp_path, "gates"),
    }
    echo = LoopbackServer(echo_key_401)
    try:  # a provider that quotes the rejected key back: the failure is recorded, the key is not
        # A database of its own: in the shared one the first run's results would be reused.
        runs["pipeline-401"] = _run({**secret_env, "POSTGRES_URL": _new_database(pg_tcp), "OPENAI_BASE_URL": echo.url + "/v1",
                                     "OPSCONSOLE_RUNTIME_DIR": str(runtime.parent / "runtime-401")},
                                    tmp_path, "pipeline", "--source", str(SNAPSHOT), "--limit", "2", "--suite", "openai",
                                    "--no-ui", "--log-format", "plain")
    finally:
        echo.close()
    assert "Incorrect API key provided: ***" in runs["pipeline-401"].stdout + runs["pipeline-401"].stderr
    assert runs["pipeline"].returncode == 0, runs["pipeline"].stderr[-2000:]
    assert runs["demo"].returncode == 0, runs["demo"].stderr[-2000:]
    assert runs["bad-pg"].returncode == 5 and runs["bad-ch"].returncode == 5
    for name, out in runs.items():
        _assert_clean(out.stdout + out.stderr, f"the output of {name}")
        assert "Traceback" not in out.stderr, name

    files = _runtime_files(runtime) + _runtime_files(runtime.parent / "runtime-401")
    names = {p.name for p in files}
    assert "pipeline.console.log" in names and "full-enrichment.console.log" in names
    assert "summary.json" in names and "full-enrichment.state.json" in names
    assert any(p.suffix == ".json" and "debug-dumps" in p.parts for p in files), "the pipeline wrote no dumps"
    for path in files:
        _assert_clean(path.read_text(errors="replace"), str(path))

    # The summary says the LLM suites really ran (so the keys were really used).
    summary = (runtime / "summary.json").read_text()
    assert '"llm_calls": 0' not in summary.split('"suites"')[0]


def test_runtime_files_are_private_to_the_owner(tmp_path: Path, secret_env: dict[str, str]) -> None:
    runtime = Path(secret_env["OPSCONSOLE_RUNTIME_DIR"])
    assert _run(secret_env, tmp_path, "pipeline", "--source", str(SNAPSHOT), "--limit", "3", "--no-ui").returncode == 0
    assert _run(secret_env, tmp_path, "demo", "--scale", "small", "--no-ui").returncode == 0
    files = _runtime_files(runtime)
    assert len(files) >= 5
    for path in files:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(runtime)} is readable by others ({oct(mode)})"
    for directory in [runtime, *(p for p in runtime.rglob("*") if p.is_dir() and p.relative_to(runtime).parts[0] not in STORE_DATA)]:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        assert mode & 0o077 == 0 or directory == runtime, f"{directory} is open to others ({oct(mode)})"
