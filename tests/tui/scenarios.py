"""Deterministic event streams for snapshots and screenshots: fixed timestamps, fixed values.

The console renders from events alone, so publishing these on a bus is enough to show every panel
exactly as a real run would, without clocks or stores making the picture change between runs.
"""

from __future__ import annotations

import tempfile

from pydantic import BaseModel, Field

from engine.bus import EventBus
from engine.enrichment.job import EnrichmentJob, EnrichmentLive
from engine.events import Event
from engine.events import (
    CheckpointSaved,
    Failure,
    GateResult,
    GatesReported,
    JobStarted,
    JobState,
    LogLine,
    MutationInfo,
    MutationStatus,
    Progress,
    SettingsChanged,
    StateChanged,
    Summary,
)
from engine.jobs.selftest import SelftestJob
from engine.pipeline.job import PipelineJob

T0 = 1_790_000_000.0  # a fixed instant: 2026-09-21T14:13:20Z


def fixed_clock(offset: float = 95.0):
    return lambda: T0 + offset


class PipelineLive(BaseModel):
    experiment_overrides: list[str] = Field(default_factory=list)


class Rounds:
    """Collects events in rounds. Progress is coalesced by the bus within a round, exactly as a
    slow consumer would see it, so rounds are what gives the throughput sparkline its samples."""

    def __init__(self) -> None:
        self.rounds: list[list[Event]] = [[]]

    def publish(self, event: Event) -> None:
        self.rounds[-1].append(event)

    def cut(self) -> None:
        if self.rounds[-1]:
            self.rounds.append([])

    def all(self) -> list[list[Event]]:
        return [r for r in self.rounds if r]


def enrichment_events(bus: Rounds, *, paused: bool = False) -> None:
    job = "full-enrichment"
    bus.publish(JobStarted(job=job, ts=T0, panels=EnrichmentJob.panels))
    bus.publish(StateChanged(job=job, ts=T0, state=JobState.RUNNING))
    for step, n in (("A", 120), ("B", 120), ("C", 80)):
        bus.publish(Progress(job=job, ts=T0 + 1, step=step, done=n, total=n, unit="markets"))
    bus.publish(SettingsChanged(job=job, ts=T0 + 2, values=EnrichmentLive().model_dump()))
    total = 13_693
    for i in range(1, 16):
        done = min(total, i * 300)
        bus.publish(Progress(job=job, ts=T0 + 3 + i * 5 + (i % 3), step="D", done=done, total=total, unit="pairs",
                             detail={"batch_idx": i, "batches_total": 46, "batch_size": 300, "rows_written": done * 7,
                                     "write_strategy": "lightweight", "cursor": {"wallet": f"0x{i:04x}", "cond": "c"}}))
        bus.publish(LogLine(job=job, ts=T0 + 3 + i * 5, level="INFO", step="D",
                            message=f"batch {i}/46: 300 pairs, {300 * 7} rows in 0.4 s"))
        bus.publish(CheckpointSaved(job=job, ts=T0 + 4 + i * 5, step="D", where="local",
                                    cursor={"wallet": f"0x{i:04x}", "cond": "c"}, pairs_done=done, batch_idx=i))
        bus.publish(MutationStatus(job=job, ts=T0 + 4 + i * 5, pending=(i * 7) % 11, details=()))
        bus.cut()
    bus.publish(LogLine(job=job, ts=T0 + 85, level="WARNING", step="D", message="pending mutations 9 > 8: waiting"))
    details = (
        MutationInfo(database="opsconsole", table="trades_raw", mutation_id="mutation_41.txt",
                     command="UPDATE realized_pnl_usd = ... WHERE pair_id IN range(4200, 4500)",
                     create_time="2026-09-21 14:14:40", age_s=12.0, parts_to_do=3),
        MutationInfo(database="opsconsole", table="trades_raw", mutation_id="mutation_42.txt",
                     command="UPDATE realized_pnl_usd = ... WHERE pair_id IN range(4500, 4800)",
                     create_time="2026-09-21 14:14:45", age_s=7.0, parts_to_do=5,
                     latest_fail_reason="Code: 241. Memory limit exceeded"),
    )
    bus.publish(MutationStatus(job=job, ts=T0 + 86, pending=2, details=details))
    bus.publish(GatesReported(job=job, ts=T0 + 87, gates=(
        GateResult(name="markets_missing_dim", status="PASS", actual=0, expected="0 or 1"),
        GateResult(name="pnl_nulls", status="WARN", actual=9193, expected="0 after Step D"),
        GateResult(name="wallets_with_outcomes", status="FAIL", actual=0, expected="≈ wallets (Step E)"),
        GateResult(name="pending_mutations", status="WARN", actual=2, expected="0"),
        GateResult(name="bad_markets", status="INFO", actual=14, expected="0 after Step D"),
    )))
    bus.publish(Failure(job=job, ts=T0 + 88, where="cond 0xdead…beef", reason="payouts sum to 0.98, not 1",
                        retriable=False, step="D"))
    if paused:
        bus.publish(StateChanged(job=job, ts=T0 + 90, state=JobState.PAUSING, reason="pause requested"))
        bus.publish(StateChanged(job=job, ts=T0 + 91, state=JobState.PAUSED, reason="holding at a unit boundary"))


