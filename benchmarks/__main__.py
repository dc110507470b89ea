"""Run the benchmarks and print figures and ratios.

    uv run python -m benchmarks                   # seed scale (~2.45M trades): several minutes
    uv run python -m benchmarks --scale small     # a quick smoke run
    uv run python -m benchmarks --write benchmarks/RESULTS.md

Figures are measurements, never pass/fail: targets are printed beside them for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import scratch
from benchmarks.machine import machine_line

REPO = Path(__file__).resolve().parent.parent


def _env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "POSTGRES_", "SUPABASE_"))}
    env["OPSCONSOLE_RUNTIME_DIR"] = str(runtime)
    env["PYTHONPATH"] = str(REPO)
    return env


def task(name: str, runtime: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.enrichment", name, "--runtime", str(runtime), *args]
    out = subprocess.run(cmd, cwd=REPO, env=_env(runtime), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark task {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def resume_latency(runtime: Path) -> tuple[float, float]:
    """Seconds from starting `opsconsole enrich --step D --resume` to its first batch written:
    (whole process including Python start, job running → first batch)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "enrich", "--step", "D", "--resume", "--no-ui", "--log-format", "json"],
        cwd=REPO, env=_env(runtime), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    first = None
    wall0 = time.time() - (time.monotonic() - started)
    running_at = None
    for line in proc.stdout:
        record = json.loads(line)
        if record.get("type") == "StateChanged" and record.get("state") == "running" and running_at is None:
            running_at = record["ts"]
        if record.get("type") == "CheckpointSaved" and record.get("where") == "local":
            first = record["ts"] - wall0
            job_side = record["ts"] - (running_at or wall0)
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    if first is None:
        raise SystemExit("resumed Step D wrote no batch")
    return first, job_side


def enrichment(scale: str, repeat: int = 3) -> list[tuple[str, str, str]]:
    with scratch("opsbench-") as runtime:
        return _enrichment(runtime, scale, repeat)


