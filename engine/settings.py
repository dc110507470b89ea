"""Settings: environment variables, then `.env.local`, then `.env`, then defaults.

Names follow the runbooks (`SUPABASE_DB_URL`, `CLICKHOUSE_HOST`, `BATCH_SIZE`, ...). Secrets are
`SecretStr` and registered with the redactor as soon as settings load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from engine.errors import BadInput
from engine.files import decode_utf8, read_bounded
from engine.redact import redact, register_secret, url_secrets

ENV_FILES = (".env", ".env.local")  # later files win


# Step D's live settings (also changeable while the job runs): the defaults and bounds are defined
# here once; `Settings` reads them from the environment and the enrichment job's live model
# (`EnrichmentLive`) uses the same types, so a default cannot drift between the two.
BatchSize = Annotated[int, Field(ge=1, le=100_000)]
MutationWaitEvery = Annotated[int, Field(ge=1, le=10_000)]
DEFAULT_BATCH_SIZE = 300
DEFAULT_MUTATION_WAIT_EVERY = 5


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILES,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    environment: str = Field("development", validation_alias=_alias("ENVIRONMENT"))
    runtime_dir: Path = Field(Path("runtime"), validation_alias=_alias("OPSCONSOLE_RUNTIME_DIR"))

    # Postgres: a URL means that server; none means the embedded server under runtime/postgres.
    postgres_url: SecretStr | None = Field(None, validation_alias=_alias("SUPABASE_DB_URL", "POSTGRES_URL"))
    postgres_pooler: Literal["auto", "session", "transaction"] = Field(
        "auto", validation_alias=_alias("POSTGRES_POOLER_MODE")
    )

    # ClickHouse: a URL or host means clickhouse-connect; none means embedded chDB.
    clickhouse_url: SecretStr | None = Field(None, validation_alias=_alias("CLICKHOUSE_URL"))
    clickhouse_host: str | None = Field(None, validation_alias=_alias("CLICKHOUSE_HOST"))
    clickhouse_port: int | None = Field(None, validation_alias=_alias("CLICKHOUSE_PORT"))
    clickhouse_user: str = Field("default", validation_alias=_alias("CLICKHOUSE_USER"))
    clickhouse_password: SecretStr | None = Field(None, validation_alias=_alias("CLICKHOUSE_PASSWORD"))
    clickhouse_database: str = Field("opsconsole", validation_alias=_alias("CLICKHOUSE_DATABASE"))
    clickhouse_secure: bool = Field(False, validation_alias=_alias("CLICKHOUSE_SECURE"))
    # Self-hosted cluster: DDL is sent ON CLUSTER to Replicated* tables; mutation waits read every replica.
    clickhouse_cluster: str | None = Field(None, validation_alias=_alias("CLICKHOUSE_CLUSTER"))
    # Embedded chDB data directory (default runtime/clickhouse). chDB holds one path per process.
    clickhouse_path: Path | None = Field(None, validation_alias=_alias("CLICKHOUSE_PATH"))
    # How much lower than ours the embedded chDB's threads run (Linux nice), so the job's event
    # loop and attached consoles stay responsive during Step D; 0 runs them at our priority.
    clickhouse_nice: int = Field(10, ge=0, le=19, validation_alias=_alias("CLICKHOUSE_NICE"))

    # Forecast pipeline
    openai_api_key: SecretStr | None = Field(None, validation_alias=_alias("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_alias("OPENAI_BASE_URL"))
    gemini_api_key: SecretStr | None = Field(None, validation_alias=_alias("GEMINI_API_KEY", "GOOGLE_API_KEY"))
    gemini_base_url: str | None = Field(None, validation_alias=_alias("GEMINI_BASE_URL"))
    polymarket_base_url: str = Field(
        "https://gamma-api.polymarket.com", validation_alias=_alias("POLYMARKET_BASE_URL")
    )
    # Polymarket's public data-api (trades), read by `enrich --step T`.
    data_api_base_url: str = Field("https://data-api.polymarket.com", validation_alias=_alias("POLYMARKET_DATA_API_URL"))
    # NoDecode: our validator parses the JSON so a bad value gets a message naming the variable.
    ingestion_filters: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict, validation_alias=_alias("INGESTION_FILTERS"))
    ingestion_page_size: int = Field(100, ge=1, le=500, validation_alias=_alias("INGESTION_PAGE_SIZE"))
    pipeline_event_batch_size: int = Field(4, ge=1, le=256, validation_alias=_alias("PIPELINE_EVENT_BATCH_SIZE"))
    pipeline_debug_dump_dir: Path | None = Field(None, validation_alias=_alias("PIPELINE_DEBUG_DUMP_DIR"))
    # `pipeline --worker`: how long a claim on an event lasts without renewal (renewed every third of it).
    pipeline_worker_lease_s: float = Field(60.0, ge=1, le=3600, validation_alias=_alias("PIPELINE_WORKER_LEASE_S"))

    # Enrichment Step D
    batch_size: BatchSize = Field(DEFAULT_BATCH_SIZE, validation_alias=_alias("BATCH_SIZE"))
    mutation_wait_every: MutationWaitEvery = Field(DEFAULT_MUTATION_WAIT_EVERY, validation_alias=_alias("MUTATION_WAIT_EVERY"))
    mutation_wait_timeout_s: float = Field(600.0, gt=0, validation_alias=_alias("MUTATION_WAIT_TIMEOUT"))
    write_strategy: Literal["auto", "lightweight", "classic"] = Field(
        "auto", validation_alias=_alias("STEP_D_WRITE_STRATEGY")
    )
    # After a lightweight Step D: write the patch parts into the columns (one ALTER ... APPLY PATCHES),
    # so later reads skip patch application. Off: ClickHouse's own merges do it, later.
    apply_patches: bool = Field(True, validation_alias=_alias("STEP_D_APPLY_PATCHES"))

    # Enrichment Step A: the runbook's file of market (or condition) ids to (re)fetch even when present.
    focus_file: Path | None = Field(None, validation_alias=_alias("FOCUS_FILE"))

    @field_validator("focus_file", mode="before")
    @classmethod
    def _blank_focus_file(cls, value: Any) -> Any:
        # FOCUS_FILE= (set but empty) means no focus file, as it did when Step A read the variable itself.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("ingestion_filters", mode="before")
    @classmethod
    def _filters_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"INGESTION_FILTERS must be a JSON object: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ValueError("INGESTION_FILTERS must be a JSON object")
        return value

    # --- derived paths -------------------------------------------------------------------------
    @property
    def runtime(self) -> Path:
        return self.runtime_dir.expanduser().resolve()

    @property
    def postgres_dir(self) -> Path:
        return self.runtime / "postgres"

    @property
    def clickhouse_dir(self) -> Path:
        return (self.clickhouse_path or self.runtime / "clickhouse").expanduser().resolve()

    @property
    def debug_dump_dir(self) -> Path:
        return (self.pipeline_debug_dump_dir or self.runtime / "debug-dumps").expanduser().resolve()

    @property
    def postgres_embedded(self) -> bool:
        return self.postgres_url is None

    @property
    def clickhouse_embedded(self) -> bool:
        return self.clickhouse_url is None and not self.clickhouse_host

    def secrets(self) -> list[str]:
        values = [self.postgres_url, self.clickhouse_url, self.clickhouse_password, self.openai_api_key, self.gemini_api_key]
        out = [v.get_secret_value() for v in values if v is not None]
        # The password inside a DSN is a secret on its own too (a driver may print it, or a piece of
        # it when it is not percent-encoded): read from the raw URL, not what urlsplit can parse.
        for url in (self.postgres_url, self.clickhouse_url):
            if url is not None:
                out.extend(url_secrets(url.get_secret_value()))
        return out


def check_env_files() -> None:
    """Each `.env` file present must be a regular file of bounded size holding UTF-8 text: the dotenv
    reader would otherwise read a /dev/zero symlink forever or fail with a UnicodeDecodeError."""
    for name in ENV_FILES:
        path = Path(name)
        if path.exists() or path.is_symlink():
            decode_utf8(read_bounded(path, "settings file"), path)


def load_settings(**overrides: Any) -> Settings:
    """Load settings; invalid values become a `BadInput` naming the variable, not a traceback."""
    check_env_files()
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  {loc.upper()}: {err['msg']}")
        raise BadInput("invalid settings:\n" + redact("\n".join(lines))) from None
    except SettingsError as exc:  # a value the settings source could not even parse
        raise BadInput(f"invalid settings: {redact(str(exc))}") from None
    for secret in settings.secrets():
        register_secret(secret)
    return settings


# --- where each value came from (for `opsconsole config`) ------------------------------------------
@dataclass(frozen=True)
class SettingRow:
    name: str
    value: str
    source: str


SECRET_FIELDS = {"postgres_url", "clickhouse_url", "clickhouse_password", "openai_api_key", "gemini_api_key"}


def describe(settings: Settings) -> list[SettingRow]:
    file_values: list[tuple[str, dict[str, str | None]]] = []
    for name in reversed(ENV_FILES):  # highest priority first
        if Path(name).is_file():
            file_values.append((name, dotenv_values(name)))
    rows: list[SettingRow] = []
    for field_name, field in Settings.model_fields.items():
        aliases = list(field.validation_alias.choices) if isinstance(field.validation_alias, AliasChoices) else [field_name]
        source = "default"
        shown_name = str(aliases[0])
        for alias in aliases:
            if str(alias) in os.environ:
                source, shown_name = f"environment ({alias})", str(alias)
                break
        else:
            for file_name, values in file_values:
                hit = next((a for a in aliases if str(a) in values), None)
                if hit is not None:
                    source, shown_name = f"{file_name} ({hit})", str(hit)
                    break
        value = getattr(settings, field_name)
        if field_name in SECRET_FIELDS:
            text = "(not set)" if value is None else "***"
        elif isinstance(value, dict):
            text = json.dumps(value)
        else:
            text = "(not set)" if value is None else str(value)
        rows.append(SettingRow(shown_name, redact(text), source))
    rows.append(SettingRow("(postgres)", "embedded: " + str(settings.postgres_dir) if settings.postgres_embedded else "server (URL)", "derived"))
    rows.append(SettingRow("(clickhouse)", "embedded chDB: " + str(settings.clickhouse_dir) if settings.clickhouse_embedded else "server (clickhouse-connect)", "derived"))
    return rows