def pipeline_events(bus: Rounds, *, done: bool = False) -> None:
    job = "pipeline"
    bus.publish(JobStarted(job=job, ts=T0, panels=PipelineJob.panels))
    bus.publish(StateChanged(job=job, ts=T0, state=JobState.RUNNING))
    suites = {
        "baseline": {"research_ok": 6, "research_failed": 0, "forecast_ok": 6, "forecast_failed": 0, "skipped": 1},
        "openai": {"research_ok": 5, "research_failed": 1, "forecast_ok": 4, "forecast_failed": 1, "skipped": 0},
        "gemini": {"research_ok": 6, "research_failed": 0, "forecast_ok": 5, "forecast_failed": 1, "skipped": 0},
    }
    for i in range(1, 8):
        bus.publish(Progress(job=job, ts=T0 + i * 6, step="events", done=i, total=10, unit="events",
                             detail={"in_flight": 3, "llm_calls": i * 9, "tokens": i * 10_950, "cost_usd": i * 0.0213,
                                     "suites": suites}))
        bus.publish(LogLine(job=job, ts=T0 + i * 6, level="INFO", step="events", message=f"event {i}/10 done"))
        bus.cut()
    bus.publish(Failure(job=job, ts=T0 + 20, where="market-531", reason="openai: 429 rate limited after 3 tries",
                        retriable=True))
    bus.publish(Failure(job=job, ts=T0 + 30, where="market-877", reason="normalize: outcomes list is empty",
                        retriable=False))
    bus.publish(LogLine(job=job, ts=T0 + 31, level="ERROR", step="events", message="market-877: outcomes list is empty"))
    if done:
        bus.publish(Summary(job=job, ts=T0 + 60, data={"events": 10, "failures": 2, "llm_calls": 90, "cost_usd": 0.21}))
        bus.publish(StateChanged(job=job, ts=T0 + 60, state=JobState.DONE))


def selftest_events(bus: Rounds) -> None:
    job = "selftest"
    bus.publish(JobStarted(job=job, ts=T0, panels=SelftestJob.panels))
    bus.publish(StateChanged(job=job, ts=T0, state=JobState.RUNNING))
    for i in range(1, 31):
        bus.publish(Progress(job=job, ts=T0 + i * 0.5, step="selftest", done=i, total=100, unit="units"))
        bus.publish(CheckpointSaved(job=job, ts=T0 + i * 0.5, step="selftest", where="local", cursor={"done": i},
                                    batch_idx=i))
        bus.cut()
    bus.publish(LogLine(job=job, ts=T0 + 15, level="INFO", message="unit 30 done"))


SCENARIOS = {
    "enrichment": ("full-enrichment", EnrichmentLive, lambda r: enrichment_events(r, paused=True)),
    "enrichment-running": ("full-enrichment", EnrichmentLive, lambda r: enrichment_events(r, paused=False)),
    "pipeline": ("pipeline", PipelineLive, lambda r: pipeline_events(r, done=False)),
    "pipeline-done": ("pipeline", PipelineLive, lambda r: pipeline_events(r, done=True)),
    "selftest": ("selftest", None, selftest_events),
}


def rounds_for(name: str) -> list[list[Event]]:
    r = Rounds()
    SCENARIOS[name][2](r)
    return r.all()


async def feed(screen, bus: EventBus, rounds: list[list[Event]]) -> None:
    """Publish each round and wait until the screen has handled it (no sleeps)."""
    for batch in rounds:
        for event in batch:
            bus.publish(event)
        last = max(e.ts for e in batch)
        await screen.wait_for(lambda v, last=last: v.last_ts >= last)
    screen.flush()  # repaints are throttled; bring every panel up to date for the picture


def attached_app(name: str, stores: bool = True, **kw):
    """An app watching a scenario's job name with its live-settings model; no job runs.

    `stores=False` leaves the session without settings, so keys that read a store (m, g) show
    only what the events said (for pictures that must not depend on a database's contents)."""
    from console.tui.app import OpsConsoleApp
    from console.tui.session import JobSession

    from pathlib import Path

    from engine.settings import load_settings

    job, live, _ = SCENARIOS[name]
    # Embedded stores (no URL): the header says so. Nothing is opened unless a key asks for it.
    settings = load_settings(runtime_dir=Path(tempfile.gettempdir()) / "opsconsole-scenarios")
    session = JobSession.attach(job, live() if live else None, settings=settings if stores else None)
    kw.setdefault("clock", fixed_clock())
    kw.setdefault("gates_interval", None)
    return OpsConsoleApp(None, session=session, **kw)
