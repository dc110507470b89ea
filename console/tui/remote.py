"""A job running in another process, as the console sees it.

The job screen is written against a `JobSession`: a bus to read events from and a `Control` to
call. For a job in another process both are stand-ins fed by the job's socket: `pump` turns the
snapshot into the events that produced it, then relays the live stream onto a local bus, and
`RemoteControl` sends each operator action as a command. The job's own `StateChanged` events are
the truth; the control only shows an action's first step (PAUSING, STOPPING) in the same frame
as the key, exactly as a local Control does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError, create_model

from engine.bus import EventBus
from engine.control import Control
from engine.events import Event, GatesReported, JobStarted, JobState, LogLine, SettingsChanged, StateChanged

ReplyHandler = Callable[[str, str], None]  # (command, error) for a command the job refused


def live_model_for(job: str, values: dict[str, Any]) -> BaseModel:
    """The job's own live-settings model (so edits are checked before they are sent), or a plain
    model of the values when this console does not know the job (the job still validates)."""
    model: type[BaseModel] | None = None
    if job == "full-enrichment":
        from engine.enrichment.job import EnrichmentLive

        model = EnrichmentLive
    elif job == "pipeline":
        from engine.pipeline.job import PipelineLive

        model = PipelineLive
    elif job == "selftest":
        from engine.jobs.selftest import SelftestLive

        model = SelftestLive
    if model is not None:
        try:
            return model.model_validate(values)
        except ValidationError:
            pass  # a newer job with other fields: fall back to what it sent
    fields: dict[str, Any] = {name: (type(value), value) for name, value in values.items()}
    plain: BaseModel = create_model(f"{job}-live", **fields)()
    return plain


class RemoteControl(Control[Any]):
    """Operator actions sent to a job in another process over its socket."""

    def __init__(self, job: str, bus: EventBus, live: BaseModel, state: JobState,
                 on_refused: ReplyHandler | None = None) -> None:
        super().__init__(job, bus, live)
        self.state = state
        self._pause_requested = state in (JobState.PAUSING, JobState.PAUSED)
        self._stop_requested = state is JobState.STOPPING
        self.client: Any = None  # the JobClient, once the relay has connected
        self.on_refused = on_refused
        self._tasks: set[asyncio.Task[None]] = set()

    def _set_state(self, state: JobState, reason: str = "") -> None:
        # Shown in the header at once (the screen reads `state`), but not published: the log
        # records the job's own StateChanged when it comes back, once.
        self.state = state

    # --- what the job said -------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Follow the job's own state and settings (called for every relayed event)."""
        if isinstance(event, StateChanged):
            self.state = event.state
            self._pause_requested = event.state in (JobState.PAUSING, JobState.PAUSED)
            self._stop_requested = event.state is JobState.STOPPING or (
                self._stop_requested and not event.state.final)
        elif isinstance(event, SettingsChanged):
            try:
                self.live = type(self.live).model_validate(event.values)
            except ValidationError:
                pass

    # --- operator actions --------------------------------------------------------------------
    def _send(self, cmd: str, **args: Any) -> None:
        async def go() -> None:
            try:
                if self.client is None:
                    raise ConnectionError("not connected to the job yet")
                reply = await self.client.command(cmd, **args)
                ok, error = reply.ok, reply.error
            except Exception as exc:  # the job went away: the relay reports the lost connection
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if not ok:
                self.bus.publish(LogLine(job=self.job, level="ERROR", message=f"{cmd} refused by the job: {error}"))
                if self.on_refused is not None:
                    self.on_refused(cmd, error)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pause(self) -> bool:
        if not super().pause():
            return False
        self._send("pause")
        return True

    def resume(self) -> bool:
        if not super().resume():
            return False
        self._send("resume")
        return True

    def stop(self, reason: str = "stop requested") -> bool:
        if not super().stop(reason):
            return False
        self._send("stop", reason=reason)
        return True

    def update_live(self, changes: dict[str, Any]) -> Any:
        new = self.validated(changes)  # checked here first, for an answer in the same frame
        self._send("set_live", changes=changes)
        return new  # the job's SettingsChanged makes it current


def snapshot_events(snapshot: Any) -> list[Event]:
    """The events that rebuild a snapshot's picture in a fresh view, oldest first."""
    events: list[Event] = []
    events += list(snapshot.logs)
    events += list(snapshot.failures)
    events += list(snapshot.checkpoints.values())
    events += list(snapshot.progress.values())
    for one in (snapshot.gates, snapshot.mutations, snapshot.summary):
        if one is not None:
            events.append(one)
    # The current state is the snapshot's only StateChanged, so wherever it stands the header ends
    # on it. Stamped when the job entered it, it stands there in time order: the log reads "running"
    # before the lines the job wrote since. Older jobs do not say when: then it goes last, stamped
    # with the newest thing the job reported.
    def state_at(ts: float) -> StateChanged:
        return StateChanged(job=snapshot.job, state=snapshot.state, reason=snapshot.reason, ts=ts)

    if snapshot.state_ts is not None:
        events.append(state_at(snapshot.state_ts))
    events.sort(key=lambda e: e.ts)  # stable: the state follows lines of the same instant
    events.insert(0, JobStarted(job=snapshot.job, panels=tuple(snapshot.panels), ts=snapshot.started_at))
    if snapshot.state_ts is None:
        events.append(state_at(max([snapshot.started_at] + [e.ts for e in events])))
    return events


async def relay(client: Any, control: RemoteControl, bus: EventBus) -> Any:
    """Publish the snapshot's events, then the live stream, onto `bus`; return the job's outcome
    (a JobOutcome) once it reports a final state, or None when the connection ended first."""
    from engine.runner import JobOutcome

    last: StateChanged | None = None
    gates_failed: tuple[str, ...] = ()

    def forward(event: Event) -> None:
        nonlocal last, gates_failed
        control.observe(event)
        if isinstance(event, StateChanged):
            last = event
        elif isinstance(event, GatesReported):
            gates_failed = tuple(g.name for g in event.gates if g.status == "FAIL")
        bus.publish(event)

    for event in snapshot_events(client.snapshot):
        forward(event)
    if last is None or not last.state.final:
        ended = anyio.Event()  # the final state was forwarded, or the connection ended

        def forward_live(event: Event) -> None:
            forward(event)
            if last is not None and last.state.final:
                ended.set()

        async def follow() -> None:
            await client.follow(forward_live)
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await ended.wait()
            tg.cancel_scope.cancel()
    if last is None or not last.state.final:
        return None
    return JobOutcome(last.state, last.reason if last.state is JobState.FAILED else "", gates_failed=gates_failed)


def outcome_from_log(runtime: Path, job: str) -> Any:
    """How the job's last run ended, from the END line of its log: for a job that ended before this
    console could see its final state (a short job, or the connection dropped at the very end).
    None when the last run has no END line (still running, or killed)."""
    from console.commands.status import last_outcome
    from engine.errors import ExitCode
    from engine.runner import JobOutcome

    record = last_outcome(runtime, job)
    if record["exit"] is None:
        return None
    try:
        state = JobState(record["outcome"])
        code = ExitCode(record["exit"])
    except ValueError:
        return None
    log = f"runtime/{job}.console.log"
    if state is JobState.FAILED:
        return JobOutcome(state, f"the job failed (exit {int(code)}); see {log}", error_code=code)
    gates = ("see the job's log",) if code is ExitCode.GATES_FAILED else ()
    return JobOutcome(state, gates_failed=gates)
