"""`opsconsole data load trades FILE.csv` against chDB's own parse of the same file.

    uv run python -m benchmarks.load [--scale seed] [--times 1,10]

The demo's trades at a scale (seed: ~2.45M, the runbook's) are generated in ClickHouse and
written as a trades CSV in our format into a temp directory (never committed); `--times 10`
repeats every trade ten times with distinct ids (24.5M rows at seed scale). For each file:

* chDB's parse: a fresh process runs `SELECT count(), sum(shares), sum(usd_value) FROM file(…)`;
* the load: a fresh `opsconsole data load trades FILE` into an empty store, its wall time and peak
  RSS (the child's own `ru_maxrss`, from wait4).

Prints one JSON line per file: rows, seconds, rows/s, peak RSS and the ratio load / parse, with the
targets (ratio ≤ 3, RSS ≤ 1 GiB) beside them. Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COLUMNS = "trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, shares, usd_value, fee_usd, timestamp, tx_hash"

_EXPORT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engine.enrichment.demo import generate_demo
    from engine.stores.clickhouse import ChdbClickHouse
    scale, times, out, store = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ch = ChdbClickHouse(Path(store), "opsconsole")
    generate_demo(ch, scale)
    suffix = "if(k = 0, trade_id, concat(trade_id, '-', toString(k)))"
    cols = "{cols}".replace("trade_id,", suffix + " AS trade_id,", 1)
    ch.command(f"INSERT INTO FUNCTION file('{{out}}', 'CSVWithNames') SELECT {{cols}} FROM opsconsole.trades_raw "
               f"ARRAY JOIN range({{times}}) AS k", settings={{"output_format_decimal_trailing_zeros": 0}})
    print(ch.scalar("SELECT count() FROM opsconsole.trades_raw") * times)
    ch.close()
""").format(cols=COLUMNS)

_PARSE = textwrap.dedent("""
    import sys, time
    import chdb
    started = time.monotonic()
    res = chdb.query(f"SELECT count(), sum(shares), sum(usd_value) FROM file('{sys.argv[1]}', 'CSVWithNames')", "CSV")
    print(time.monotonic() - started, str(res).strip().split(",")[0])
""")


def _env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "POSTGRES_", "SUPABASE_"))}
    env.update(OPSCONSOLE_RUNTIME_DIR=str(runtime), CLICKHOUSE_PATH=str(runtime / "clickhouse"), PYTHONPATH=str(REPO))
    return env


def _run_measured(cmd: list[str], env: dict[str, str], logs: Path) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of that child alone, stdout). Output goes to files and the
    child is reaped with wait4, which reports its own peak RSS."""
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{err_path.read_text()[-3000:]}")
    return wall, usage.ru_maxrss * 1024, out_path.read_text()


def measure(scale: str, times: int, work: Path) -> dict[str, Any]:
    csv_path = work / f"trades-{scale}-x{times}.csv"
    store = work / f"export-{scale}"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _EXPORT, scale, str(times), str(csv_path), str(store)],
                         cwd=REPO, env=_env(work / "export-runtime"), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"generating the file failed:\n{out.stderr[-3000:]}")
    rows = int(out.stdout.strip().splitlines()[-1])
    generated = time.monotonic() - started
    shutil.rmtree(store, ignore_errors=True)
    size = csv_path.stat().st_size

    parse = subprocess.run([sys.executable, "-c", _PARSE, str(csv_path)], cwd=REPO, capture_output=True, text=True)
    if parse.returncode != 0:
        raise SystemExit(f"chDB's parse failed:\n{parse.stderr[-3000:]}")
    parse_s = float(parse.stdout.split()[0])

    runtime = work / f"runtime-{scale}-x{times}"
    wall, rss, stdout = _run_measured([sys.executable, "-m", "console", "data", "load", "trades", str(csv_path)],
                                      _env(runtime), work / f"load-{scale}-x{times}")
    shutil.rmtree(runtime, ignore_errors=True)
    csv_path.unlink()
    return {
        "file": f"{scale} x{times}", "rows": rows, "bytes": size, "generated_s": round(generated, 1),
        "chdb_parse_s": round(parse_s, 2), "load_s": round(wall, 2), "rows_per_s": round(rows / wall),
        "peak_rss_mib": round(rss / 2**20), "ratio_to_parse": round(wall / parse_s, 1),
        "targets": "ratio <= 3, peak RSS <= 1024 MiB", "report": stdout.strip().splitlines()[:1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="seed", help="demo scale of the trades: small, medium or seed")
    ap.add_argument("--times", default="1,10", help="file sizes as multiples of the scale (default 1,10)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opsbench-load-"))
    try:
        for times in (int(t) for t in args.times.split(",")):
            print(json.dumps(measure(args.scale, times, work)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
