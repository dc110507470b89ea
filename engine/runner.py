"""Runs one job: lock, pid file, log file, signals, task group, final state and exit code."""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import anyio
from pydantic import BaseModel

from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import JobEndpoint, QueryHandler
from engine.errors import ExitCode, OpsError
from engine.event_text import event_text
from engine.events import (
    Event,
    Failure,
    GatesReported,
    JobStarted,
    JobState,
    LogLine,
    MutationStatus,
    Progress,
)
from engine.files import atomic_write_bytes, ensure_private_dir, open_private_append
from engine.locks import ProcessLock
from engine.redact import redact
from engine.settings import Settings


@dataclass
class JobContext:
    name: str
    settings: Settings
    control: Control[Any]
    bus: EventBus
    resources: dict[str, Any] = field(default_factory=dict)
    queries: dict[str, QueryHandler] = field(default_factory=dict)

    def register_query(self, name: str, handler: QueryHandler) -> None:
        """Answer command `name` on the job socket (`gates`, `mutations`, `refresh_gates`, ...):
        `handler(args)` is awaited in the endpoint's task and returns JSON-able data."""
        self.queries[name] = handler

    def emit(self, event: Event) -> None:
        self.bus.publish(event)

    def log(self, message: str, level: str = "INFO", step: str = "") -> None:
        self.bus.publish(LogLine(job=self.name, level=level, message=message, step=step))

    def progress(self, step: str, done: int, total: int | None, unit: str = "items", **detail: Any) -> None:
        self.bus.publish(Progress(job=self.name, step=step, done=done, total=total, unit=unit, detail=detail))

    def failure(self, where: str, reason: str, retriable: bool = True, step: str = "") -> None:
        self.bus.publish(Failure(job=self.name, where=where, reason=reason, retriable=retriable, step=step))


class Job(Protocol):
    #: lock, pid and log file stem: runtime/<name>.lock, .pid, .console.log
    name: str

    @property
    def panels(self) -> tuple[str, ...]:
        """What the job reports beyond progress, logs and failures, so a console knows which panels
        apply without guessing from the job's name: "steps" (progress per runbook step A–E),
        "gates", "mutations", "pipeline". Carried to every console in the `JobStarted` event."""
        ...

    def live_settings(self) -> BaseModel: ...

    async def run(self, ctx: JobContext) -> None:
        """Do the work; return when done or when `ctx.control.boundary()` says stop."""


@dataclass
class JobOutcome:
    state: JobState
    error: str = ""
    elapsed_s: float = 0.0
    #: a FAILED job's exit code: the OpsError's own (bad input, store unavailable, ...) or FAILED
    error_code: ExitCode = ExitCode.FAILED
    #: gates that reported FAIL in the job's last `GatesReported` (an enrichment's closing gates)
    gates_failed: tuple[str, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self)


def exit_code_for(outcome: JobOutcome) -> ExitCode:
    """The one mapping from how a job ended to the exit code the CLI documents (headless and TUI)."""
    if outcome.state is JobState.ABORTED:
        return ExitCode.ABORTED
    if outcome.state is JobState.FAILED:
        return outcome.error_code
    if outcome.gates_failed:
        # The job ran its closing gates and one said FAIL: the same code as `opsconsole gates`.
        return ExitCode.GATES_FAILED
    return ExitCode.OK  # done, or stopped gracefully with its checkpoint saved


class _GatesVerdict:
    """Remembers which gates FAILed in the last `GatesReported` of a run (a bus listener)."""

    def __init__(self) -> None:
        self.failed: tuple[str, ...] = ()

    def __call__(self, event: Event) -> None:
        if isinstance(event, GatesReported):
            self.failed = tuple(g.name for g in event.gates if g.status == "FAIL")


def _fmt_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


#: Events the plain renderers leave out: the enrichment job logs its gates as lines itself, and a
#: mutation count every poll is chatter (the console shows it as a panel).
PLAIN_SKIPS: tuple[type[Event], ...] = (GatesReported, MutationStatus)


def format_event(event: Event) -> str | None:
    """One plain line per event (log file and non-TTY output); None for events not worth a line.

    The wording is `engine.event_text`'s, shared with the console; this adds the timestamp and the
    job's name (a log file or a terminal may show several jobs)."""
    if isinstance(event, PLAIN_SKIPS):
        return None
    parts = event_text(event)
    if parts is None:
        return None
    where = f"{event.job}:{parts.step}" if parts.step else event.job
    return f"{_fmt_ts(event.ts)} {parts.tag:<7} {where} {parts.text}"


