"""Daily, incremental enrichment against full recomputes (issue 17), one subprocess per measurement.

    python -m benchmarks.incremental TASK --runtime DIR [options]   # prints one JSON line
    incremental(scale) from benchmarks/__main__.py                  # the report rows

Per scale (the given one and ten times it: seed → 10x, 24.5M trades generated at run time):
* demo data, with the resolutions of conditions covering ~0.5% of the pairs held back (`hold`);
* a full Step D (batch 300, a checkpoint per batch, patch apply) in its own process (`full_d`):
  per-batch cost (checkpoint to checkpoint) and peak RSS; then a full Step E (`stepe`);
* 1% of the pairs changed (`change`): the held resolutions arrive (~0.5%) and late fills (both
  sides) land in ~0.5% more; then an incremental Steps D + E (`incremental`), and the ratio.
At the first scale also: the whole `opsconsole enrich --step D --full` process, from start to
exit, against one set-based statement computing the same P&L (benchmarks.enrichment `limits`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from engine.bus import EventBus
from engine.enrichment.job import EnrichmentJob
from engine.runner import run_job
from engine.settings import Settings, load_settings
from engine.stores.clickhouse import ClickHouse, open_clickhouse

CHANGED_SHARE = 0.01  # of all pairs: half newly resolved, half with late fills
TEN_X = {"small": "medium", "medium": "seed", "seed": "10x"}
HELD = "bench_held_resolutions"


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# --- tasks (each in its own process) ---------------------------------------------------------------
def hold(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Hold back the resolutions of resolved conditions covering ~half the changed share of pairs
    (in hash order, so the choice is spread over the key range like real resolutions)."""
    pairs = int(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw"))
    target = max(1, int(pairs * CHANGED_SHARE / 2))
    ch.command(f"DROP TABLE IF EXISTS $db.{HELD}")
    ch.command(
        f"CREATE TABLE $db.{HELD} ENGINE = MergeTree ORDER BY condition_id AS "
        "SELECT r.condition_id AS condition_id, market_id, payouts, resolved_at, source FROM $db.market_resolutions AS r FINAL "
        "WHERE r.condition_id IN (SELECT condition_id FROM ("
        "  SELECT condition_id, sum(n) OVER (ORDER BY cityHash64(condition_id) ROWS UNBOUNDED PRECEDING) AS running"
        "  FROM (SELECT condition_id, uniqExact(wallet_address) AS n FROM $db.trades_raw"
        "        WHERE condition_id IN (SELECT condition_id FROM $db.market_resolutions) GROUP BY condition_id)"
        ") WHERE running <= {t:UInt64})", {"t": target})
    ch.command(f"ALTER TABLE $db.market_resolutions DELETE WHERE condition_id IN (SELECT condition_id FROM $db.{HELD})",
               settings={"mutations_sync": 2})
    held_pairs = int(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw WHERE condition_id IN "
                               f"(SELECT condition_id FROM $db.{HELD})"))
    return {"pairs": pairs, "held_conditions": int(ch.scalar(f"SELECT count() FROM $db.{HELD}")), "held_pairs": held_pairs}


