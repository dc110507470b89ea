"""Forecast pipeline measurements: sliding window vs the ideal bound, and persistence cost.

200 events (one market each) run through the openai suite (research, then forecast) against a
loopback OpenAI server whose every call for an event takes that event's latency: fixed, or drawn
from a heavy-tailed (Pareto) distribution. Latencies are known in advance, so the ideal bound and
what lockstep batches would take are computed exactly:

    critical path of an event = research latency + forecast latency
    ideal  = max(Σ critical paths ÷ concurrency, longest critical path)
    perfect window = each event, in order, starts the moment a slot frees, with no overhead at all
    lockstep = Σ over consecutive groups of `concurrency` events of the group's longest path

The ideal bound is not reachable by any scheduler that admits events in order without knowing
their latencies (200 ÷ 32 leaves a partial last round; a heavy-tailed event admitted late finishes
late): the perfect window shows how far from it the best in-order schedule already is.
"""

from __future__ import annotations

import heapq
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from engine.bus import EventBus
from engine.control import Control
from engine.events import Event, Progress
from engine.pipeline.job import PipelineJob
from engine.pipeline.options import PipelineOptions
from engine.runner import run_job
from engine.settings import load_settings
from tests.pipeline.conftest import FAST, OPENAI_KEY
from tests.pipeline.fakes import OpenAIApp, gamma_market

EVENTS = 200
_MID = re.compile(r"bm(\d{4})")


def snapshot(path: Path, n: int) -> Path:
    markets = [gamma_market(f"bm{i:04d}", f"Benchmark question {i}?", (f"ev{i:04d}", f"Event {i}")) for i in range(n)]
    path.write_text(json.dumps(markets))
    return path


def latencies(n: int, kind: str, mean: float, seed: int = 11) -> list[float]:
    if kind == "fixed":
        return [mean] * n
    rng = random.Random(seed)
    alpha = 1.5  # heavy tail: mean = xm * alpha / (alpha - 1)
    xm = mean * (alpha - 1) / alpha
    return [min(xm * rng.paretovariate(alpha), 10 * mean) for _ in range(n)]


class SlowOpenAI:
    """The loopback OpenAI app, delayed per event (the market id in the prompt picks the latency)."""

    def __init__(self, per_event: list[float]) -> None:
        self.app = OpenAIApp()
        self.per_event = per_event

    def __call__(self, method: str, path: str, query: dict[str, Any], body: bytes, headers: dict[str, str]) -> Any:
        m = _MID.search(body.decode(errors="replace"))
        if m:
            time.sleep(self.per_event[int(m[1])])
        return self.app(method, path, query, body, headers)


class ServerProcess:
    """SlowOpenAI behind LoopbackServer in a child process (benchmarks.llm_server): the fake API's
    CPU is not the pipeline's, as it would not be with the real service."""

    def __init__(self, per_event: list[float]) -> None:
        spec = Path(tempfile.mkdtemp(prefix="opsbench-llm-")) / "latencies.json"
        spec.write_text(json.dumps(per_event))
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.llm_server", str(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise SystemExit("the loopback LLM server did not start")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ideal_window(paths: list[float], concurrency: int) -> float:
    """Makespan of a perfect sliding window (no overhead at all): each event starts, in order, the
    moment a slot frees. Known latencies make it exact; it is what any in-order window can reach."""
    slots = [0.0] * concurrency
    for p in paths:
        heapq.heapreplace(slots, slots[0] + p)
    return max(slots)


async def _run(settings: Any, options: PipelineOptions, listen: Any = None) -> tuple[float, PipelineJob]:
    bus = EventBus()
    job = PipelineJob(options)
    if listen:
        bus.add_listener(listen)
    started = time.monotonic()
    outcome = await run_job(job, settings, bus, Control(job.name, bus, job.live_settings()), handle_signals=False)
    assert outcome.exit_code == 0, outcome.error
    return time.monotonic() - started, job


def window_rows(mean: float) -> list[tuple[str, str, str]]:
    rows = []
    for kind in ("fixed", "heavy-tailed"):
        per_event = latencies(EVENTS, kind, mean)
        paths = [2 * x for x in per_event]
        server = ServerProcess(per_event)
        try:
            for concurrency in (8, 32):
                root = Path(tempfile.mkdtemp(prefix="opsbench-pl-"))
                settings = load_settings(runtime_dir=root / "rt", openai_api_key=OPENAI_KEY, openai_base_url=server.url + "/v1")
                options = PipelineOptions(suites=["openai"], source=snapshot(root / "s.json", EVENTS), event_batch_size=concurrency,
                                          experiment_overrides=list(FAST), no_debug_dump=True, dry_run=True)
                wall, _ = anyio.run(_run, settings, options)
                ideal = max(sum(paths) / concurrency, max(paths))
                window = ideal_window(paths, concurrency)
                lockstep = sum(max(paths[i:i + concurrency]) for i in range(0, EVENTS, concurrency))
                rows.append((
                    f"pipeline, {EVENTS} events, {kind} LLM latency (mean {mean * 1000:.0f} ms/call), {concurrency} in flight",
                    f"{wall:.2f} s = **{wall / ideal:.2f}× ideal** ({ideal:.2f} s); a perfect sliding window would take "
                    f"{window:.2f} s = {window / ideal:.2f}× ideal (ours is {wall / window:.2f}× that); lockstep batches "
                    f"{lockstep:.2f} s = {lockstep / ideal:.2f}× ideal",
                    "≤ 1.15×",
                ))
        finally:
            server.close()
    return rows


def persistence_rows() -> list[tuple[str, str, str]]:
    """Per-event time with no LLM (baseline suite, one event in flight) on embedded Postgres:
    everything measured is normalization plus the event's database writes."""
    root = Path(tempfile.mkdtemp(prefix="opsbench-pp-"))
    settings = load_settings(runtime_dir=root / "rt")
    stamps: list[float] = []

    def listen(event: Event) -> None:
        if isinstance(event, Progress) and event.step == "events" and event.done > len(stamps) - 1:
            stamps.append(time.monotonic())

    options = PipelineOptions(suites=["baseline"], source=snapshot(root / "s.json", EVENTS), event_batch_size=1,
                              no_debug_dump=True)
    wall, _ = anyio.run(_run, settings, options, listen)
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    p50 = statistics.median(gaps) * 1000
    p95 = gaps[int(0.95 * (len(gaps) - 1))] * 1000
    return [(f"pipeline persistence per event (embedded Postgres, {len(gaps)} events, no LLM)",
             f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (run {wall:.1f} s)", "p95 ≤ 10 ms")]


def pipeline(mean: float = 0.5) -> list[tuple[str, str, str]]:
    return window_rows(mean) + persistence_rows()


if __name__ == "__main__":
    for row in pipeline():
        print(" | ".join(row))
