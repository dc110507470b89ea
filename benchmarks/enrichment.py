"""Enrichment measurements, one per subprocess (isolated chDB path and peak memory).

    python -m benchmarks.enrichment TASK --runtime DIR [options]   # prints one JSON line

Tasks: prepare (demo data), limits (one-statement P&L and Step E), stepd (a Step D run, optionally
stopped after N batches), stepe.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import anyio

from engine.bus import EventBus
from engine.control import Control
from engine.enrichment import sql
from benchmarks.stepd_bench import one_statement_seconds
from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.gates import compute_gates
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.stepd import APPLYING_PATCHES, freeze_payouts
from engine.events import CheckpointSaved, LogLine, MutationStatus
from engine.runner import run_job
from engine.settings import Settings, load_settings
from engine.stores.clickhouse import ClickHouse, open_clickhouse


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    report = generate_demo(ch, args.scale, args.seed)
    return {"seconds": time.monotonic() - started, "trades": report.trades, "pairs": report.pairs,
            "wallets": report.wallets, "markets": report.markets}


def _after_quiet(ch: ClickHouse, fn: Any) -> float:
    quiesce(ch)
    return float(fn(ch))


def limits(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    freeze_payouts(ch)
    pnl = min(_after_quiet(ch, one_statement_seconds) for _ in range(3))
    # Step E's own limit: the one INSERT … SELECT that computes every outcome row.
    times = []
    for _ in range(3):
        ch.command(sql.OUTCOMES_DROP_BUILD)
        ch.command(sql.OUTCOMES_CREATE_BUILD)
        t = time.monotonic()
        ch.command(sql.OUTCOMES_FILL)
        times.append(time.monotonic() - t)
    ch.command(sql.OUTCOMES_DROP_BUILD)
    return {"pnl_one_statement_s": pnl, "stepe_one_statement_s": min(times)}


def mutations_submitted(ch: ClickHouse) -> int:
    """Mutations ever created on trades_raw (done or not): the difference across a run is what it submitted."""
    return int(ch.scalar(
        "SELECT count() FROM system.mutations WHERE database = {d:String} AND table = 'trades_raw'",
        {"d": ch.database},
    ))


def reset_pnl(ch: ClickHouse, settings: Settings) -> None:
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1",
               settings={"mutations_sync": 2})
    state_path(settings.runtime).unlink(missing_ok=True)
    quiesce(ch)


def quiesce(ch: ClickHouse, limit_s: float = 120.0) -> float:
    """Wait until no merge runs in our database (two quiet polls in a row), so every timed run starts
    from the same state instead of sharing the cores with the previous run's leftover merges."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - started < limit_s:
        busy = int(ch.scalar("SELECT count() FROM system.merges WHERE database = {d:String}", {"d": ch.database}))
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(0.2)
    return time.monotonic() - started


def stepd(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if not args.resume:
        reset_pnl(ch, settings)
    # Peak pending comes from Step D's own mutation polls (every `mutation_wait_every` batches and at
    # the end), not from a sampler of our own: a sampler shares the chDB session with the batch loop
    # and would add its queries to the time being measured.
    submitted_before = mutations_submitted(ch)
    peak = [0]
    rss_before_apply: list[float | None] = [None]
    job = EnrichmentJob(["D"], resume=args.resume, batch_size=args.batch_size,
                        write_strategy=args.strategy, run_gates=False)

    async def go() -> Any:
        bus = EventBus()
        control = Control(job.name, bus, job.live_settings())
        sub = bus.subscribe()

        def on_event(event: Any) -> None:
            if isinstance(event, MutationStatus):
                peak[0] = max(peak[0], event.pending)
            elif isinstance(event, LogLine) and event.message == APPLYING_PATCHES:
                rss_before_apply[0] = _peak_rss_mib()  # the high-water mark of the batch work alone

        # A listener, not a subscription: mutation statuses coalesce in a subscriber's unread queue.
        bus.add_listener(on_event)

        async def stop_after_batches() -> None:
            seen = 0
            async for event in sub:
                if isinstance(event, CheckpointSaved) and event.where == "local":
                    seen += 1
                    if args.max_batches and seen >= args.max_batches:
                        control.stop("benchmark batch limit")
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_after_batches)
            outcome = await run_job(job, settings, bus, control, handle_signals=False, resources={"ch": ch})
            tg.cancel_scope.cancel()
        return outcome

    outcome = anyio.run(go)
    peak_rss = _peak_rss_mib()  # Step D's own, before the gates below read anything
    d = job.results.get("D", {})
    gates_after = None
    if args.time_gates and outcome.state.value == "done":
        # The first reads after Step D (Step E and the gates read trades_raw the same way).
        t = time.monotonic()
        compute_gates(ch)
        gates_after = time.monotonic() - t
    return {
        "patches_s": d.get("patches_applied_s"), "gates_after_s": gates_after, "trades_write_s": d.get("trades_write_s"),
        "state": outcome.state.value, "seconds": d.get("seconds"), "batches": d.get("batches"),
        "pairs_done": d.get("pairs_done"), "pairs_total": d.get("pairs_total"), "rows": d.get("rows_written"),
        "strategy": d.get("write_strategy"), "mutations_submitted": mutations_submitted(ch) - submitted_before,
        "peak_pending_mutations": peak[0], "peak_rss_mib": peak_rss,
        "peak_rss_batches_mib": rss_before_apply[0],
    }


def stepe(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    job = EnrichmentJob(["E"], force=True, run_gates=False)
    outcome = anyio.run(lambda: run_job(job, settings, EventBus(), handle_signals=False, resources={"ch": ch}))
    return {"state": outcome.state.value, "seconds": job.results.get("E", {}).get("seconds")}


TASKS = {"prepare": prepare, "limits": limits, "stepd": stepd, "stepe": stepe}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--runtime", required=True, type=Path)
    ap.add_argument("--scale", default="seed")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=300)
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--max-batches", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--time-gates", action="store_true", help="stepd: time the gates right after the run")
    ap.add_argument("--no-apply-patches", action="store_true", help="stepd: STEP_D_APPLY_PATCHES=false")
    args = ap.parse_args()
    settings = load_settings(runtime_dir=args.runtime, apply_patches=not args.no_apply_patches)
    ch = open_clickhouse(settings)
    result = TASKS[args.task](ch, args, settings)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
