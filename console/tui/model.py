"""What the console knows about one job run, folded from its event stream.

Handlers feed every event to `JobView.apply`; widgets render from the view. Keeping this free of
Textual makes the rules (throughput, ETA, which panels apply) plain Python that tests read directly,
and means the panels depend on events alone, never on job internals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.event_text import LEVELS
from engine.events import (
    CheckpointSaved,
    Event,
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

#: samples kept for sparklines: enough for a readable trend at 160 columns
HISTORY = 120


@dataclass
class StepProgress:
    step: str
    done: int = 0
    total: int | None = None
    unit: str = "items"
    detail: dict[str, Any] = field(default_factory=dict)
    first_ts: float | None = None
    first_done: int = 0
    last_ts: float | None = None
    #: recent (ts, done) samples for the instantaneous rate
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=20))
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def rate(self) -> float | None:
        """Units per second over the recent samples (None until two samples exist)."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if self.total is None or not rate:
            return None
        return max(0.0, (self.total - self.done) / rate)


@dataclass
class CheckpointView:
    ts: float
    step: str
    where: str
    cursor: dict[str, Any]
    pairs_done: int
    batch_idx: int


@dataclass
class FailureRow:
    ts: float
    where: str
    reason: str
    retriable: bool
    step: str


@dataclass
class JobView:
    job: str
    #: the panels the job declared (`Job.panels`; `JobStarted` on the stream): never guessed
    panels: tuple[str, ...] = ()
    state: JobState = JobState.STARTING
    state_reason: str = ""
    started_ts: float | None = None
    ended_ts: float | None = None
    steps: dict[str, StepProgress] = field(default_factory=dict)
    current_step: str | None = None
    checkpoint: CheckpointView | None = None
    checkpoints_saved: int = 0
    live: dict[str, Any] = field(default_factory=dict)
    gates: tuple[GateResult, ...] = ()
    gates_ts: float | None = None
    gates_error: str = ""
    mutations_pending: int | None = None
    mutation_details: tuple[MutationInfo, ...] = ()
    mutation_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    failures: list[FailureRow] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    log_counts: dict[str, int] = field(default_factory=lambda: {lvl: 0 for lvl in LEVELS})
    last_ts: float = 0.0

    # --- folding --------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        if self.started_ts is None:
            self.started_ts = event.ts
        self.last_ts = max(self.last_ts, event.ts)
        if isinstance(event, JobStarted):
            self.panels = tuple(event.panels)
        elif isinstance(event, StateChanged):
            self.state = event.state
            self.state_reason = event.reason
            if event.state.final:
                self.ended_ts = event.ts
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, CheckpointSaved):
            self.checkpoint = CheckpointView(event.ts, event.step, event.where, dict(event.cursor),
                                             event.pairs_done, event.batch_idx)
            self.checkpoints_saved += 1
        elif isinstance(event, SettingsChanged):
            self.live = dict(event.values)
        elif isinstance(event, GatesReported):
            self.set_gates(event.gates, event.ts)
        elif isinstance(event, MutationStatus):
            self.set_mutations(event.pending, event.details)
        elif isinstance(event, Failure):
            self.failures.append(FailureRow(event.ts, event.where, event.reason, event.retriable, event.step))
        elif isinstance(event, Summary):
            self.summary = dict(event.data)
        elif isinstance(event, LogLine):
            key = event.level.upper() if event.level.upper() in self.log_counts else "INFO"
            self.log_counts[key] += 1

    def _progress(self, event: Progress) -> None:
        sp = self.steps.get(event.step)
        if sp is None:
            sp = self.steps[event.step] = StepProgress(event.step, first_ts=event.ts, first_done=event.done)
        sp.done, sp.total, sp.unit, sp.detail, sp.last_ts = event.done, event.total, event.unit, dict(event.detail), event.ts
        if sp.samples and event.done < sp.samples[-1][1]:
            sp.samples.clear()  # a restart of the step (e.g. a reset): old samples would lie
        sp.samples.append((event.ts, event.done))
        rate = sp.rate
        if rate is not None:
            sp.rates.append(rate)
        self.current_step = event.step

    def set_gates(self, gates: tuple[GateResult, ...] | list[GateResult], ts: float) -> None:
        self.gates = tuple(gates)
        self.gates_ts = ts
        self.gates_error = ""

    def set_mutations(self, pending: int, details: tuple[MutationInfo, ...] | list[MutationInfo]) -> None:
        self.mutations_pending = pending
        self.mutation_details = tuple(details)
        self.mutation_history.append(float(pending))

    # --- what the panels ask ------------------------------------------------------------------
    def shows(self, panel: str) -> bool:
        """Whether the job declared `panel` ("steps", "gates", "mutations", "pipeline")."""
        return panel in self.panels

    @property
    def active(self) -> StepProgress | None:
        if self.current_step is None:
            return None
        return self.steps.get(self.current_step)

    def elapsed_s(self, now: float) -> float | None:
        if self.started_ts is None:
            return None
        end = self.ended_ts if self.ended_ts is not None else now
        return max(0.0, end - self.started_ts)

    def eta_s(self) -> float | None:
        if self.state.final or self.state is JobState.PAUSED:
            return None  # a held job has no time left to estimate (the last rate would read as one)
        sp = self.active
        return sp.eta_s if sp is not None else None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_count(n: float | int | None) -> str:
    if n is None:
        return "—"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"