class LogFileSink:
    """Appends every event worth a line to runtime/<job>.console.log, redacted."""

    def __init__(self, path: Path) -> None:
        self.fh = open_private_append(path)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            return  # progress lines would drown the log; checkpoints record the position
        line = format_event(event)
        if line is not None:
            self.fh.write(line + "\n")  # event_text has redacted it

    def write(self, text: str) -> None:
        self.fh.write(redact(text) + "\n")

    def close(self) -> None:
        self.fh.close()


def job_lock(settings: Settings, name: str) -> ProcessLock:
    return ProcessLock(
        settings.runtime / f"{name}.lock",
        f"job '{name}'",
        hint="a second runner is refused so two processes never write the same rows; "
        "watch the first with `tail -f runtime/" + name + ".console.log`, or stop it: kill -TERM {pid}",
    )


async def run_job(
    job: Job,
    settings: Settings,
    bus: EventBus,
    control: Control[Any] | None = None,
    *,
    handle_signals: bool = True,
    resources: dict[str, Any] | None = None,
) -> JobOutcome:
    """Run `job` to completion, stop or failure. Raises LockHeld if another runner holds the job."""
    # 0711, not 0700: the embedded PostgreSQL runs as its own OS user (when we are root) and must
    # traverse runtime/ to reach runtime/postgres; taking that away while it runs breaks it. Others
    # still cannot list the directory (never 0755, whatever made it), every file in it is 0600 and
    # the store directories below (postgres/, clickhouse/) are owner-only.
    ensure_private_dir(settings.runtime, 0o711)
    control = control or Control(job.name, bus, job.live_settings())
    lock = job_lock(settings, job.name)
    lock.acquire()
    pid_path = settings.runtime / f"{job.name}.pid"
    atomic_write_bytes(pid_path, f"{os.getpid()}\n".encode())
    sink = LogFileSink(settings.runtime / f"{job.name}.console.log")
    bus.add_listener(sink)
    verdict = _GatesVerdict()
    bus.add_listener(verdict)
    ctx = JobContext(job.name, settings, control, bus, resources or {})
    endpoint = JobEndpoint(job.name, bus, control, settings.runtime, queries=ctx.queries)
    started = time.monotonic()
    outcome = JobOutcome(JobState.FAILED)
    aborted = False

    try:
        sink.write(f"{_fmt_ts(time.time())} START   {job.name} pid={os.getpid()}")
        await endpoint.open()  # runtime/<job>.sock; its task group encloses the job's (see aclose)
        async with anyio.create_task_group() as tg:
            job_scope = anyio.CancelScope()

            async def watch_signals() -> None:
                nonlocal aborted
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not control.stop_requested:
                            ctx.log(f"{name} received: finishing the current unit of work, then stopping "
                                    "(send it again to abort at once)", level="WARNING")
                            control.stop(f"{name} received")
                        else:
                            ctx.log(f"second {name}: aborting now; the last checkpoint stays valid", level="ERROR")
                            aborted = True
                            job_scope.cancel()
                            return

            async def run() -> None:
                nonlocal outcome
                with job_scope:
                    try:
                        # First event of every run: what the job is, for any console watching.
                        ctx.emit(JobStarted(job=job.name, panels=tuple(job.panels)))
                        control.started()
                        await job.run(ctx)
                    except OpsError as exc:
                        outcome = JobOutcome(JobState.FAILED, redact(str(exc)), error_code=exc.exit_code)
                    except anyio.get_cancelled_exc_class():
                        raise
                    except Exception as exc:  # the job failed: say what, keep the details in the log
                        sink.write(redact(traceback.format_exc()))
                        outcome = JobOutcome(JobState.FAILED, redact(f"{type(exc).__name__}: {exc}"))
                    else:
                        if control.stop_requested:
                            outcome = JobOutcome(JobState.STOPPED, control.stop_reason)
                        else:
                            outcome = JobOutcome(JobState.DONE)
                if job_scope.cancelled_caught or aborted:
                    outcome = JobOutcome(JobState.ABORTED, "aborted by a second signal")
                tg.cancel_scope.cancel()

            if handle_signals:
                tg.start_soon(watch_signals)
            tg.start_soon(run)
    finally:
        outcome.elapsed_s = time.monotonic() - started
        outcome.gates_failed = verdict.failed
        if outcome.state is JobState.FAILED and outcome.error:
            ctx.log(f"job failed: {outcome.error}", level="ERROR")
        control.finish(outcome.state, outcome.error or "")
        await endpoint.aclose()  # after the final state: connected clients see it, then the socket goes
        sink.write(f"{_fmt_ts(time.time())} END     {job.name} state={outcome.state.value} exit={int(outcome.exit_code)}")
        bus._callbacks.remove(sink)
        bus._callbacks.remove(verdict)
        sink.close()
        pid_path.unlink(missing_ok=True)
        lock.release()
    return outcome
