"""Helpers for the enrichment tests: run the job in-process on the test's real chDB/Postgres."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.enrichment.job import EnrichmentJob
from engine.events import Event
from engine.runner import JobOutcome, run_job
from engine.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def messages(self, level: str | None = None) -> list[str]:
        from engine.events import LogLine

        return [e.message for e in self.of(LogLine) if level is None or e.level == level]


def run_enrichment(
    job: EnrichmentJob,
    settings: Settings,
    ch: Any,
    *,
    on_event: Callable[[Event, Control[Any]], None] | None = None,
    resources: dict[str, Any] | None = None,
) -> tuple[JobOutcome, Recorder]:
    """Run the job to its end in a fresh event loop; `on_event` may steer the Control."""
    recorder = Recorder()

    async def go() -> JobOutcome:
        bus = EventBus()
        control: Control[Any] = Control(job.name, bus, job.live_settings())
        bus.add_listener(recorder)
        if on_event is not None:
            bus.add_listener(lambda e: on_event(e, control))
        return await run_job(job, settings, bus, control, handle_signals=False,
                             resources={"ch": ch, **(resources or {})})

    return anyio.run(go), recorder
