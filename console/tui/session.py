"""One job run as the console sees it: the job, its bus, its Control and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.bus import EventBus, Subscription
from engine.control import Control
from engine.errors import OpsError
from engine.events import JobState
from engine.runner import Job, JobOutcome
from engine.settings import Settings


@dataclass
class JobSession:
    name: str
    settings: Settings | None
    bus: EventBus
    control: Control[Any]
    sub: Subscription
    job: Job | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    outcome: JobOutcome | None = None
    error: OpsError | None = None
    quit_when_done: bool = False
    aborted: bool = False
    #: set for a job in another process: the runtime dir whose `<name>.sock` it serves
    remote_runtime: Path | None = None
    detached: bool = False  # the operator left the job running

    @classmethod
    def for_job(cls, job: Job, settings: Settings, resources: dict[str, Any] | None = None) -> JobSession:
        bus = EventBus()
        # Subscribe before the job starts so not one event is missed.
        sub = bus.subscribe()
        control = Control(job.name, bus, job.live_settings())
        return cls(job.name, settings, bus, control, sub, job=job, resources=dict(resources or {}))

    @classmethod
    def attach(cls, name: str, live: BaseModel | None = None, settings: Settings | None = None,
               bus: EventBus | None = None) -> JobSession:
        """Watch events published by someone else (tests, replays): no job runs in the console."""
        bus = bus or EventBus()
        sub = bus.subscribe()
        return cls(name, settings, bus, Control(name, bus, live), sub)

    @classmethod
    def remote(cls, name: str, runtime: Path, live: BaseModel, state: JobState,
               settings: Settings | None = None) -> JobSession:
        """A job in another process, reached through its socket (see console/tui/remote.py)."""
        from console.tui.remote import RemoteControl

        bus = EventBus()
        sub = bus.subscribe()
        control = RemoteControl(name, bus, live, state)
        return cls(name, settings, bus, control, sub, remote_runtime=runtime)

    def final_outcome(self) -> JobOutcome | None:
        """How the run ended, for the one exit-code mapping; None while it runs or if it never
        started. A run the console cancelled (second SIGTERM, leaving the app) has no outcome of
        its own from the runner: it is an abort."""
        if self.aborted:
            return JobOutcome(JobState.ABORTED, "aborted by a second signal")
        return self.outcome

    @property
    def ended(self) -> bool:
        return self.outcome is not None or self.error is not None
