"""Typed, immutable events: the only thing jobs tell the outside world.

The TUI and the headless renderer consume the same stream. `Progress` and `MutationStatus` may be
coalesced for a slow consumer (only the latest matters); every other event is always delivered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in (JobState.STOPPED, JobState.DONE, JobState.FAILED, JobState.ABORTED)


def _now() -> float:
    return time.time()


@dataclass(frozen=True, kw_only=True)
class Event:
    job: str
    ts: float = field(default_factory=_now)

    def coalesce_key(self) -> tuple[Any, ...] | None:
        """Events with the same non-None key may replace each other in a slow consumer's queue."""
        return None

    def routine(self) -> bool:
        """A report a watcher may see a moment late (progress, a checkpoint, a mutation poll, a
        DEBUG line): the job socket sends these a few at a time instead of one write each."""
        return False


@dataclass(frozen=True, kw_only=True)
class JobStarted(Event):
    """The first event of a run: what the job declares about itself (`Job.panels`), so a console
    attached to the stream, in this process or another, shows the right panels without guessing."""

    panels: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    state: JobState
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    step: str
    done: int
    total: int | None
    unit: str = "items"
    detail: dict[str, Any] = field(default_factory=dict)

    def coalesce_key(self) -> tuple[Any, ...]:
        return ("progress", self.job, self.step)

    def routine(self) -> bool:
        return True


@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    level: str  # DEBUG, INFO, WARNING, ERROR
    message: str
    step: str = ""

    def routine(self) -> bool:
        return self.level.upper() == "DEBUG"


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved(Event):
    step: str
    where: str  # "local" or "remote"
    cursor: dict[str, Any]
    pairs_done: int = 0
    batch_idx: int = 0

    def routine(self) -> bool:
        return True


@dataclass(frozen=True, kw_only=True)
class GateResult:
    name: str
    status: str  # PASS, WARN, FAIL, INFO
    actual: Any
    expected: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class GatesReported(Event):
    gates: tuple[GateResult, ...]


@dataclass(frozen=True, kw_only=True)
class MutationInfo:
    database: str
    table: str
    mutation_id: str
    command: str
    create_time: str
    age_s: float
    parts_to_do: int
    latest_fail_reason: str = ""


@dataclass(frozen=True, kw_only=True)
class MutationStatus(Event):
    pending: int
    details: tuple[MutationInfo, ...] = ()

    def coalesce_key(self) -> tuple[Any, ...]:
        return ("mutations", self.job)

    def routine(self) -> bool:
        return not any(m.latest_fail_reason for m in self.details)


@dataclass(frozen=True, kw_only=True)
class Failure(Event):
    where: str  # market id, pair, step, ...
    reason: str
    retriable: bool = True
    step: str = ""


@dataclass(frozen=True, kw_only=True)
class SettingsChanged(Event):
    values: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Summary(Event):
    data: dict[str, Any]
