"""ClickHouse behind one interface: embedded chDB (no URL) or a server through clickhouse-connect.

The same SQL runs on both. Values are always bound as server-side parameters (`{name:Type}`),
never formatted into the statement. Calls are blocking; async callers use the `a*` wrappers,
which run them in worker threads so the event loop never waits on the database.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import stat
import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import anyio

from engine.errors import BadInput, StoreUnavailable
from engine.locks import ProcessLock
from engine.redact import redact
from engine.settings import Settings
from engine.stores import chdb_thread

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def ident(name: str) -> str:
    """Validate an identifier (database, table) that must appear in SQL text; quoted with backticks."""
    if not _IDENT.match(name):
        raise BadInput(f"invalid ClickHouse identifier {name!r}: use letters, digits and underscores")
    return f"`{name}`"


class ClickHouseError(Exception):
    """A statement failed on the server/engine. `code` is ClickHouse's error code when known."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(redact(message))
        self.code = code


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


_CODE = re.compile(r"Code: (\d+)")


_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")
_INT = re.compile(r"^U?Int(8|16|32|64|128|256)$")
Converter = Callable[[Any], Any]


def _nullsafe(fn: Converter) -> Converter:
    return lambda v: None if v is None else fn(v)


@functools.lru_cache(maxsize=512)
def _converter(type_name: str) -> Converter | None:
    """JSON values from chDB → the Python types clickhouse-connect returns for the same column.

    Decided once per column type (not per value: a 20,000-row work-list chunk spent most of its
    time in regex matching); None means the JSON value is already right (strings, booleans).
    """
    t = type_name
    while m := _WRAPPER.match(t):
        t = m[2]
    if t.startswith("Decimal"):
        return _nullsafe(lambda v: Decimal(str(v)))
    if _INT.match(t):
        return _nullsafe(int)
    if t.startswith("Float"):
        return _nullsafe(float)
    if t.startswith("DateTime"):
        return _nullsafe(lambda v: datetime.fromisoformat(str(v)) if str(v) else None)
    if t == "Date" or t == "Date32":
        return _nullsafe(lambda v: date.fromisoformat(str(v)))
    if t.startswith("Array("):
        inner = _converter(t[len("Array("):-1])
        if inner is None:
            return None
        return _nullsafe(lambda v: [inner(x) for x in v])
    return None


def _convert_rows(data: list[list[Any]], types: list[str]) -> list[tuple[Any, ...]]:
    converters = [_converter(t) for t in types]
    if not any(converters):
        return [tuple(row) for row in data]
    pairs = [(i, fn) for i, fn in enumerate(converters) if fn is not None]
    out = []
    for row in data:
        for i, fn in pairs:
            row[i] = fn(row[i])
        out.append(tuple(row))
    return out


