"""Helpers for the load durability tests: generated trade files, the CLI in a subprocess, and a
look at the store from another process (chDB holds one data directory per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import OPSCONSOLE, REPO, subprocess_env

HEADER = "trade_id,wallet_address,market_id,condition_id,outcome_index,side,price,shares,usd_value,fee_usd,timestamp,tx_hash\n"


def write_trades(path: Path, rows: int, *, start: int = 0) -> Path:
    """`rows` valid trades over 500 wallets and 200 markets (generated at test time, never committed)."""
    with path.open("w") as fh:
        fh.write(HEADER)
        for i in range(start, start + rows):
            m = i % 200
            price = (i % 97 + 1) / 100
            shares = i % 50 + 1
            fh.write(f"t{i},0xw{i % 500},m{m},0xc{m},{i % 2},{'BUY' if i % 3 else 'SELL'},{price},{shares},"
                     f"{price * shares:.6f},0,2025-01-0{i % 9 + 1} 00:00:00,0xh{i}\n")
    return path


def csv_to_jsonl(csv_path: Path) -> Path:
    """The same trades as JSON lines (read by the Python reader; CSV goes through ClickHouse)."""
    import csv as _csv

    out = csv_path.with_suffix(".jsonl")
    with csv_path.open(newline="") as src, out.open("w") as dst:
        for row in _csv.DictReader(src):
            dst.write(json.dumps(row) + "\n")
    return out


def load_env(root: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(root / "runtime"), CLICKHOUSE_PATH=str(root / "ch"), **extra)


def load_cmd(path: Path, *more: str) -> list[str]:
    return [*OPSCONSOLE, "data", "load", "trades", str(path), *more]


_INSPECT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from engine.stores.clickhouse import ChdbClickHouse
    ch = ChdbClickHouse(Path(sys.argv[1]), "opsconsole")
    exists = ch.scalar("SELECT count() FROM system.tables WHERE database = 'opsconsole' AND name = 'trades_raw'")
    count = ch.scalar("SELECT count() FROM opsconsole.trades_raw") if exists else 0
    distinct = ch.scalar("SELECT uniqExact(trade_id) FROM opsconsole.trades_raw") if exists else 0
    staging = [r[0] for r in ch.query(
        "SELECT name FROM system.tables WHERE database = 'opsconsole' AND startsWith(name, '_load_')").rows]
    print(json.dumps({"count": int(count), "distinct": int(distinct), "staging": staging}))
    ch.close()
""")


def inspect(root: Path) -> dict[str, object]:
    """trades_raw's row count, distinct ids and the staging tables present, read by a fresh process."""
    out = subprocess.run([sys.executable, "-c", _INSPECT, str(root / "ch")], env=subprocess_env(),
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def metadata_dir(root: Path) -> Path:
    """Where chDB keeps one `<table>.sql` per table of our database: a table appearing there is
    how a test sees, from outside, which phase a load is in."""
    return root / "ch" / "metadata" / "opsconsole"