def change(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """A day's changes: the held resolutions arrive, and late fills (both sides, new trade ids) land
    in about as many other pairs."""
    pairs = int(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw"))
    held_pairs = int(ch.scalar("SELECT uniqExact(wallet_address, condition_id) FROM $db.trades_raw WHERE condition_id IN "
                               f"(SELECT condition_id FROM $db.{HELD})"))
    fills = max(1, (int(pairs * CHANGED_SHARE) - held_pairs) // 2)  # a fill touches two pairs
    ch.command("INSERT INTO $db.market_resolutions (condition_id, market_id, payouts, resolved_at, source, updated_at) "
               f"SELECT condition_id, market_id, payouts, resolved_at, source, now64(3) FROM $db.{HELD}")
    started = time.monotonic()
    ch.command(
        "INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, "
        "shares, usd_value, fee_usd, timestamp, tx_hash, canonical_category, realized_pnl_usd, is_resolved) "
        "SELECT concat(trade_id, {suffix:String}), wallet_address, market_id, condition_id, outcome_index, side, price, shares, "
        "usd_value, fee_usd, timestamp + 86400, tx_hash, canonical_category, NULL, 0 FROM $db.trades_raw "
        "WHERE tx_hash IN (SELECT tx_hash FROM $db.trades_raw WHERE condition_id NOT IN "
        f"(SELECT condition_id FROM $db.{HELD}) GROUP BY tx_hash ORDER BY cityHash64(tx_hash, {{suffix:String}}) LIMIT {{n:UInt64}})",
        {"n": fills, "suffix": args.suffix})
    appended = int(ch.scalar("SELECT count() FROM $db.trades_raw WHERE endsWith(trade_id, {s:String})", {"s": args.suffix}))
    return {"pairs": pairs, "newly_resolved_pairs": held_pairs, "late_fills": fills, "late_trades": appended,
            "append_s": time.monotonic() - started}


def full_d(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """A full Step D from NULL P&L (as benchmarks.enrichment `stepd`), with each batch's cost taken
    from the time between consecutive local checkpoints (the batch loop alone: no freezing, no
    apply), and the process's peak RSS before and after the patch apply."""
    from benchmarks.enrichment import quiesce, reset_pnl
    from engine.enrichment.stepd import APPLYING_PATCHES
    from engine.events import CheckpointSaved, LogLine

    reset_pnl(ch, settings)
    quiesce(ch)
    stamps: list[float] = []
    rss_before_apply: list[float] = []
    job = EnrichmentJob(["D"], full=True, batch_size=args.batch_size, run_gates=False)

    def on_event(event: Any) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local":
            stamps.append(time.monotonic())
        elif isinstance(event, LogLine) and event.message == APPLYING_PATCHES:
            rss_before_apply.append(_peak_rss_mib())

    async def go() -> Any:
        bus = EventBus()
        bus.add_listener(on_event)
        return await run_job(job, settings, bus, handle_signals=False, resources={"ch": ch})

    outcome = anyio.run(go)
    d = job.results.get("D", {})
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    return {"state": outcome.state.value, "seconds": d.get("seconds"), "batches": d.get("batches"),
            "patches_s": d.get("patches_applied_s"), "trades_write_s": d.get("trades_write_s"), "peak_rss_mib": _peak_rss_mib(),
            "peak_rss_batches_mib": rss_before_apply[0] if rss_before_apply else None,
            "batch_ms_median": gaps[len(gaps) // 2] * 1000 if gaps else None,
            "batch_ms_mean": sum(gaps) / len(gaps) * 1000 if gaps else None}


def incremental(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """A plain Steps D + E after the change (incremental by default), as `enrich --step D,E`."""
    job = EnrichmentJob(["D", "E"], batch_size=args.batch_size, run_gates=False)
    started = time.monotonic()
    outcome = anyio.run(lambda: run_job(job, settings, EventBus(), handle_signals=False, resources={"ch": ch}))
    wall = time.monotonic() - started
    d, e = job.results.get("D", {}), job.results.get("E", {})
    return {"state": outcome.state.value, "wall_s": wall, "d_s": d.get("seconds"), "patches_s": d.get("patches_applied_s"),
            "trades_write_s": d.get("trades_write_s"), "e_s": e.get("seconds"), "mode": d.get("mode"), "affected": d.get("affected"), "pairs_total": d.get("pairs_total"),
            "batches": d.get("batches"), "e_mode": e.get("mode"), "wallets_rebuilt": e.get("wallets_rebuilt"),
            "pairs_rebuilt": e.get("pairs_rebuilt"),
            "peak_rss_mib": _peak_rss_mib()}


def profile_updates(ch: ClickHouse, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """What one 300-pair lightweight UPDATE costs at this table size, split in two: `--count` of
    the trades' write over consecutive key ranges of the work list (Step D's per-batch statement
    until its batches wrote pair P&L instead), each timed, beside
    the SELECT of the same new values over the same range (the reading and computing an UPDATE does
    before it writes its patch part), and what the primary index selects for such a range (EXPLAIN
    ESTIMATE: parts, marks, rows). Embedded chDB keeps no query_log, hence the split by hand."""
    from engine.enrichment import sql
    from engine.enrichment.stepd import WorklistReader, freeze_payouts, freeze_worklist
    from engine.enrichment.writes import write_trades

    freeze_payouts(ch)
    freeze_worklist(ch)
    reader = WorklistReader(ch, None)
    parts = ch.query("SELECT countIf(NOT startsWith(name, 'patch-')), countIf(startsWith(name, 'patch-')), sum(marks) "
                     "FROM system.parts WHERE database = {d:String} AND table = 'trades_raw' AND active",
                     {"d": ch.database}).rows[0]
    pnl, resolved = sql.pnl_expressions(ch.database)
    if args.stop_merges:  # is the growth the background merging of patch parts competing for the cores?
        ch.command("SYSTEM STOP MERGES $db.trades_raw")
    cursor = None
    updates, selects, estimates = [], [], []
    for i in range(args.count):
        batch = reader.take(cursor, args.batch_size)
        if batch is None:
            break
        where = sql.batch_range_where(batch.range.after is not None)
        params = batch.range.params()
        t = time.monotonic()
        ch.query(f"SELECT sum(cityHash64(_part_offset, {pnl}, {resolved})) FROM $db.trades_raw WHERE {where}", params)
        selects.append(time.monotonic() - t)
        t = time.monotonic()
        write_trades(ch, "lightweight", batch.range)
        updates.append(time.monotonic() - t)
        if i < 5:
            estimates.append([int(v) for v in ch.query(
                f"SELECT sum(parts), sum(rows), sum(marks) FROM (EXPLAIN ESTIMATE SELECT 1 FROM $db.trades_raw WHERE {where})",
                params).rows[0]])
        cursor = batch.range.last
    if args.stop_merges:
        ch.command("SYSTEM START MERGES $db.trades_raw")
    updates.sort()
    selects.sort()
    return {"trades": int(ch.scalar("SELECT count() FROM $db.trades_raw")), "data_parts": int(parts[0]),
            "patch_parts_before": int(parts[1]), "marks": int(parts[2]), "updates": len(updates),
            "update_ms_median": updates[len(updates) // 2] * 1000 if updates else None,
            "select_ms_median": selects[len(selects) // 2] * 1000 if selects else None,
            "estimate_parts_rows_marks": estimates, "merges_stopped": args.stop_merges}


TASKS = {"profile_updates": profile_updates, "hold": hold, "full_d": full_d, "change": change, "incremental": incremental}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--runtime", required=True, type=Path)
    ap.add_argument("--batch-size", type=int, default=300)
    ap.add_argument("--count", type=int, default=60, help="profile_updates: statements to time")
    ap.add_argument("--suffix", default="-late", help="change: the late fills' trade-id suffix (another day: another suffix)")
    ap.add_argument("--stop-merges", action="store_true", help="profile_updates: with trades_raw's merges stopped")
    args = ap.parse_args()
    settings = load_settings(runtime_dir=args.runtime)
    ch = open_clickhouse(settings)
    print(json.dumps(TASKS[args.task](ch, args, settings)), flush=True)


# --- the driver ------------------------------------------------------------------------------------
def _task(module: str, name: str, runtime: Path, *args: str) -> dict[str, Any]:
    from benchmarks.__main__ import _env

    cmd = [sys.executable, "-m", module, name, "--runtime", str(runtime), *args]
    out = subprocess.run(cmd, cwd=_repo(), env=_env(runtime), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark task {module} {name} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _repo() -> Path:
    return Path(__file__).resolve().parent.parent


def whole_process_step_d(runtime: Path, batch_size: int = 300) -> dict[str, Any]:
    """`opsconsole enrich --step D --full` as the operator runs it (BATCH_SIZE, headless), timed
    from before the process starts to its exit; the job's own figures from its JSON events."""
    from benchmarks.__main__ import _env

    env = {**_env(runtime), "BATCH_SIZE": str(batch_size)}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "console", "enrich", "--step", "D", "--full", "--no-ui", "--log-format", "json"],
                         cwd=_repo(), env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    summary: dict[str, Any] = {}
    for line in out.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "Summary":
            summary = record.get("data", {})
    d = summary.get("D") or {}
    if out.returncode not in (0, 3) or not d:  # 3: the closing gates FAIL until Step E has run
        raise SystemExit(f"enrich --step D exited {out.returncode}:\n{out.stderr[-3000:]}")
    return {"wall_s": wall, "exit": out.returncode, "d_s": d.get("seconds"), "patches_s": d.get("patches_applied_s"),
            "batches": d.get("batches"), "trades_write_s": d.get("trades_write_s"), "strategy": d.get("write_strategy")}


def _one_scale(scale: str, first: bool) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    from benchmarks import scratch

    with scratch(f"opsbench-incr-{scale}-") as runtime:
        return _one_scale_in(runtime, scale, first)


def _one_scale_in(runtime: Path, scale: str, first: bool) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    rows: list[tuple[str, str, str]] = []
    print(f"  [{scale}] {load()}", flush=True)
    prep = _task("benchmarks.enrichment", "prepare", runtime, "--scale", scale)
    held = _task("benchmarks.incremental", "hold", runtime)
    label = f"{scale}, {prep['trades']:,} trades, {prep['pairs']:,} pairs"
    rows.append((f"incremental [{label}]: demo data", f"generated in {prep['seconds']:.1f} s; resolutions of "
                 f"{held['held_conditions']:,} conditions ({held['held_pairs']:,} pairs) held back", ""))
    if first:
        lim = _task("benchmarks.enrichment", "limits", runtime)
        # Step D once so that the whole-process run below is a repeat, as an operator's --full is.
        _task("benchmarks.enrichment", "stepd", runtime, "--batch-size", "300")
        whole = whole_process_step_d(runtime)
        one = lim["pnl_one_statement_s"]
        rows.append((
            f"whole `opsconsole enrich --step D --full` process, BATCH_SIZE=300 [{label}]",
            f"{whole['wall_s']:.1f} s start to exit (exit {whole['exit']}) = **{whole['wall_s'] / one:.1f}× the one-statement "
            f"limit ({one:.2f} s)**; inside: Step D {whole['d_s']:.1f} s ({whole['batches']} batches, then the "
            f"{whole['strategy']} trades' write and its check {whole['trades_write_s'] or 0:.1f} s), patch apply "
            f"{whole['patches_s'] or 0:.1f} s; the rest (start-up, stores, freezing, closing gates) "
            f"{whole['wall_s'] - whole['d_s'] - (whole['patches_s'] or 0):.1f} s",
            "≤ 10×",
        ))
    print(f"  [{scale}] {load()}", flush=True)
    full_d = _task("benchmarks.incremental", "full_d", runtime)
    full_e = _task("benchmarks.enrichment", "stepe", runtime)
    full_total = full_d["seconds"] + (full_d["patches_s"] or 0) + full_e["seconds"]
    per_batch_ms = full_d["batch_ms_median"] or 0.0
    rows.append((f"full Step D + E [{label}]", f"D {full_d['seconds']:.1f} s ({full_d['batches']} batches; **per batch "
                 f"{per_batch_ms:.0f} ms** median, {full_d['batch_ms_mean'] or 0:.0f} ms mean, checkpoint to checkpoint; "
                 f"the trades' write and its check {full_d['trades_write_s'] or 0:.1f} s) "
                 f"+ patch apply {full_d['patches_s'] or 0:.1f} s + E {full_e['seconds']:.1f} s = {full_total:.1f} s", ""))
    rows.append((f"Step D peak RSS, full run [{label}]",
                 f"{full_d['peak_rss_mib']:,.0f} MiB, the trades' write included", "≤ 2,048 MiB at 10x"))
    ch_ = _task("benchmarks.incremental", "change", runtime)
    inc = _task("benchmarks.incremental", "incremental", runtime)
    if inc["state"] != "done" or inc["mode"] != "incremental":
        raise SystemExit(f"the incremental run was not incremental: {inc}")
    inc_total = (inc["d_s"] or 0) + (inc["patches_s"] or 0) + (inc["e_s"] or 0)
    why = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in (inc["affected"] or {}).items() if n)
    rows.append((
        f"1% of pairs changed, incremental Step D + E ÷ full [{label}]",
        f"{inc['pairs_total']:,} pairs affected ({why}; {ch_['late_trades']:,} late trades): D {inc['d_s']:.2f} s "
        f"({inc['batches']} batches; the trades' write and its check {inc['trades_write_s'] or 0:.2f} s) + patch apply "
        f"{inc['patches_s'] or 0:.2f} s + E {inc['e_s']:.2f} s "
        f"({inc.get('pairs_rebuilt') or 0:,} positions of {inc['wallets_rebuilt']:,} wallets rebuilt) = {inc_total:.2f} s → **{inc_total / full_total:.3f}** of the full "
        f"{full_total:.1f} s; incremental process peak RSS {inc['peak_rss_mib']:,.0f} MiB",
        "≤ 0.05 at 10x",
    ))
    print(f"  [{scale}] {load()}", flush=True)
    return rows, {"per_batch_ms": per_batch_ms}


def incremental_rows(scale: str) -> list[tuple[str, str, str]]:
    rows, small = _one_scale(scale, first=True)
    bigger = TEN_X.get(scale)
    if bigger is None:
        return rows
    more, large = _one_scale(bigger, first=False)
    rows += more
    rows.append((f"per-batch cost growth ({scale} → {bigger})",
                 f"{small['per_batch_ms']:.0f} → {large['per_batch_ms']:.0f} ms per 300-pair batch = "
                 f"{large['per_batch_ms'] / small['per_batch_ms']:.2f}×", "independent of the table's size"))
    return rows


if __name__ == "__main__":
    main()
