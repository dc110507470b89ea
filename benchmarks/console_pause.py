"""Benchmark (not a test): key press -> "PAUSING" in the header, during a real Step D.

    uv run python -m benchmarks.console_pause [rounds]

Runs Step D on the medium demo data (batch size 5, so the job is busy writing for longer than
all rounds take) under Pilot,
sends the `p` key through the driver the way a terminal would, and measures the time until the
action has run and the header says PAUSING. The paint follows at the next frame (Textual renders
at up to 60 fps). Uses its own runtime and chDB path in a temporary folder.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textual import events

from console.tui.app import OpsConsoleApp
from console.tui.widgets import StatusHeader
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.events import JobState
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse


async def main(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    settings = load_settings(runtime_dir=root / "runtime", clickhouse_path=root / "clickhouse")
    generate_demo(open_clickhouse(settings), "medium", 7)
    job = EnrichmentJob(["D"], batch_size=5, remote_checkpoints=False)
    app = OpsConsoleApp(settings, job=job, gates_interval=None)
    latencies: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        original = screen.action_pause
        for _ in range(rounds):
            await screen.wait_for(lambda v: v.state.final or (v.state is JobState.RUNNING and v.steps.get("D") and v.steps["D"].total))
            if screen.view.state.final:
                raise SystemExit(f"Step D ended after {len(latencies)} of {rounds} rounds: use fewer rounds")
            done: dict[str, float] = {}

            def timed_pause(done: dict[str, float] = done) -> None:
                original()
                done["at"] = time.perf_counter()

            screen.action_pause = timed_pause  # type: ignore[method-assign]
            start = time.perf_counter()
            app._driver.send_message(events.Key("p", "p"))  # noqa: SLF001 - what a terminal key does
            while "at" not in done:
                await asyncio.sleep(0)
            assert "PAUSING" in str(screen.query_one("#header", StatusHeader).render()) or \
                "PAUSED" in str(screen.query_one("#header", StatusHeader).render())
            latencies.append((done["at"] - start) * 1000)
            await screen.wait_for(lambda v: v.state is JobState.PAUSED)
            screen.action_pause = original  # type: ignore[method-assign]
            await pilot.press("r")
        screen.session.control.stop("benchmark over")
        await screen.wait_for(lambda v: v.state.final)
    print(f"key -> header PAUSING, {rounds} rounds during Step D: "
          + ", ".join(f"{x:.1f}" for x in latencies)
          + f" ms (median {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
