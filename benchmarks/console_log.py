"""Benchmark (not a test): the log pane with hundreds of thousands of lines.

    uv run python -m benchmarks.console_log [lines]

Publishes N log lines on the bus in bursts (as a chatty job would), waits until the console has
folded them all in, then changes the filter twice. Prints wall times, the process CPU share and
the frame time: a ticker on the console's event loop records how late it runs, so the longest gap
is the longest the console could not react to a key or draw (publishing, ingesting and rendering
all share that loop, as they do when a job runs inside the console).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from console.tui.widgets import LogPane
from engine.events import LogLine
from tests.tui.scenarios import T0, attached_app

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


class Ticker:
    """Wakes every `period` seconds on the event loop and records each gap between wake-ups."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.gaps: list[float] = []
        self.running = True

    async def run(self) -> None:
        last = time.perf_counter()
        while self.running:
            await asyncio.sleep(self.period)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    def summary(self) -> str:
        gaps = sorted(self.gaps)
        p99 = gaps[int(0.99 * (len(gaps) - 1))] * 1000
        slow = sum(1 for g in gaps if g > 0.05)
        return (f"frame time (event-loop gap, {self.period * 1000:.0f} ms ticker): max {gaps[-1] * 1000:.0f} ms, "
                f"p99 {p99:.0f} ms, p50 {statistics.median(gaps) * 1000:.0f} ms; {slow} of {len(gaps):,} over 50 ms")


async def main(n: int) -> None:
    app = attached_app("selftest")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        bus = screen.session.bus
        await pilot.press("l")
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run())
        t0, c0 = time.perf_counter(), time.process_time()
        burst = 1_000
        for start in range(0, n, burst):
            for i in range(start, min(n, start + burst)):
                bus.publish(LogLine(job="selftest", ts=T0 + i * 0.001, level=LEVELS[i % 4],
                                    message=f"batch {i // 300}: wallet 0x{i:08x} condition {i % 977} written"))
            await asyncio.sleep(0)  # the job side yields between units
        last = T0 + (n - 1) * 0.001
        await screen.wait_for(lambda v: v.last_ts >= last)
        screen.flush()
        await pilot.pause()
        ingest = time.perf_counter() - t0
        cpu = time.process_time() - c0
        ticker.running = False
        await ticking
        pane = screen.query_one("#log-full", LogPane)
        t1 = time.perf_counter()
        pane.set_filter("condition 42 ", 2)
        await pilot.pause()
        f1 = time.perf_counter() - t1
        matched = pane.query_one("#log").line_count
        t2 = time.perf_counter()
        pane.set_filter("", 0)
        await pilot.pause()
        f2 = time.perf_counter() - t2
        print(f"{n:,} lines: ingest+render {ingest:.2f} s ({n / ingest:,.0f} lines/s, CPU {cpu:.2f} s); "
              f"filter 'condition 42 ' level>=WARNING over {len(pane.lines):,} buffered: {f1 * 1000:.0f} ms "
              f"({matched} shown); clear filter (newest {pane.max_lines:,} shown): {f2 * 1000:.0f} ms; "
              f"while ingesting, {ticker.summary()}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000))