def _enrichment(runtime: Path, scale: str, repeat: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    prep = task("prepare", runtime, "--scale", scale)
    rows.append(("demo data", f"{prep['trades']:,} trades, {prep['pairs']:,} pairs, {prep['wallets']:,} wallets, "
                 f"{prep['markets']:,} markets in {prep['seconds']:.1f} s", "generated in seconds"))
    lim = task("limits", runtime)
    one = lim["pnl_one_statement_s"]
    rows.append(("P&L, one statement (limit)", f"{one:.2f} s", ""))

    # Several full runs (each from NULL P&L once merges settled, in a fresh process): single runs vary
    # by ±15% on 2 cores with background merges. Best of N, as for the limit; the median beside it.
    runs = sorted((task("stepd", runtime, "--strategy", "auto", "--batch-size", "300", "--time-gates")
                   for _ in range(repeat)), key=lambda r: r["seconds"])
    best, median = runs[0], runs[len(runs) // 2]
    spread = ", ".join(f"{r['seconds']:.1f}" for r in runs)
    batches_s = best["seconds"] - (best["trades_write_s"] or 0)
    rows.append((
        f"Step D, batch 300, both checkpoints ({best['strategy']} trades' write, the default)",
        f"best of {len(runs)} {best['seconds']:.1f} s = **{best['seconds'] / one:.1f}× limit**: {best['batches']} batches "
        f"{batches_s:.1f} s ({batches_s / best['batches'] * 1000:.0f} ms per batch) + the trades' write and its check "
        f"{best['trades_write_s'] or 0:.2f} s; median {median['seconds']:.1f} s = {median['seconds'] / one:.1f}× (runs {spread} s); "
        f"{best['mutations_submitted']} mutation(s) submitted, peak pending (at Step D's polls) {best['peak_pending_mutations']}; "
        f"the gates right after take {best['gates_after_s']:.2f} s",
        "≤ 10× (old system ≈ 25,000×)",
    ))
    # The other strategy: a patch-part UPDATE, then applying the patches (`STEP_D_APPLY_PATCHES`);
    # the apply is not part of `seconds` (the work the checkpoint describes), so it is shown beside.
    light = task("stepd", runtime, "--strategy", "lightweight", "--batch-size", "300", "--time-gates")
    unapplied = task("stepd", runtime, "--strategy", "lightweight", "--batch-size", "300", "--time-gates", "--no-apply-patches")
    with_apply = light["seconds"] + (light["patches_s"] or 0)
    rows.append((
        "Step D, batch 300, lightweight trades' write (`STEP_D_WRITE_STRATEGY=lightweight`), then its patch apply",
        f"{light['seconds']:.1f} s (the write {light['trades_write_s'] or 0:.2f} s) + apply {light['patches_s'] or 0:.1f} s = "
        f"{with_apply:.1f} s = {with_apply / one:.1f}× limit; the gates right after take {light['gates_after_s']:.2f} s "
        f"(one run without the apply: {unapplied['gates_after_s']:.2f} s)",
        "",
    ))
    rows.append(("Step D peak memory (process RSS)",
                 f"{max(r['peak_rss_mib'] for r in runs):,.0f} MiB (default strategy); {light['peak_rss_mib']:,.0f} MiB "
                 f"lightweight with the patch apply, {light['peak_rss_batches_mib'] or 0:,.0f} MiB before it", "≤ 2,048 MiB"))

    # Stop a run after 5 batches (small data: smaller batches, so work remains to resume).
    stop_batch = str(min(300, max(1, prep["pairs"] // 10)))
    task("stepd", runtime, "--strategy", "auto", "--batch-size", stop_batch, "--max-batches", "5")
    whole, job_side = resume_latency(runtime)
    rows.append(("resume: start → first batch written",
                 f"{whole:.2f} s from process start ({job_side:.2f} s from the job running: stores, fingerprint, first batch)",
                 "≤ 2 s"))

    e = task("stepe", runtime)
    rows.append(("Step E (build aside + swap)", f"{e['seconds']:.2f} s = {e['seconds'] / lim['stepe_one_statement_s']:.1f}× "
                 f"its one-statement limit ({lim['stepe_one_statement_s']:.2f} s)", "≤ 3× (old system 30–60 min)"))
    return rows


def _script(module: str, *args: str, minutes: int = 20) -> str:
    try:
        out = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=_env(Path(tempfile.mkdtemp())),
                             capture_output=True, text=True, timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{module} did not finish within {minutes} minutes") from None
    if out.returncode != 0:
        raise SystemExit(f"{module} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def console(scale: str) -> list[tuple[str, str, str]]:
    return [
        ("console: key press → PAUSING in the header, during Step D (Pilot)", _script("benchmarks.console_pause", "8"), "≤ 100 ms"),
        ("console: log pane with 200,000 lines", _script("benchmarks.console_log", "200000"), "stays responsive"),
        ("console: Step D in the TUI vs headless", _script("benchmarks.console_ratio", scale), "ratio ≤ 1.1"),
    ]


def attach(scale: str, repeat: int) -> list[tuple[str, str, str]]:
    """Consoles attached to a job in another process (benchmarks/attach.py): one JSON line of rows."""
    # Nine Step D runs at the given scale, each after a P&L reset, and the consoles it starts.
    doc = json.loads(_script("benchmarks.attach", "--scale", scale, "--repeat", str(repeat), minutes=60))
    return [(f"attach ({doc['scale']}): {a}", b, c) for a, b, c in doc["rows"]]


def load_rows(scale: str) -> list[tuple[str, str, str]]:
    """`data load trades` of a CSV at the scale and at 10x, against chDB's own parse of the file."""
    cmd = [sys.executable, "-m", "benchmarks.load", "--scale", scale, "--times", "1,10"]
    out = subprocess.run(cmd, cwd=REPO, env=_env(Path(tempfile.mkdtemp(prefix="opsbench-"))), capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmarks.load failed:\n{out.stderr[-3000:]}")
    rows = []
    for line in out.stdout.strip().splitlines():
        r = json.loads(line)
        rows.append((f"load: trades CSV, {r['file']} ({r['rows']:,} rows, {r['bytes'] / 2**20:,.0f} MiB)",
                     f"{r['load_s']:.1f} s, {r['rows_per_s']:,} rows/s, peak RSS {r['peak_rss_mib']:,} MiB; "
                     f"chDB's parse {r['chdb_parse_s']:.2f} s, ratio {r['ratio_to_parse']}",
                     "ratio ≤ 3, RSS ≤ 1024 MiB"))
    return rows


def render(rows: list[tuple[str, str, str]], command: str) -> str:
    lines = [
        f"machine: {machine_line()}",
        f"command: `{command}`",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="seed", help="demo scale: small, medium or seed (the runbook's, default)")
    ap.add_argument("--write", type=Path, help="also write the report (markdown) to this file")
    ap.add_argument("--repeat", type=int, default=3, help="full Step D runs at batch 300; the best and the median are reported (default 3)")
    ap.add_argument("--only", choices=("enrichment", "pipeline", "console", "scoring", "attach", "incremental", "load"), help="run one part only")
    ap.add_argument("--llm-latency", type=float, default=0.5, help="pipeline: mean seconds per loopback LLM call (default 0.5)")
    args = ap.parse_args()
    command = "uv run python -m benchmarks " + " ".join(sys.argv[1:])
    print(f"machine: {machine_line()}", flush=True)
    rows: list[tuple[str, str, str]] = []

    def part(new: list[tuple[str, str, str]]) -> None:
        # Each part's rows as soon as it ends: a later part that fails loses nothing measured.
        rows.extend(new)
        for a, b, _ in new:
            print(f"  {a}: {b}", flush=True)

    if args.only in (None, "enrichment"):
        part(enrichment(args.scale, args.repeat))
    if args.only in (None, "incremental"):
        from benchmarks.incremental import incremental_rows

        part(incremental_rows(args.scale))
    if args.only in (None, "pipeline"):
        from benchmarks.pipeline import pipeline

        part(pipeline(args.llm_latency))
    if args.only in (None, "console"):
        part(console(args.scale))
    if args.only in (None, "scoring"):
        part([("scoring: 100,000 stored forecasts, offline --source", _script("benchmarks.scoring"),
                   "first run ≤ 10 s")])
    if args.only in (None, "attach"):
        part(attach(args.scale, args.repeat))
    if args.only in (None, "load"):
        part(load_rows(args.scale))
    report = render(rows, command.strip())
    print(report)
    if args.write:
        args.write.write_text("# Benchmark results\n\n" + report)


if __name__ == "__main__":
    main()
