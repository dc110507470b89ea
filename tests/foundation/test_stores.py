"""Both stores, for real: embedded PostgreSQL and chDB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from engine.errors import BadInput, LockHeld, StoreUnavailable
from engine.settings import Settings, load_settings
from engine.stores.clickhouse import ClickHouse, ident
from engine.stores.postgres import Postgres, is_transaction_pooler, load_migrations
from tests.conftest import OPSCONSOLE, REPO, subprocess_env, with_settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_migrations_apply_once_and_are_recorded(settings: Settings) -> None:
    async with Postgres(settings) as pg:
        applied, pending = await pg.migration_status()
        assert applied == [] and len(pending) == len(load_migrations())
        first = await pg.migrate()
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert await pg.migrate() == []  # second run: nothing
        rows = await pg.fetch_all("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
        assert await pg.fetch_one("SELECT to_regclass('ops_job_checkpoints') IS NOT NULL AS ok") == {"ok": True}


@pytest.mark.anyio
async def test_concurrent_migrations_apply_each_once(settings: Settings) -> None:
    results: list[int] = []

    async def one() -> None:
        async with Postgres(settings) as pg:
            results.append(len(await pg.migrate()))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert sorted(results) == [0, 0, len(load_migrations())]


@pytest.mark.anyio
async def test_postgres_round_trip(settings: Settings) -> None:
    async with Postgres(settings) as pg:
        await pg.migrate()
        await pg.execute(
            "INSERT INTO ops_job_checkpoints (job, step, batch_idx, pairs_done, cursor) VALUES (%s, %s, %s, %s, %s)",
            ("full-enrichment", "D", 3, 900, '{"wallet": "0xabc\'; DROP TABLE x; --"}'),
        )
        row = await pg.fetch_one("SELECT batch_idx, pairs_done, cursor FROM ops_job_checkpoints WHERE job = %s", ("full-enrichment",))
        assert row == {"batch_idx": 3, "pairs_done": 900, "cursor": {"wallet": "0xabc'; DROP TABLE x; --"}}


@pytest.mark.anyio
async def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    s = load_settings(runtime_dir=tmp_path, postgres_url="postgresql://ops:Sekret-9@127.0.0.1:1/nope?connect_timeout=1")
    with pytest.raises(StoreUnavailable) as err:
        await Postgres(s, retry_seconds=1).open(timeout=2)
    assert "cannot connect to Postgres" in str(err.value)
    assert "Sekret-9" not in str(err.value)


def test_transaction_pooler_detection() -> None:
    assert is_transaction_pooler("postgresql://u:p@aws-0-eu.pooler.supabase.com:6543/postgres", "auto")
    assert is_transaction_pooler("postgresql://u:p@h:5432/db?pgbouncer=true", "auto")
    assert not is_transaction_pooler("postgresql://u:p@h:5432/db", "auto")
    assert is_transaction_pooler("postgresql://u:p@h:5432/db", "transaction")


def test_clickhouse_round_trip_with_bound_parameters(ch_backend: ClickHouse) -> None:
    ch = ch_backend
    ch.command(
        "CREATE TABLE $db.rt (wallet String, pnl Nullable(Decimal(38, 12)), n UInt64) ENGINE = MergeTree ORDER BY wallet"
    )
    hostile = "0xabc'); DROP TABLE rt; --\\"
    ch.insert_rows("rt", ["wallet", "pnl", "n"], [(hostile, Decimal("-1.250000000001"), 2**63), ("plain", None, 1)])
    rows = ch.query("SELECT wallet, pnl, n FROM $db.rt WHERE wallet = {w:String}", {"w": hostile}).rows
    assert rows == [(hostile, Decimal("-1.250000000001"), 2**63)]
    assert ch.scalar("SELECT count() FROM $db.rt WHERE pnl IS NULL") == 1
    assert ch.scalar("SELECT count() FROM $db.rt WHERE wallet IN {ws:Array(String)}", {"ws": [hostile, "plain"]}) == 2


def test_identifiers_are_validated() -> None:
    assert ident("trades_raw") == "`trades_raw`"
    for bad in ("x; DROP", "a-b", "", "1abc", "`x`"):
        with pytest.raises(BadInput):
            ident(bad)


def test_lightweight_update_is_detected(ch_backend: ClickHouse) -> None:
    assert ch_backend.supports_lightweight_update() is True


HOLDER = """
import sys, time
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
open_clickhouse(load_settings(clickhouse_path=sys.argv[1]))
print("ready", flush=True)
time.sleep(60)
"""


def test_chdb_directory_held_by_another_process_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=subprocess_env(), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        out = subprocess.run(
            [*OPSCONSOLE, "doctor"], env=subprocess_env(CLICKHOUSE_PATH=str(path), COLUMNS="250"),
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        text = out.stdout + out.stderr
        assert out.returncode == 1
        assert f"in use by another process (pid {holder.pid}" in text
        assert "kill -TERM" in text and "CLICKHOUSE_URL" in text
        assert "Traceback" not in text
    finally:
        holder.kill()
        holder.wait()


def test_chdb_lock_message_in_process(tmp_path: Path) -> None:
    from engine.locks import ProcessLock

    path = tmp_path / "x.lock"
    with ProcessLock(path, "thing"):
        with pytest.raises(LockHeld) as err:
            ProcessLock(path, "thing").acquire()
        assert str(err.value).startswith("thing is in use by another process (pid ")
    ProcessLock(path, "thing").acquire()  # released: free again


def test_doctor_shows_real_stores(tmp_path: Path) -> None:
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), COLUMNS="250")
    out = subprocess.run([*OPSCONSOLE, "doctor", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    checks = {(c["area"], c["name"]): c for c in json.loads(out.stdout)}
    assert checks[("postgres", "reachable")]["detail"].startswith("PostgreSQL 18")
    assert checks[("clickhouse", "reachable")]["detail"].startswith("ClickHouse 2")
    assert checks[("clickhouse", "lightweight UPDATE")]["status"] == "OK"
    assert checks[("postgres", "migrations")]["status"] == "WARN"  # fresh: migrations pending
    assert checks[("keys", "OPENAI_API_KEY")]["status"] == "WARN"
    migrate = subprocess.run([*OPSCONSOLE, "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0 and "applied 0001_ops_job_checkpoints" in migrate.stdout
    again = subprocess.run([*OPSCONSOLE, "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "nothing to apply" in again.stdout


AWKWARD = ["", "a\\b", "x\\", "o'k", 'q"x', "tab\there", "nl\nx", "cr\rx", "{w:String}", "$db.t", "ü€𝄞", "\\'", "a,b]", "NULL"]


def test_awkward_strings_survive_scalar_and_array_parameters(ch_backend: ClickHouse) -> None:
    ch = ch_backend
    for value in AWKWARD:
        assert ch.scalar("SELECT {v:String}", {"v": value}) == value, repr(value)
    got = ch.query("SELECT {vs:Array(String)} AS vs", {"vs": AWKWARD}).rows[0][0]
    assert got == AWKWARD


def test_pending_and_failing_mutations_are_visible_on_both_backends(ch_backend: ClickHouse) -> None:
    ch = ch_backend
    ch.command("CREATE TABLE $db.m (k UInt32, v UInt32) ENGINE = MergeTree ORDER BY k")
    ch.insert_rows("m", ["k", "v"], [(i, i) for i in range(10)])
    ch.command("ALTER TABLE $db.m UPDATE v = throwIf(k = 3, 'boom') WHERE 1", settings={"mutations_sync": 0})
    row = None
    for _ in range(200):
        row = ch.query(
            "SELECT is_done, latest_fail_reason FROM system.mutations WHERE database = {d:String} AND table = 'm'",
            {"d": ch.database},
        ).dicts()[0]
        if row["latest_fail_reason"]:
            break

        time.sleep(0.02)
    assert row is not None and row["is_done"] == 0 and "boom" in row["latest_fail_reason"]


def test_wrong_server_password_is_a_clear_error(settings: Settings, clickhouse_http: dict[str, object]) -> None:
    from engine.stores.clickhouse import open_clickhouse

    if "clickhouse_url" in clickhouse_http:
        pytest.skip("real server: credentials come from CLICKHOUSE_TEST_URL")
    bad = with_settings(settings, **{**clickhouse_http, "clickhouse_password": "Wrong-Password-123"})
    with pytest.raises(StoreUnavailable) as err:
        open_clickhouse(bad)
    assert "cannot connect to ClickHouse server" in str(err.value)
    assert "Wrong-Password-123" not in str(err.value)


def test_concurrent_parameterised_queries_do_not_mix_parameters(ch_backend: ClickHouse) -> None:
    """A gate refresh running while a Step D batch runs: each statement keeps its own parameters."""
    from concurrent.futures import ThreadPoolExecutor

    ch = ch_backend

    def one(i: int) -> tuple[int, str]:
        sql = "SELECT {a:UInt32}, {b:String}" if i % 2 else "SELECT {c:UInt32}, {d:String}"
        params = {"a": i, "b": f"s{i}"} if i % 2 else {"c": i, "d": f"s{i}"}
        return ch.query(sql, params).rows[0]  # type: ignore[return-value]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [(i, f"s{i}") for i in range(200)]


PRIORITIES = """
import glob, json, os, sys, threading
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
ch = open_clickhouse(load_settings(clickhouse_path=sys.argv[1]))
ch.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
ch.command("INSERT INTO t SELECT number FROM numbers(2000000)")
ch.scalar("SELECT sum(x) FROM t GROUP BY x % 1000 ORDER BY 1 LIMIT 1")
me = threading.get_native_id()
nice = {}
for task in glob.glob(f"/proc/{os.getpid()}/task/*"):
    fields = open(task + "/stat").read().rsplit(")", 1)[1].split()
    nice[int(task.rsplit("/", 1)[1])] = int(fields[16])
print(json.dumps({"main": nice.pop(me), "others": sorted(nice.values())}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread priorities are read from Linux /proc")
@pytest.mark.parametrize(("setting", "expected"), [(None, 10), ("0", 0), ("5", 5)])
def test_chdb_engine_threads_run_below_the_jobs_own(tmp_path: Path, setting: str | None, expected: int) -> None:
    # The job's event loop (the main thread here) answers consoles during Step D: chDB's query,
    # merge and mutation threads must yield a CPU to it (CLICKHOUSE_NICE, default 10).
    extra = {"CLICKHOUSE_NICE": setting} if setting is not None else {}
    out = subprocess.run([sys.executable, "-c", PRIORITIES, str(tmp_path / "ch")], env=subprocess_env(**extra),
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    base = seen["main"]
    # chDB starts a dozen threads of its own; one MemoryWorker sets itself to -20 when it may.
    engine_threads = [n for n in seen["others"] if n > -20]
    assert len(engine_threads) >= 8
    assert all(n == min(19, base + expected) for n in engine_threads), seen
