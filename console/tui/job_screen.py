"""The job screen: watch and steer one run.

Flow (after Harlequin): background workers never touch widgets. The event pump and the store
pollers only post messages; the handlers fold them into the `JobView` and update the panels.
Keys call the job's `Control` directly and reflect the new state in the header at once, so
"pausing" shows in the same frame as the key press even though the job only holds at its next
unit boundary.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import anyio
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import TabbedContent, TabPane

from console.tui.actions import JOB_ACTIONS, bindings
from console.tui.modals import ConfirmScreen, EditLiveScreen, FilterScreen, HelpScreen, QuitChoiceScreen
from console.tui.model import JobView
from console.tui.session import JobSession
from console.tui.widgets import (
    FailuresSummary,
    FailuresTable,
    GatesPanel,
    KeysFooter,
    LogPane,
    LogTail,
    MutationsPanel,
    MutationsTable,
    PipelinePanel,
    ProgressPanel,
    StatusHeader,
    event_line,
)
from engine.errors import OpsError
from engine.events import (
    Event,
    Failure,
    GateResult,
    JobState,
    LogLine,
    MutationInfo,
    MutationStatus,
    Progress,
    StateChanged,
)
from engine.redact import redact
from engine.runner import JobOutcome, run_job

REPAINT_EVERY_S = 0.2
QUIET_REPAINT_EVERY_S = 1.0  # progress alone, and the header's clock
LINES_EVERY_S = 0.03  # new log lines: only the log widgets redraw
QUIET_EVENTS_EVERY_S = 0.1  # events that change nothing on screen before the next tick
TIMER_SLACK_S = 0.003  # a flush due within this is done now rather than on a timer
LINE_LEAD_S = 0.01  # shown lines reach the screen this long before its next line flush
RUNNING_STATES = (JobState.STARTING, JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.STOPPING)


class EventsArrived(Message):
    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class JobEnded(Message):
    def __init__(self, outcome: JobOutcome | None, error: OpsError | None) -> None:
        super().__init__()
        self.outcome = outcome
        self.error = error


class GatesFetched(Message):
    def __init__(self, gates: list[GateResult] | None, error: str, ts: float) -> None:
        super().__init__()
        self.gates = gates
        self.error = error
        self.ts = ts


class MutationsFetched(Message):
    def __init__(self, details: list[MutationInfo] | None, error: str) -> None:
        super().__init__()
        self.details = details
        self.error = error


@dataclass
class _Waiter:
    predicate: Callable[[JobView], bool]
    event: asyncio.Event


def stores_label(session: JobSession) -> str:
    s = session.settings
    if s is None:
        return "stores —"
    if s.postgres_embedded and s.clickhouse_embedded:
        return "stores embedded"
    pg = "embedded" if s.postgres_embedded else "server"
    ch = "embedded" if s.clickhouse_embedded else "server"
    return f"PG {pg} · CH {ch}"


class JobScreen(Screen[None]):
    BINDINGS = bindings(JOB_ACTIONS)  # type: ignore[assignment]  # list is invariant; Binding is one of the allowed items
    ACTIONS = JOB_ACTIONS
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    def __init__(self, session: JobSession, *, clock: Callable[[], float], gates_interval: float | None = 30.0,
                 from_launcher: bool = False) -> None:
        super().__init__()
        self.session = session
        self.clock = clock
        self.gates_interval = gates_interval
        self.from_launcher = from_launcher
        # A job run here declares its panels now; a watched one says so in its first event.
        panels = tuple(session.job.panels) if session.job is not None else ()
        self.view = JobView(session.name, panels=panels, live=session.control.live.model_dump())
        self.gates_busy = False
        self.mutations_busy = False
        self.note = ""
        self._waiters: list[_Waiter] = []
        self._pending_lines: list[tuple[int, str]] = []
        self._dirty_mutations = self._dirty_failures = False
        self._repaint_timer: Timer | None = None
        self._last_repaint = 0.0
        self._dirty_quiet = False  # progress or mutation counts not on screen yet (the 1-s tick paints them)
        self._lines_timer: Timer | None = None
        self._last_lines = 0.0
        self._painted_steps: set[str] = set()

    # --- layout ---------------------------------------------------------------------------------
    @cached_property
    def _log_full(self) -> LogPane:
        return self.query_one("#log-full", LogPane)

    @cached_property
    def _log_tail(self) -> LogTail:
        return self.query_one("#log-tail", LogTail)

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane("Overview", id="overview"):
                with Vertical(id="left"):
                    yield ProgressPanel(id="progress", classes="panel")
                    yield LogTail(id="log-tail", classes="panel")
                with Vertical(id="right"):
                    yield PipelinePanel(id="pipeline", classes="panel")
                    yield GatesPanel(id="gates", classes="panel")
                    yield MutationsPanel(id="mutations", classes="panel")
                    yield FailuresSummary(id="failures-summary", classes="panel")
            with TabPane("Mutations", id="mutations-tab"):
                yield MutationsTable(id="mutations-table")
            with TabPane("Failures", id="failures-tab"):
                yield FailuresTable(id="failures-table")
            with TabPane("Logs", id="logs-tab"):
                yield LogPane(id="log-full")
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#log-tail").border_title = "Recent log"
        self.query_one("#failures-summary").border_title = "Failures"
        self.refresh_panels(all_panels=True)
        self.set_interval(QUIET_REPAINT_EVERY_S, self._tick)
        self._last_repaint = time.monotonic()
        self.pump_events()
        if self.session.remote_runtime is not None:
            self.relay_remote()
        elif self.session.job is not None:
            self.run_the_job()
        self._start_auto_gates()

    def _start_auto_gates(self) -> None:
        if self.view.shows("gates") and self.gates_interval:
            # First automatic refresh after one interval: at start the job may be rebuilding the
            # very tables the gates read (the demo does); the job reports its own gates at the end.
            first = self.gates_interval
            if self.session.remote_runtime is not None:
                first *= random.uniform(1.0, 1.5)  # consoles attached together do not ask together
            self.set_timer(first, self._auto_gates)

    # --- workers: they only post messages ---------------------------------------------------
    @work(group="events", exit_on_error=False)
    async def pump_events(self) -> None:
        """Hand the bus's events to the screen, each no later than its hold (`_hold`) after it
        arrived, together with everything that came before it. A state, a failure or a new step
        goes at once; a shown line just before the log widgets' next flush; progress and DEBUG
        lines, which only the once-a-second tick paints, wait up to QUIET_EVENTS_EVERY_S. A Step D
        batch's reports, or a burst of lines, then cost the console one message, not one each."""
        sub = self.session.sub
        held: list[Event] = []
        due = 0.0
        steps_seen: set[str] = set()
        while True:
            batch: list[Event] | None = None
            if not held:
                batch = await sub.receive_batch()
            else:
                with anyio.move_on_after(due - time.monotonic()):
                    batch = await sub.receive_batch()
            if batch is None:  # the held events are due
                self.post_message(EventsArrived(held))
                held = []
                continue
            if not batch:  # the bus closed and everything was read
                if held:
                    self.post_message(EventsArrived(held))
                return
            now = time.monotonic()
            holds = [now + self._hold(event, steps_seen) for event in batch]
            due = min(due, *holds) if held else min(holds)
            held.extend(batch)
            if due <= now:
                self.post_message(EventsArrived(held))
                held = []

    def _hold(self, event: Event, steps_seen: set[str]) -> float:
        """How long `event` may wait before the screen handles it."""
        if isinstance(event, Progress) and event.step not in steps_seen:
            steps_seen.add(event.step)
            return 0.0  # a new step is painted within REPAINT_EVERY_S
        if isinstance(event, LogLine) and not event.routine():
            # A shown line: the log widgets take new lines every LINES_EVERY_S. Held until just
            # before the next of those, lines arriving meanwhile go as one message (under a flood,
            # about one per flush instead of one per socket read), and are on time for it.
            return max(0.0, self._last_lines + LINES_EVERY_S - LINE_LEAD_S - time.monotonic())
        if not event.routine():
            return 0.0  # states, failures, gates, settings, summaries
        if not isinstance(event, Progress) and self._log_full.is_on_screen:
            return 0.0  # the Logs tab shows every line, DEBUG and checkpoints included
        return QUIET_EVENTS_EVERY_S

    @work(group="job", exit_on_error=False)
    async def run_the_job(self) -> None:
        s = self.session
        assert s.job is not None and s.settings is not None
        outcome: JobOutcome | None = None
        error: OpsError | None = None
        try:
            outcome = await run_job(s.job, s.settings, s.bus, s.control, handle_signals=False, resources=s.resources)
        except OpsError as exc:  # e.g. the lock is held by another runner: say so in the header
            error = exc
        except Exception as exc:  # the runner itself broke: show it rather than hang in "running"
            error = OpsError(redact(f"the job runner failed: {type(exc).__name__}: {exc}"))
        except asyncio.CancelledError:
            # A second SIGTERM (or leaving the app) cancels the job; run_job already left the
            # last checkpoint valid. Record it as aborted and let the cancellation through.
            s.aborted = True
            s.bus.close()
            raise
        finally:
            if error is not None or outcome is not None:
                s.bus.close()
        self.post_message(JobEnded(outcome, error))

    @work(group="job", exit_on_error=False)
    async def relay_remote(self) -> None:
        """Attached to a job in another process: relay its socket onto this session's bus.
        Leaving (detach, quit, a killed console) only closes the connection; the job runs on."""
        from console.tui.remote import RemoteControl, outcome_from_log, relay
        from engine.endpoint_client import connect

        s = self.session
        assert s.remote_runtime is not None and isinstance(s.control, RemoteControl)
        error: OpsError | None = None
        outcome: JobOutcome | None = None
        try:
            async with connect(s.remote_runtime, s.name) as client:
                s.control.client = client
                s.control.on_refused = lambda cmd, why: self.notify(f"{cmd}: {why}", title="refused by the job",
                                                                    severity="error")
                outcome = await relay(client, s.control, s.bus)
        except OpsError as exc:
            error = exc
        finally:
            s.control.client = None
        if outcome is None:
            # Gone before its final state reached us (a short job can end between the probe and
            # this connection): its log's END line says how it ended.
            ended = outcome_from_log(s.remote_runtime, s.name)
            if ended is not None:
                outcome, error = ended, None
                s.bus.publish(StateChanged(job=s.name, state=ended.state, reason=ended.error))
        if outcome is None and error is None:
            error = OpsError(f"lost the connection to {s.name}; it may still be running "
                             "(`opsconsole status`, then `opsconsole attach`)")
        s.bus.close()
        self.post_message(JobEnded(outcome, error))

    @work(group="gates", exit_on_error=False)
    async def fetch_gates_remote(self) -> None:
        client = getattr(self.session.control, "client", None)
        try:
            if client is None:
                raise OpsError("not connected to the job")
            gates = await client.gates(refresh=True)
        except Exception as exc:
            self.post_message(GatesFetched(None, f"gates failed: {redact(str(exc))[:200]}", self.clock()))
        else:
            self.post_message(GatesFetched(gates, "", self.clock()))

    @work(group="mutations", exit_on_error=False)
    async def fetch_mutations_remote(self) -> None:
        client = getattr(self.session.control, "client", None)
        try:
            if client is None:
                raise OpsError("not connected to the job")
            details = await client.mutations()
        except Exception as exc:
            self.post_message(MutationsFetched(None, f"mutations query failed: {redact(str(exc))[:200]}"))
        else:
            self.post_message(MutationsFetched(details, ""))

    def _clickhouse(self) -> Any:
        """The job's own handle when it shared one; otherwise the process-wide session for the
        configured path (chDB allows one per process, so this is the same engine the job uses)."""
        ch = self.session.resources.get("ch") or self.session.resources.get("clickhouse")
        if ch is not None:
            return ch
        from engine.stores.clickhouse import open_clickhouse

        assert self.session.settings is not None
        return open_clickhouse(self.session.settings)

    @work(group="gates", thread=True, exit_on_error=False)
    def fetch_gates(self) -> None:
        try:
            from engine.enrichment.gates import compute_gates
            from engine.enrichment.gates_record import compute_and_save

            settings = self.session.settings
            ch = self._clickhouse()
            gates = compute_gates(ch) if settings is None else compute_and_save(ch, settings.runtime)
        except Exception as exc:  # a store error is shown in the panel, never raised into the UI
            self.post_message(GatesFetched(None, f"gates failed: {redact(str(exc))[:200]}", self.clock()))
        else:
            self.post_message(GatesFetched(gates, "", self.clock()))

    @work(group="mutations", thread=True, exit_on_error=False)
    def fetch_mutations(self) -> None:
        try:
            from engine.enrichment.mutations import pending_mutations

            details = list(pending_mutations(self._clickhouse()))
        except Exception as exc:
            self.post_message(MutationsFetched(None, f"mutations query failed: {redact(str(exc))[:200]}"))
        else:
            self.post_message(MutationsFetched(details, ""))

    # --- handlers: the only place UI state changes --------------------------------------------
    @on(EventsArrived)
    def handle_events(self, message: EventsArrived) -> None:
        state_before = self.view.state
        had_gates = self.view.shows("gates")
        first_new_line = len(self._pending_lines)
        for event in message.events:
            self.view.apply(event)
            if isinstance(event, MutationStatus):
                self._dirty_mutations = True
            elif isinstance(event, Failure):
                self._dirty_failures = True
            line = event_line(event)
            if line is not None:
                self._pending_lines.append(line)
        if self.view.state is not state_before:
            # State changes are shown at once (and the keys that apply change with them).
            self.refresh_header()
            self.refresh_bindings()
        if not had_gates:
            self._start_auto_gates()  # a watched job said what it is in its JobStarted event
        if self._dirty_failures or self.view.state is not state_before \
                or not self._painted_steps.issuperset(self.view.steps):
            self.schedule_repaint()
        else:
            self._dirty_quiet = True
        if self._lines_shown_now(self._pending_lines[first_new_line:]):
            self.schedule_lines()
        self._check_waiters()

    def _lines_shown_now(self, lines: list[tuple[int, str]]) -> bool:
        """Whether any of `lines` would appear on screen: the overview's tail skips DEBUG lines
        (a checkpoint per batch), the Logs tab shows everything while it is open."""
        if not lines:
            return False
        tail = self._log_tail
        return self._log_full.is_on_screen or any(rank >= tail.min_level for rank, _ in lines)

    def _tick(self) -> None:
        """Once a second: the header's clock, and what came with nothing urgent to show.

        During Step D each batch reports progress and a DEBUG checkpoint line several times a
        second; painting each at the log's cadence made every attached console a steady CPU load
        on the machine the job runs on. Shown lines are painted within LINES_EVERY_S, and a new
        step, a failure or a state change within REPAINT_EVERY_S."""
        if self._dirty_quiet and self._repaint_timer is None:
            self.flush()
        else:
            self.refresh_header()

    def _soon(self, timer: Timer | None, last: float, every: float, action: Callable[[], None]) -> Timer | None:
        """Run `action` now when `every` seconds have passed since `last`, else once when they
        have; the timer to keep (None when it ran now, or the one already pending)."""
        if timer is not None:
            return timer
        wait = every - (time.monotonic() - last)
        if wait <= TIMER_SLACK_S:  # due (a wakeup for "due now" can come a moment early)
            action()
            return None
        return self.set_timer(wait, action)

    def schedule_repaint(self) -> None:
        """Repaint the panels at most REPAINT_EVERY_S apart (Dolphie-style: a busy job must not
        turn the console into a CPU-bound redraw loop); the view itself is always current."""
        self._repaint_timer = self._soon(self._repaint_timer, self._last_repaint, REPAINT_EVERY_S, self.flush)

    def schedule_lines(self) -> None:
        """Append new log lines at most LINES_EVERY_S apart: only the log widgets are redrawn."""
        self._lines_timer = self._soon(self._lines_timer, self._last_lines, LINES_EVERY_S, self.flush_lines)

    def _stop(self, timer: Timer | None) -> None:
        """Cancel a scheduled flush that a flush made now has overtaken: left to fire, it starts
        a second chain of flushes beside the first (measured: ~28 line flushes a second where
        LINES_EVERY_S allowed 20)."""
        if timer is not None:
            timer.stop()

    def flush_lines(self) -> None:
        self._stop(self._lines_timer)
        self._lines_timer = None
        self._last_lines = time.monotonic()
        lines, self._pending_lines = self._pending_lines, []
        if lines:
            self._log_full.append(lines)
            self._log_tail.append(lines[-200:])

    def flush(self) -> None:
        """Bring every widget up to date with the view now."""
        self._stop(self._repaint_timer)
        self._repaint_timer = None
        self._last_repaint = time.monotonic()
        self._dirty_quiet = False
        self._painted_steps = set(self.view.steps)
        self.flush_lines()
        self.refresh_panels(mutations=self._dirty_mutations, failures=self._dirty_failures)
        self._dirty_mutations = self._dirty_failures = False

    @on(JobEnded)
    def handle_job_ended(self, message: JobEnded) -> None:
        s = self.session
        s.outcome, s.error = message.outcome, message.error
        if message.error is not None and s.remote_runtime is not None and self.view.ended_ts is None:
            # The connection ended, not necessarily the job: keep its last known state.
            self.note = redact(str(message.error))
            self.notify(self.note, title="connection", severity="warning", timeout=30)
        elif message.error is not None:
            self.view.state = JobState.FAILED
            self.view.state_reason = redact(str(message.error))
            self.view.ended_ts = self.clock()
            self.note = redact(str(message.error))
            self.notify(self.note, title="job did not start", severity="error", timeout=30)
        elif message.outcome is not None:
            self.view.state = message.outcome.state
            if self.view.ended_ts is None:
                self.view.ended_ts = self.clock()
            self.note = "finished — press q to " + ("go back" if self.from_launcher else "quit")
        self.flush()
        self.refresh_bindings()
        self._check_waiters()
        if s.quit_when_done:
            self.app.call_later(self.app.finish_session, s)  # type: ignore[attr-defined]

    @on(GatesFetched)
    def handle_gates(self, message: GatesFetched) -> None:
        self.gates_busy = False
        if message.gates is not None:
            self.view.set_gates(tuple(message.gates), message.ts)
        else:
            self.view.gates_error = message.error
        self.query_one("#gates", GatesPanel).show(self.view)
        self._check_waiters()
        # Next poll is scheduled only after this one finished (a slow store never piles up polls).
        if self.gates_interval and self.view.state in RUNNING_STATES and self.view.shows("gates"):
            self.set_timer(self.gates_interval, self._auto_gates)

    def gates_held(self) -> bool:
        """Whether automatic gates refreshes wait: while Step D writes, the gates would read the
        P&L it is rewriting (a partial picture) and compete with it for the store, costing a seed
        run seconds per refresh. The job reports its gates when the step ends; g asks at once."""
        return self.view.current_step == "D" and self.view.state in (JobState.RUNNING, JobState.PAUSING)

    def _auto_gates(self) -> None:
        if self.view.state not in RUNNING_STATES:
            return
        v = self.view
        if self.gates_interval and self.gates_held():
            self.set_timer(self.gates_interval, self._auto_gates)
            self.query_one("#gates", GatesPanel).show(v, refreshing=self.gates_busy, held=True)
            return
        if self.session.remote_runtime is not None and self.gates_interval and v.gates_ts is not None:
            # A job in another process computes the gates on the store its batches write to (one
            # statement at a time) and sends each refresh to every attached console: gates fresher
            # than one interval, asked for by another console, are not asked for again. N consoles
            # then cost the job one computation per interval, not N (three consoles polling made a
            # seed-scale Step D take 8× as long).
            age = self.clock() - v.gates_ts
            if age < self.gates_interval:
                self.set_timer(self.gates_interval - age, self._auto_gates)
                return
        self.action_refresh_gates()

    @on(MutationsFetched)
    def handle_mutations(self, message: MutationsFetched) -> None:
        self.mutations_busy = False
        if message.details is not None:
            self.view.set_mutations(len(message.details), tuple(message.details))
            self.refresh_panels(mutations=True)
        else:
            self.notify(message.error, severity="warning")
        self._check_waiters()

    # --- rendering ------------------------------------------------------------------------------
    def refresh_header(self) -> None:
        note = self.note
        if self.session.quit_when_done and not self.session.ended:
            note = "stopping: will quit once the current unit is checkpointed"
        self.query_one("#header", StatusHeader).show(self.view, self.clock(), stores_label(self.session), note)

    def refresh_panels(self, *, mutations: bool = False, failures: bool = False, all_panels: bool = False) -> None:
        v = self.view
        self.refresh_header()
        self.query_one("#progress", ProgressPanel).show(v)
        pipeline = self.query_one("#pipeline", PipelinePanel)
        pipeline.display = v.shows("pipeline")
        if pipeline.display:
            pipeline.show(v)
        gates = self.query_one("#gates", GatesPanel)
        gates.display = v.shows("gates")
        if gates.display:
            gates.show(v, refreshing=self.gates_busy, held=bool(self.gates_interval) and self.gates_held())
        mutations_panel = self.query_one("#mutations", MutationsPanel)
        mutations_panel.display = v.shows("mutations")
        if mutations_panel.display:
            mutations_panel.show(v)
        if mutations or all_panels:
            self.query_one("#mutations-table", MutationsTable).show(v)
        self.query_one("#failures-summary", FailuresSummary).show(v)
        if failures or all_panels:
            self.query_one("#failures-table", FailuresTable).show(v)

    # --- test and automation support -------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[JobView], bool]) -> None:
        """Resolve once the view satisfies `predicate` (checked after every handled message)."""
        if predicate(self.view):
            return
        waiter = _Waiter(predicate, asyncio.Event())
        self._waiters.append(waiter)
        await waiter.event.wait()

    def _check_waiters(self) -> None:
        for w in list(self._waiters):
            if w.predicate(self.view):
                w.event.set()
                self._waiters.remove(w)

    # --- which keys apply now ---------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        c = self.session.control
        running = self.job_running
        if action == "pause":
            return True if running and self.view.state in (JobState.RUNNING, JobState.STARTING) and not c.pause_requested else None
        if action == "resume":
            return True if running and c.pause_requested and not c.stop_requested else None
        if action == "stop":
            return True if running and not c.stop_requested else None
        if action == "edit_live":
            return True if running and not c.stop_requested else None
        if action == "detach":
            # Hidden for a job running inside this console: there is nothing to leave running.
            return self.session.remote_runtime is not None
        return True

    @property
    def job_running(self) -> bool:
        return not self.session.ended and self.view.state in RUNNING_STATES

    # --- actions (bound in the one table in actions.py) -------------------------------------------
    def _after_control(self) -> None:
        # Reflect the Control's new state now, not when the event comes back through the bus.
        self.view.state = self.session.control.state
        self.refresh_header()
        self.refresh_bindings()

    def action_pause(self) -> None:
        if self.session.control.pause():
            self._after_control()
        else:
            self.notify(f"pause does not apply while {self.view.state.value}", severity="warning")

    def action_resume(self) -> None:
        if self.session.control.resume():
            self._after_control()
        else:
            self.notify(f"resume does not apply while {self.view.state.value}", severity="warning")

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes and self.session.control.stop("stopped by the operator"):
                self._after_control()

        self.app.push_screen(ConfirmScreen(
            "Stop the job?",
            "The current unit of work finishes and is checkpointed, then the job exits. "
            "Resume later from the checkpoint.", yes="Stop"), answered)

    def action_edit_live(self) -> None:
        def done(changes: dict[str, Any] | None) -> None:
            if changes:
                self.notify("applied: " + ", ".join(f"{k}={v}" for k, v in changes.items()), title="live settings")

        self.app.push_screen(EditLiveScreen(self.session.control), done)

    def action_refresh_gates(self) -> None:
        remote = self.session.remote_runtime is not None
        if not self.view.shows("gates") or (self.session.settings is None and not remote):
            self.notify("gates apply to the enrichment job", severity="warning")
            return
        if self.gates_busy:
            return
        self.gates_busy = True
        self.query_one("#gates", GatesPanel).show(self.view, refreshing=True)
        # A job in another process holds the store (embedded chDB admits one process): ask it.
        if remote:
            self.fetch_gates_remote()
        else:
            self.fetch_gates()

    def action_show_mutations(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "mutations-tab"
        remote = self.session.remote_runtime is not None
        if self.view.shows("mutations") and (self.session.settings is not None or remote) and not self.mutations_busy:
            self.mutations_busy = True
            if remote:
                self.fetch_mutations_remote()
            else:
                self.fetch_mutations()

    def action_show_failures(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "failures-tab"

    def action_show_logs(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "logs-tab"

    def action_show_overview(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "overview"

    def action_filter_logs(self) -> None:
        pane = self.query_one("#log-full", LogPane)

        def done(result: tuple[str, int] | None) -> None:
            if result is not None:
                pane.set_filter(*result)
                self.action_show_logs()

        self.app.push_screen(FilterScreen(pane.text_filter, pane.min_level), done)

    def action_toggle_theme(self) -> None:
        self.app.action_toggle_theme()  # type: ignore[attr-defined]

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(f"Job · {self.session.name}", JOB_ACTIONS))

    def action_detach(self) -> None:
        """Leave the job running and close this console's connection to it."""
        s = self.session
        if s.remote_runtime is None:
            self.notify("this job runs inside this console: it cannot be left running", severity="warning")
            return
        if self.job_running:
            s.detached = True
            self.workers.cancel_group(self, "job")  # closes the connection; the job never notices
        self.app.finish_session(s)  # type: ignore[attr-defined]

    def action_quit_console(self) -> None:
        if not self.job_running:
            self.app.finish_session(self.session)  # type: ignore[attr-defined]
            return
        if self.session.remote_runtime is not None:
            def chosen(choice: str | None) -> None:
                if choice == "detach":
                    self.action_detach()
                elif choice == "stop":
                    self.request_stop_and_quit("stopped by the operator (quit)")

            self.app.push_screen(QuitChoiceScreen(self.session.name), chosen)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.request_stop_and_quit("stopped by the operator (quit)")

        self.app.push_screen(ConfirmScreen(
            "Quit while the job runs?",
            "The job is asked to stop gracefully: the current unit finishes and is checkpointed, "
            "then the console quits.", yes="Stop and quit"), answered)

    def request_stop_and_quit(self, reason: str) -> None:
        s = self.session
        s.quit_when_done = True
        if (s.job is None and s.remote_runtime is None) or s.ended:
            self.app.finish_session(s)  # type: ignore[attr-defined]
            return
        s.control.stop(reason)
        self._after_control()
