"""`opsconsole doctor`: is everything the jobs need present and working? Never prints a secret."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import anyio

from engine.errors import OpsError
from engine.redact import redact
from engine.settings import Settings
from engine.stores.clickhouse import aopen_clickhouse
from engine.stores.postgres import Postgres


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    status: str  # OK, WARN, FAIL
    detail: str


def _runtime_checks(settings: Settings) -> list[Check]:
    path = settings.runtime
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        return [Check("runtime", "directory", "OK", f"{path} is writable")]
    except OSError as exc:
        return [Check("runtime", "directory", "FAIL", f"{path}: {exc.strerror}")]


async def _postgres_checks(settings: Settings) -> list[Check]:
    out: list[Check] = []
    pg = Postgres(settings, retry_seconds=5)
    try:
        await pg.open(timeout=20)
    except OpsError as exc:
        return [Check("postgres", "reachable", "FAIL", str(exc))]
    try:
        kind = f"embedded, data in {settings.postgres_dir}" if pg.embedded else "server from POSTGRES_URL/SUPABASE_DB_URL"
        out.append(Check("postgres", "reachable", "OK", f"PostgreSQL {await pg.server_version()} ({kind})"))
        try:
            await pg.execute("CREATE TEMP TABLE _doctor_probe (x int); INSERT INTO _doctor_probe VALUES (1); DROP TABLE _doctor_probe")
            out.append(Check("postgres", "writable", "OK", "created, wrote and dropped a temporary table"))
        except Exception as exc:
            out.append(Check("postgres", "writable", "FAIL", redact(str(exc))))
        applied, pending = await pg.migration_status()
        if pending:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
            out.append(Check("postgres", "migrations", "WARN", f"{len(pending)} pending ({names}); run `opsconsole db migrate`"))
        else:
            out.append(Check("postgres", "migrations", "OK", f"{len(applied)} applied, none pending"))
    finally:
        await pg.close()
    return out


async def _clickhouse_checks(settings: Settings) -> list[Check]:
    out: list[Check] = []
    try:
        ch = await aopen_clickhouse(settings)
    except OpsError as exc:
        return [Check("clickhouse", "reachable", "FAIL", str(exc))]
    try:
        version = await anyio.to_thread.run_sync(ch.version)
        kind = f"embedded chDB, data in {settings.clickhouse_dir}" if ch.backend == "chdb" else "server via clickhouse-connect"
        out.append(Check("clickhouse", "reachable", "OK", f"ClickHouse {version} ({kind}), database {ch.database}"))
        try:
            await ch.acommand("CREATE TABLE IF NOT EXISTS $db._doctor_probe (x UInt8) ENGINE = Memory")
            await ch.acommand("INSERT INTO $db._doctor_probe VALUES (1)")
            await ch.acommand("DROP TABLE IF EXISTS $db._doctor_probe")
            out.append(Check("clickhouse", "writable", "OK", "created, wrote and dropped a table"))
        except Exception as exc:
            out.append(Check("clickhouse", "writable", "FAIL", redact(str(exc))))
        lw = await anyio.to_thread.run_sync(ch.supports_lightweight_update)
        out.append(
            Check("clickhouse", "lightweight UPDATE", "OK" if lw else "WARN",
                  "supported: incremental Step D runs write the trades' P&L as patch parts" if lw
                  else "not supported: Step D always writes with a classic ALTER TABLE … UPDATE")
        )
    finally:
        await anyio.to_thread.run_sync(ch.close)
    return out


def _key_checks(settings: Settings) -> list[Check]:
    out = []
    for name, value, suite in (
        ("OPENAI_API_KEY", settings.openai_api_key, "openai"),
        ("GEMINI_API_KEY", settings.gemini_api_key, "gemini"),
    ):
        if value is not None:
            out.append(Check("keys", name, "OK", f"present; the {suite} suite can run"))
        else:
            out.append(Check("keys", name, "WARN", f"not set; the {suite} suite will be skipped"))
    return out


async def run_doctor(settings: Settings) -> list[Check]:
    checks = _runtime_checks(settings)
    checks += await _postgres_checks(settings)
    checks += await _clickhouse_checks(settings)
    checks += _key_checks(settings)
    return checks
