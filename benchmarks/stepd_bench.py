"""Step D against its yardstick: the same P&L computed by one set-based statement.

`python -m benchmarks.stepd_bench [--scale seed] [--batch-size 300]` generates demo data in the
configured ClickHouse database (replacing its enrichment tables!), times one `CREATE TABLE … AS
SELECT` computing every trade's P&L, then a full Step D, and prints both and their ratio.
Use a scratch runtime: OPSCONSOLE_RUNTIME_DIR=/tmp/bench-rt.
"""

from __future__ import annotations

import argparse
import time

import anyio

from engine.enrichment import sql
from engine.enrichment.demo import generate_demo
from engine.enrichment.stepd import freeze_payouts
from engine.stores.clickhouse import ClickHouse, open_clickhouse


def one_statement_seconds(ch: ClickHouse) -> float:
    freeze_payouts(ch)
    ch.command(sql.YARDSTICK_DROP)
    started = time.monotonic()
    ch.command(sql.one_statement_pnl_sql(ch.database))
    elapsed = time.monotonic() - started
    ch.command(sql.YARDSTICK_DROP)
    return elapsed


def main() -> None:
    from console.headless import run_headless
    from engine.enrichment.job import EnrichmentJob
    from engine.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="seed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--write-strategy", default="auto")
    args = parser.parse_args()
    settings = load_settings()
    ch = open_clickhouse(settings)
    report = generate_demo(ch, args.scale, args.seed)
    print(report.line())
    yardstick = min(one_statement_seconds(ch) for _ in range(3))
    job = EnrichmentJob(["D"], batch_size=args.batch_size, write_strategy=args.write_strategy, run_gates=False)
    outcome = anyio.run(lambda: run_headless(job, settings, log_format="plain", resources={"ch": ch}))
    d = job.results.get("D", {})
    print(f"one-statement P&L over {report.trades:,} trades: {yardstick:.2f}s")
    print(f"Step D ({d.get('write_strategy')}, batch {args.batch_size}, {d.get('batches')} batches): "
          f"{d.get('seconds', 0):.2f}s = {d.get('seconds', 0) / yardstick:.1f}x the one-statement time "
          f"({outcome.state.value})")


if __name__ == "__main__":
    main()