class ClickHouse:
    """Shared interface. Subclasses implement `_query`, `_command`, `_insert`."""

    backend = "?"
    # CLICKHOUSE_CLUSTER (server backend only): DDL goes ON CLUSTER to Replicated tables, mutation
    # waits read every replica. See engine/stores/clickhouse_cluster.py.
    cluster: str | None = None

    def __init__(self, database: str) -> None:
        ident(database)
        self.database = database

    # --- blocking API --------------------------------------------------------------------------
    # Statements name tables as `$db.table`: the database is a validated identifier substituted
    # here, because chDB's "current database" is shared by every user of the process.
    def sql(self, text: str) -> str:
        text = text.replace("$db.", f"{ident(self.database)}.")
        if self.cluster:
            from engine.stores.clickhouse_cluster import replica_wide_mutations

            text = replica_wide_mutations(text, self.cluster)
        return text

    def query(self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> QueryResult:
        return self._query(self.sql(sql), params or {}, settings or {})

    def command(self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
        text = self.sql(sql)
        if self.cluster:
            from engine.stores.clickhouse_cluster import mutation_settings, on_cluster

            text = on_cluster(text, self.cluster)
            settings = {**mutation_settings(text), **(settings or {})}
        self._command(text, params or {}, settings or {})

    def insert_rows(self, table: str, columns: list[str], rows: list[tuple[Any, ...]] | list[list[Any]]) -> None:
        if rows:
            ident(table)
            for c in columns:
                ident(c)
            self._insert(table, columns, rows)

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return self.query(sql, params).scalar()

    def version(self) -> str:
        return str(self.scalar("SELECT version()"))

    def supports_lightweight_update(self) -> bool:
        """Patch-part `UPDATE` (ClickHouse 25.7+): probed on a scratch table, not guessed from the version."""
        table = "$db._ops_probe_lightweight_update"
        try:
            self.command(f"DROP TABLE IF EXISTS {table}")
            self.command(
                f"CREATE TABLE {table} (k UInt8, v UInt8) ENGINE = MergeTree ORDER BY k "
                "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1"
            )
            self.command(f"INSERT INTO {table} VALUES (1, 1)")
            self.command(f"UPDATE {table} SET v = 2 WHERE k = 1")
            return bool(self.scalar(f"SELECT v FROM {table} WHERE k = 1") == 2)
        except ClickHouseError:
            return False
        finally:
            try:
                self.command(f"DROP TABLE IF EXISTS {table}")
            except ClickHouseError:
                pass

    def close(self) -> None:
        pass

    # --- async wrappers: blocking drivers stay off the event loop ----------------------------
    async def aquery(self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> QueryResult:
        return await anyio.to_thread.run_sync(lambda: self.query(sql, params, settings), abandon_on_cancel=True)

    async def acommand(self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
        await anyio.to_thread.run_sync(lambda: self.command(sql, params, settings), abandon_on_cancel=True)

    async def ascalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.aquery(sql, params)).scalar()

    async def ainsert_rows(self, table: str, columns: list[str], rows: list[Any]) -> None:
        await anyio.to_thread.run_sync(lambda: self.insert_rows(table, columns, rows), abandon_on_cancel=True)

    # --- subclass hooks ------------------------------------------------------------------------
    def _query(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> QueryResult:
        raise NotImplementedError

    def _command(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> None:
        raise NotImplementedError

    def _insert(self, table: str, columns: list[str], rows: list[Any]) -> None:
        raise NotImplementedError


def _json_each_row(columns: list[str], rows: list[Any]) -> bytes:
    return "\n".join(json.dumps(dict(zip(columns, row, strict=False)), default=str) for row in rows).encode()


# --- chDB --------------------------------------------------------------------------------------
_chdb_guard = threading.Lock()
_chdb_open: dict[str, Any] = {}  # path -> (session, lock); chDB allows one data path per process
_chdb_statement_lock = threading.Lock()  # one path per process, so one lock serves it
_umask_before_chdb: int | None = None


def _make_store_private(path: Path) -> None:
    """runtime/clickhouse holds every trade: owner-only, whatever chDB or an older version made.

    The directory's 0700 is what protects the data (nothing below it can be reached by others);
    on top, the process umask is 077 while chDB is open, because chDB creates its files itself —
    new parts at every insert and merge, long after open — so a chmod after opening could never
    keep up. Files an older version left readable are narrowed once here."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):  # a file vanishing under a merge is fine
                st = os.lstat(os.path.join(root, name))
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                    os.chmod(os.path.join(root, name), stat.S_IMODE(st.st_mode) & ~0o077)


def _settings_prefix(settings: dict[str, Any]) -> str:
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        ident(key)
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float)):
            value = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{key} = {value}")
    return " SETTINGS " + ", ".join(parts)


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _chdb_param(value: Any) -> Any:
    # chDB reads a scalar parameter in TSV-escaped form (a raw backslash is an error), and an
    # array parameter as a ClickHouse literal (quoted, backslash-escaped elements).
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (Decimal, datetime, date)):
        return str(value)
    if isinstance(value, str):
        return value.translate(_TSV_ESCAPES)
    return value


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{text}'"


def _restore_umask() -> None:
    global _umask_before_chdb
    if _umask_before_chdb is not None:
        os.umask(_umask_before_chdb)
        _umask_before_chdb = None


class ChdbClickHouse(ClickHouse):
    backend = "chdb"

    def __init__(self, path: Path, database: str, nice: int = chdb_thread.DEFAULT_NICE) -> None:
        super().__init__(database)
        self.path = path.expanduser().resolve()
        self._session = self._open_session(self.path, nice)
        self._command(f"CREATE DATABASE IF NOT EXISTS {ident(database)}", {}, {})

    @staticmethod
    def _open_session(path: Path, nice: int) -> Any:
        key = str(path)
        with _chdb_guard:
            if key in _chdb_open:
                return _chdb_open[key][0]
            if _chdb_open:
                other = next(iter(_chdb_open))
                raise StoreUnavailable(f"chDB already has {other} open in this process; it cannot open {key} too")
            if not path.parent.is_dir():  # runtime/ when nothing made it yet: never the umask's 0755
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = ProcessLock(
                path.parent / f"{path.name}.lock",
                f"the embedded ClickHouse data directory {path}",
                hint="chDB lets one process use a data directory at a time. Wait for that process, "
                "stop it gracefully (kill -TERM {pid}), or set CLICKHOUSE_URL to use a ClickHouse server",
            )
            lock.acquire()

            def start() -> Any:
                # Imported on the chDB thread: the engine threads chDB starts at import inherit its priority.
                from chdb import session as chdb_session

                return chdb_session.Session(str(path))  # type: ignore[no-untyped-call]

            global _umask_before_chdb
            try:
                _make_store_private(path)
                if _umask_before_chdb is None:
                    _umask_before_chdb = os.umask(0o077)
                sess = chdb_thread.call(start, nice)
            except Exception as exc:
                _restore_umask()
                lock.release()
                raise StoreUnavailable(
                    f"could not open the embedded ClickHouse in {path}: {exc}",
                    hint="another program may hold it; check `fuser -v " + str(path / "status") + "`",
                ) from None
            _chdb_open[key] = (sess, lock)
            return sess

    @staticmethod
    def is_open(path: Path) -> bool:
        """Whether this process holds the chDB session (and its lock) for `path`."""
        with _chdb_guard:
            return str(path.expanduser().resolve()) in _chdb_open

    @staticmethod
    def close_all(timeout: float | None = None) -> None:
        with _chdb_guard:
            for sess, lock in _chdb_open.values():
                try:
                    chdb_thread.call(sess.close, timeout=timeout)
                finally:
                    lock.release()
            _chdb_open.clear()
            _restore_umask()

    def _run(self, sql: str, params: dict[str, Any], fmt: str) -> Any:
        # One statement at a time per session: chDB keeps bound parameters on the connection, so
        # two threads querying at once (a gate refresh during a Step D batch) mix them up
        # ("Substitution `x` is not set").
        try:
            bound = {k: _chdb_param(v) for k, v in params.items()} or None
            with _chdb_statement_lock:
                return chdb_thread.call(lambda: self._session.query(sql, fmt, params=bound))
        except Exception as exc:
            text = str(exc)
            m = _CODE.search(text)
            raise ClickHouseError(text, int(m[1]) if m else None) from None

    def _query(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> QueryResult:
        all_settings = {
            "output_format_json_quote_decimals": 1,
            "output_format_json_quote_64bit_integers": 1,
            "output_format_json_quote_denormals": 1,
            **settings,
        }
        res = self._run(f"{sql}{_settings_prefix(all_settings)}", {**params}, "JSONCompact")
        text = res.bytes().decode() if hasattr(res, "bytes") else str(res)
        if not text.strip():
            return QueryResult([], [], [])
        doc = json.loads(text)
        names = [m["name"] for m in doc["meta"]]
        types = [m["type"] for m in doc["meta"]]
        rows = _convert_rows(doc["data"], types)
        return QueryResult(names, types, rows)

    def _command(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> None:
        self._run(f"{sql}{_settings_prefix(settings)}", params, "CSV")

    def _insert(self, table: str, columns: list[str], rows: list[Any]) -> None:
        # Rows go as JSONEachRow text in one statement: typed by the table, no string-built SQL.
        cols = ", ".join(ident(c) for c in columns)
        body = _json_each_row(columns, rows).decode()
        self._run(f"INSERT INTO {ident(self.database)}.{ident(table)} ({cols}) FORMAT JSONEachRow\n{body}", {}, "CSV")


def _close_at_exit() -> None:
    # A session still open when the interpreter finalises can crash the exit (SIGSEGV, seen in
    # about one run in five with the session on its own thread): close it first, on its thread.
    # Bounded, so a statement still running never holds the exit for long.
    with contextlib.suppress(Exception):
        ChdbClickHouse.close_all(timeout=10)


atexit.register(_close_at_exit)


# --- server through clickhouse-connect -------------------------------------------------------------
class HttpClickHouse(ClickHouse):
    backend = "http"

    def __init__(self, settings: Settings, database: str) -> None:
        super().__init__(database)
        import clickhouse_connect

        kwargs: dict[str, Any] = {
            "username": settings.clickhouse_user,
            "password": settings.clickhouse_password.get_secret_value() if settings.clickhouse_password else "",
            "secure": settings.clickhouse_secure,
            "database": "default",
            "autogenerate_session_id": False,
            "connect_timeout": 10,
            "send_receive_timeout": 600,
        }
        if settings.clickhouse_url is not None:
            kwargs["dsn"] = settings.clickhouse_url.get_secret_value()
        else:
            kwargs["host"] = settings.clickhouse_host
            if settings.clickhouse_port:
                kwargs["port"] = settings.clickhouse_port
        self.cluster = settings.clickhouse_cluster or None
        create_db = f"CREATE DATABASE IF NOT EXISTS {ident(database)}"
        if self.cluster:
            from engine.stores.clickhouse_cluster import on_cluster

            create_db = on_cluster(create_db, self.cluster)  # validates the name before connecting
        try:
            self.client = clickhouse_connect.get_client(**kwargs)
            self.client.command(create_db)
            self.client.database = database
        except Exception as exc:
            raise StoreUnavailable(
                f"cannot connect to ClickHouse server: {redact(str(exc))}",
                hint="check CLICKHOUSE_URL or CLICKHOUSE_HOST/PORT/USER/PASSWORD, or unset them to use embedded chDB",
            ) from None
        self.url = self.client.url if hasattr(self.client, "url") else ""

    def _wrap(self, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            text = str(exc)
            m = _CODE.search(text)
            raise ClickHouseError(text, int(m[1]) if m else None) from None

    def _query(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> QueryResult:
        res = self._wrap(lambda: self.client.query(sql, parameters=params or None, settings=settings or None))
        types = [t.name for t in res.column_types]
        return QueryResult(list(res.column_names), types, [tuple(r) for r in res.result_rows])

    def _command(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> None:
        self._wrap(lambda: self.client.command(sql, parameters=params or None, settings=settings or None))

    def _insert(self, table: str, columns: list[str], rows: list[Any]) -> None:
        # The same JSONEachRow body as the chDB backend: the server types the values, so both
        # backends accept the same Python values (str timestamps, Decimal, None).
        body = _json_each_row(columns, rows)
        self._wrap(lambda: self.client.raw_insert(f"{ident(self.database)}.{ident(table)}", columns, body, fmt="JSONEachRow"))

    def close(self) -> None:
        self.client.close()


def open_clickhouse(settings: Settings, database: str | None = None) -> ClickHouse:
    """Blocking; call from a worker thread in async code (see `aopen_clickhouse`)."""
    db = database or settings.clickhouse_database
    if settings.clickhouse_embedded:
        if settings.clickhouse_cluster:
            raise BadInput("CLICKHOUSE_CLUSTER needs a ClickHouse server (CLICKHOUSE_URL or CLICKHOUSE_HOST); "
                           "the embedded chDB is one node")
        return ChdbClickHouse(settings.clickhouse_dir, db, settings.clickhouse_nice)
    return HttpClickHouse(settings, db)


async def aopen_clickhouse(settings: Settings, database: str | None = None) -> ClickHouse:
    return await anyio.to_thread.run_sync(lambda: open_clickhouse(settings, database))
