"""Postgres: an embedded server under runtime/postgres when no URL is set, else the URL's server.

Everything goes through an async psycopg pool. `run()` retries a whole unit of work (a function of
one connection, inside one transaction) on connection-level errors, so a transient drop of the
server costs a retry, not the run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import anyio
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from engine.errors import StoreUnavailable
from engine.redact import redact, register_secret
from engine.settings import Settings

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations" / "postgres"
_MIGRATION_LOCK_KEY = 0x0A5C0501
# The pool logs every failed reconnect at WARNING on stderr; retries are reported by the jobs.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # advisory lock id for migrations: concurrent runners apply once

# Connection-level failures worth a retry; data errors (constraint, syntax) are not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


def start_embedded(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL server; returns its URI. Blocking: run in a thread.

    The server is password-protected and reachable only through an owner-only socket directory
    (see engine/stores/pg_embedded.py for why the package's own bootstrap is not used)."""
    from engine.stores import pg_embedded

    try:
        uri, password = pg_embedded.start(pgdata)
    except (pg_embedded.EmbeddedPostgresError, OSError) as exc:  # initdb/pg_ctl failures: point at the server log
        raise StoreUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {redact(str(exc))}",
            hint=f"see {pgdata / 'log'}; set POSTGRES_URL to use another server",
        ) from None
    register_secret(password)
    return uri


def is_transaction_pooler(url: str, mode: str) -> bool:
    """Supabase's transaction pooler (port 6543, or pgbouncer=true) cannot keep prepared statements."""
    if mode != "auto":
        return mode == "transaction"
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        return parts.port == 6543 or query.get("pgbouncer", "").lower() == "true"
    except ValueError:
        return False


def _clean_url(url: str) -> str:
    # `pgbouncer=true` is a Prisma-ism Supabase shows in its UI; libpq rejects unknown parameters.
    return re.sub(r"([?&])pgbouncer=[^&]*&?", r"\1", url).rstrip("?&")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"(\d+)_(.+)\.sql$", path.name)
        if match:
            out.append(Migration(int(match[1]), match[2], path.read_text()))
    return out


class Postgres:
    def __init__(self, settings: Settings, *, retry_seconds: float = 30.0) -> None:
        self.settings = settings
        self.retry_seconds = retry_seconds
        self.pool: AsyncConnectionPool | None = None
        self.url: str = ""

    @property
    def embedded(self) -> bool:
        return self.settings.postgres_embedded

    @property
    def where(self) -> str:
        return f"embedded ({self.settings.postgres_dir})" if self.embedded else "server"

    async def open(self, *, min_size: int = 1, max_size: int = 8, timeout: float = 15.0) -> Postgres:
        if self.settings.postgres_url is None:
            self.url = await anyio.to_thread.run_sync(start_embedded, self.settings.postgres_dir)
        else:
            self.url = _clean_url(self.settings.postgres_url.get_secret_value())
        kwargs: dict[str, Any] = {"autocommit": True}
        if is_transaction_pooler(self.settings.postgres_url.get_secret_value() if self.settings.postgres_url else "", self.settings.postgres_pooler):
            kwargs["prepare_threshold"] = None  # no server-side prepared statements behind a pooler
        # One direct attempt first: the pool would only say "initialization incomplete", while the
        # operator needs the server's own reason (bad password, no TLS, unknown database...).
        try:
            probe = await psycopg.AsyncConnection.connect(self.url, connect_timeout=max(1, int(timeout)), **kwargs)
            await probe.close()
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to Postgres ({self.where}): {redact(str(exc)).strip() or type(exc).__name__}",
                hint="check SUPABASE_DB_URL / POSTGRES_URL, or unset both to use the embedded server",
            ) from None
        self.pool = AsyncConnectionPool(
            self.url, min_size=min_size, max_size=max_size, kwargs=kwargs, open=False,
            reconnect_timeout=self.retry_seconds, name="opsconsole",
        )
        try:
            await self.pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            await self.pool.close()
            self.pool = None
            raise StoreUnavailable(
                f"cannot connect to Postgres ({self.where}): {redact(str(exc)) or type(exc).__name__}",
                hint="check SUPABASE_DB_URL / POSTGRES_URL, or unset both to use the embedded server",
            ) from None
        return self

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def __aenter__(self) -> Postgres:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- work --------------------------------------------------------------------------------
    async def run(self, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *, transaction: bool = True) -> T:
        """Run `fn(conn)` in one transaction; retried with backoff on connection-level errors."""
        assert self.pool is not None, "Postgres.open() first"
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self.retry_seconds),
            reraise=True,
        ):
            with attempt:
                async with self.pool.connection() as conn:
                    if transaction:
                        async with conn.transaction():
                            return await fn(conn)
                    return await fn(conn)
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: Any = None) -> int:
        """One statement, atomic on its own (autocommit): one round trip instead of BEGIN/…/COMMIT's
        three, which matters for the Step D mirror's write after every batch."""
        async def go(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(sql, params)
            return cur.rowcount

        return await self.run(go, transaction=False)

    async def fetch_all(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async def go(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()

        return await self.run(go, transaction=False)

    async def fetch_one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    # --- migrations ----------------------------------------------------------------------------
    async def migration_status(self) -> tuple[list[int], list[Migration]]:
        """(applied versions, pending migrations)."""
        rows = await self.fetch_all(
            "SELECT version FROM schema_migrations ORDER BY version"
            if await self._has_migrations_table()
            else "SELECT NULL::int AS version WHERE false"
        )
        applied = [r["version"] for r in rows]
        pending = [m for m in load_migrations() if m.version not in applied]
        return applied, pending

    async def _has_migrations_table(self) -> bool:
        row = await self.fetch_one("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        return bool(row and row["present"])

    async def migrate(self) -> list[Migration]:
        """Apply pending migrations, each in its own transaction, once across concurrent runners."""
        applied_now: list[Migration] = []

        async def go(conn: psycopg.AsyncConnection[Any]) -> None:
            applied_now.clear()  # a retried attempt starts over
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in await cur.fetchall()}
            for migration in load_migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)

        await self.run(go)
        return applied_now

    async def server_version(self) -> str:
        row = await self.fetch_one("SHOW server_version")
        return str(row["server_version"]) if row else "?"
