"""Step D inside the console vs headless, on the same data: does the UI cost the job anything?

    uv run python -m benchmarks.console_ratio [scale]     # default seed, the runbook's scale

Generates demo data once, then runs the same Step D (batch 300, both checkpoints) headless and
inside the Textual app (Pilot, headless terminal 160×48, panels updating), resetting the P&L in
between, alternating, three times each (each run starts after the previous run's merges have
settled), and prints the best of each and the ratio, and the medians: single runs vary by ±15%
on 2 cores, far more than the difference being measured.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import anyio

from console.tui.app import OpsConsoleApp
from engine.bus import EventBus
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.runner import run_job
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
from benchmarks.enrichment import reset_pnl


async def headless(settings, ch) -> float:  # type: ignore[no-untyped-def]
    job = EnrichmentJob(["D"], batch_size=300, run_gates=False)
    await run_job(job, settings, EventBus(), handle_signals=False, resources={"ch": ch})
    return float(job.results["D"]["seconds"])


async def in_console(settings, ch) -> float:  # type: ignore[no-untyped-def]
    job = EnrichmentJob(["D"], batch_size=300, run_gates=False)
    app = OpsConsoleApp(settings, job=job, gates_interval=None)
    async with app.run_test(size=(160, 48)):
        await app.screen.wait_for(lambda v: v.state.final)  # type: ignore[attr-defined]
    return float(job.results["D"]["seconds"])


def main(scale: str, repeat: int = 3) -> None:
    root = Path(tempfile.mkdtemp(prefix="opsbench-ui-"))
    settings = load_settings(runtime_dir=root / "rt")
    ch = open_clickhouse(settings)
    generate_demo(ch, scale, 7)
    times: dict[str, list[float]] = {"headless": [], "console": []}
    for _ in range(repeat):
        for name, fn in (("headless", headless), ("console", in_console)):
            reset_pnl(ch, settings)
            times[name].append(anyio.run(fn, settings, ch))
    h, c = min(times["headless"]), min(times["console"])
    hm, cm = statistics.median(times["headless"]), statistics.median(times["console"])
    runs = "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v) for k, v in times.items())
    print(f"Step D ({scale}, batch 300), best of {len(times['headless'])}: headless {h:.2f} s, in the console "
          f"{c:.2f} s; **ratio {c / h:.2f}** (medians {hm:.2f} / {cm:.2f} s = {cm / hm:.2f}; runs: {runs} s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "seed")
