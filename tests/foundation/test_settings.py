"""Settings precedence (env > .env.local > .env > defaults), runbook names, errors, and `config`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.errors import BadInput
from engine.settings import describe, load_settings
from tests.conftest import OPSCONSOLE, subprocess_env


def test_defaults_match_the_runbooks() -> None:
    s = load_settings()
    assert s.batch_size == 300
    assert s.pipeline_event_batch_size == 4
    assert s.mutation_wait_every == 5
    assert s.postgres_embedded and s.clickhouse_embedded
    assert s.runtime == (Path.cwd() / "runtime").resolve()


def test_precedence_env_over_env_local_over_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("BATCH_SIZE=100\nINGESTION_PAGE_SIZE=50\nENVIRONMENT=from-dotenv\n")
    (clean_env / ".env.local").write_text("BATCH_SIZE=200\nENVIRONMENT=from-local\n")
    monkeypatch.setenv("ENVIRONMENT", "from-env")
    s = load_settings()
    assert s.environment == "from-env"  # environment beats both files
    assert s.batch_size == 200  # .env.local beats .env
    assert s.ingestion_page_size == 50  # .env beats the default
    sources = {r.name: r.source for r in describe(s)}
    assert sources["ENVIRONMENT"] == "environment (ENVIRONMENT)"
    assert sources["BATCH_SIZE"] == ".env.local (BATCH_SIZE)"
    assert sources["INGESTION_PAGE_SIZE"] == ".env (INGESTION_PAGE_SIZE)"
    assert sources["PIPELINE_EVENT_BATCH_SIZE"] == "default"


def test_supabase_and_postgres_url_are_both_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_DB_URL", "postgresql://u:pw1234@db.example:6543/postgres")
    assert not load_settings().postgres_embedded
    monkeypatch.delenv("SUPABASE_DB_URL")
    monkeypatch.setenv("POSTGRES_URL", "postgresql://u:pw1234@localhost/x")
    assert load_settings().postgres_url.get_secret_value().endswith("/x")


def test_clickhouse_host_switches_to_the_server_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_HOST", "ch.internal")
    assert not load_settings().clickhouse_embedded


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("BATCH_SIZE", "zero", "BATCH_SIZE"),
        ("BATCH_SIZE", "0", "BATCH_SIZE"),
        ("INGESTION_FILTERS", "{not json", "INGESTION_FILTERS"),
        ("INGESTION_FILTERS", "[1, 2]", "INGESTION_FILTERS"),
        ("PIPELINE_EVENT_BATCH_SIZE", "-3", "PIPELINE_EVENT_BATCH_SIZE"),
        ("STEP_D_WRITE_STRATEGY", "fastest", "STEP_D_WRITE_STRATEGY"),
    ],
)
def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(BadInput) as err:
        load_settings()
    assert named in str(err.value)


def test_ingestion_filters_parse_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_FILTERS", '{"tag_id": 21, "active": true}')
    assert load_settings().ingestion_filters == {"tag_id": 21, "active": True}


def test_config_command_redacts_every_secret(tmp_path: Path) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-canary-openai-0123456789",
        "GEMINI_API_KEY": "AIzaCanaryGemini0123456789abcdefghij",
        "POSTGRES_URL": "postgresql://ops:Canary-PG-Pass-77@db.example:5432/ops",
        "CLICKHOUSE_PASSWORD": "Canary-CH-Pass-88",
    }
    env = subprocess_env(**secrets, COLUMNS="200")
    for args in (["config"], ["config", "--json"]):
        out = subprocess.run([*OPSCONSOLE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        text = out.stdout + out.stderr
        for value in (*secrets.values(), "Canary-PG-Pass-77"):
            assert value not in text
        assert "OPENAI_API_KEY" in text and "***" in text
    rows = json.loads(out.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["POSTGRES_URL"]["source"] == "environment (POSTGRES_URL)"
    assert by_name["BATCH_SIZE"]["value"] == "300"


def test_bad_setting_is_a_clear_cli_error(tmp_path: Path) -> None:
    env = subprocess_env(BATCH_SIZE="lots")
    out = subprocess.run([*OPSCONSOLE, "config"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 4
    assert "BATCH_SIZE" in out.stderr
    assert "Traceback" not in out.stderr
