"""What a client gets on connect: the job's current picture, kept up to date by a bus listener.

The listener runs inside `publish` (synchronously, on the event loop thread), so it only stores
references; encoding happens when a client connects. Taking the snapshot and subscribing happen
in the same synchronous step, so a client sees every event exactly once: in the snapshot or after it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import (
    CheckpointSaved,
    Event,
    Failure,
    GatesReported,
    JobStarted,
    JobState,
    LogLine,
    MutationStatus,
    Progress,
    SettingsChanged,
    StateChanged,
    Summary,
)
from engine.wire import encode, event_from_record, event_record, jsonable, redacted
from engine.wire import snapshot as snapshot_message

MAX_LOG_LINES = 500
MAX_FAILURES = 1000


class JobSnapshot:
    """Bus listener: `bus.add_listener(snapshot)`; `to_dict()` is the wire form."""

    def __init__(self, job: str, *, live: Callable[[], Any] | None = None, pid: int | None = None,
                 started_at: float | None = None) -> None:
        self.job = job
        self.pid = pid if pid is not None else os.getpid()
        self.started_at = started_at if started_at is not None else time.time()
        self._live = live
        self.state = JobState.STARTING
        self.reason = ""
        self.state_ts: float | None = None  # when the job entered `state`
        self.panels: tuple[str, ...] = ()
        self.step = ""
        self.progress: dict[str, Progress] = {}
        self.checkpoints: dict[str, CheckpointSaved] = {}
        self.gates: GatesReported | None = None
        self.mutations: MutationStatus | None = None
        self.summary: Summary | None = None
        self.failures: deque[Failure] = deque(maxlen=MAX_FAILURES)
        self.failures_total = 0
        self.logs: deque[LogLine] = deque(maxlen=MAX_LOG_LINES)
        self.logs_total = 0
        self.live_values: dict[str, Any] = {}
        # The wire form, kept until the next event changes the picture: clients connecting in
        # between get the same bytes (a script opening connections in a loop made the job encode
        # its last 500 log lines ~100 times a second). Each log and failure record is converted
        # once, in `_records`, however often the snapshot is rebuilt.
        self._encoded: bytes | None = None
        self._record_memo: dict[int, tuple[Event, dict[str, Any]]] = {}

    def __call__(self, event: Event) -> None:
        self._encoded = None
        if isinstance(event, JobStarted):
            self.panels = tuple(event.panels)
        elif isinstance(event, StateChanged):
            self.state, self.reason, self.state_ts = event.state, event.reason, event.ts
        elif isinstance(event, Progress):
            self.progress[event.step] = event
            self.step = event.step
        elif isinstance(event, CheckpointSaved):
            self.checkpoints[event.where] = event
            self.step = event.step or self.step
        elif isinstance(event, LogLine):
            self.logs.append(event)
            self.logs_total += 1
        elif isinstance(event, Failure):
            self.failures.append(event)
            self.failures_total += 1
        elif isinstance(event, GatesReported):
            self.gates = event
        elif isinstance(event, MutationStatus):
            self.mutations = event
        elif isinstance(event, SettingsChanged):
            self.live_values = dict(event.values)
        elif isinstance(event, Summary):
            self.summary = event

    def live(self) -> dict[str, Any]:
        if self._live is not None:
            try:
                value: dict[str, Any] = jsonable(self._live())
                return value
            except Exception:  # a snapshot must never fail because of a settings model
                pass
        return self.live_values

    def to_dict(self) -> dict[str, Any]:
        def rec(event: Event | None) -> dict[str, Any] | None:
            return event_record(event) if event is not None else None

        return {
            "job": self.job,
            "pid": self.pid,
            "started_at": self.started_at,
            "state": self.state.value,
            "reason": redacted(self.reason),
            "state_ts": self.state_ts,
            "panels": list(self.panels),
            "step": self.step,
            "progress": {step: event_record(e) for step, e in self.progress.items()},
            "checkpoints": {where: event_record(e) for where, e in self.checkpoints.items()},
            "live": redacted(self.live()),
            "gates": rec(self.gates),
            "mutations": rec(self.mutations),
            "summary": rec(self.summary),
            "failures": self._records(self.failures),
            "failures_total": self.failures_total,
            "logs": self._records(self.logs),
            "logs_total": self.logs_total,
        }

    def _records(self, events: deque[Any]) -> list[dict[str, Any]]:
        """The events' records, each converted once while it stays in the snapshot (keyed by
        identity; the memo keeps the event, so its id cannot be reused while it is there)."""
        memo = self._record_memo
        out = []
        for event in events:
            hit = memo.get(id(event))
            if hit is None or hit[0] is not event:
                hit = memo[id(event)] = (event, event_record(event))
            out.append(hit[1])
        if len(memo) > 2 * (MAX_LOG_LINES + MAX_FAILURES):  # drop the records of events gone from both
            kept = {id(e) for e in self.logs} | {id(e) for e in self.failures}
            self._record_memo = {k: v for k, v in memo.items() if k in kept}
        return out

    def encoded(self) -> bytes:
        """The snapshot message as sent on connect; rebuilt only after an event changed it."""
        if self._encoded is None:
            self._encoded = encode(snapshot_message(self.to_dict()))
        return self._encoded


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class Snapshot:
    """The client-side, typed form of a snapshot."""

    job: str
    pid: int
    started_at: float
    state: JobState
    reason: str = ""
    state_ts: float | None = None  # absent from older jobs' snapshots
    panels: tuple[str, ...] = ()
    step: str = ""
    progress: dict[str, Progress] = field(default_factory=dict)
    checkpoints: dict[str, CheckpointSaved] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    gates: GatesReported | None = None
    mutations: MutationStatus | None = None
    summary: Summary | None = None
    failures: list[Failure] = field(default_factory=list)
    failures_total: int = 0
    logs: list[LogLine] = field(default_factory=list)
    logs_total: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        def typed(record: Any, kind: type[Any]) -> Any:
            if not isinstance(record, dict):
                return None
            event = event_from_record(record)
            return event if isinstance(event, kind) else None

        def many(records: Any, kind: type[Any]) -> list[Any]:
            return [e for e in (typed(r, kind) for r in (records or [])) if e is not None]

        def by_key(records: Any, kind: type[Any]) -> dict[str, Any]:
            items = (records or {}).items() if isinstance(records, dict) else ()
            return {k: e for k, e in ((k, typed(r, kind)) for k, r in items) if e is not None}

        return cls(
            job=str(data.get("job", "")), pid=int(data.get("pid") or 0), started_at=float(data.get("started_at") or 0),
            state=JobState(data.get("state", JobState.STARTING.value)), reason=str(data.get("reason") or ""),
            state_ts=_float_or_none(data.get("state_ts")),
            step=str(data.get("step") or ""),
            panels=tuple(str(p) for p in (data.get("panels") or ()) if isinstance(p, str)),
            progress=by_key(data.get("progress"), Progress), checkpoints=by_key(data.get("checkpoints"), CheckpointSaved),
            live=dict(data.get("live") or {}),
            gates=typed(data.get("gates"), GatesReported), mutations=typed(data.get("mutations"), MutationStatus),
            summary=typed(data.get("summary"), Summary),
            failures=many(data.get("failures"), Failure), failures_total=int(data.get("failures_total") or 0),
            logs=many(data.get("logs"), LogLine), logs_total=int(data.get("logs_total") or 0),
        )

    def replay(self) -> list[Event]:
        """The snapshot as events, oldest first, for a view that is built by applying events
        (the TUI's): logs and failures in time order, then the latest of everything else."""
        events: list[Event] = sorted([*self.logs, *self.failures], key=lambda e: e.ts)
        events += [*self.checkpoints.values(), *self.progress.values()]
        events += [e for e in (self.gates, self.mutations, self.summary) if e is not None]
        if self.live:
            events.append(SettingsChanged(job=self.job, values=dict(self.live)))
        events.append(StateChanged(job=self.job, state=self.state, reason=self.reason,
                                   **({"ts": self.state_ts} if self.state_ts is not None else {})))
        return events
