"""Headless rendering of a job's event stream: rich progress on a TTY, plain lines otherwise,
JSON lines with `--log-format json`. Never imports Textual (checked by a test)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import anyio

from engine.bus import EventBus, Subscription
from engine.control import Control
from engine.errors import OpsError
from engine.events import CheckpointSaved, Event, LogLine, Progress, StateChanged
from engine.redact import redact
from engine.runner import Job, JobOutcome, format_event, run_job
from engine.settings import Settings
from engine.wire import event_json


class PlainRenderer:
    """Timestamped lines; progress at most every `progress_every` seconds per step."""

    def __init__(self, stream: TextIO, progress_every: float = 5.0) -> None:
        self.stream = stream
        self.progress_every = progress_every
        self._last_progress: dict[tuple[str, ...], float] = {}

    def _throttled(self, key: tuple[str, ...], final: bool, every: float) -> bool:
        now = time.monotonic()
        if not final and now - self._last_progress.get(key, 0.0) < every:
            return True
        self._last_progress[key] = now
        return False

    def handle(self, event: Event) -> None:
        if isinstance(event, Progress):
            finished = event.total is not None and event.done >= event.total
            if self._throttled(("progress", event.job, event.step), finished, self.progress_every):
                return
        elif isinstance(event, CheckpointSaved):
            # One line per batch and store would drown the screen; the log file keeps every one.
            if self._throttled(("checkpoint", event.job, event.step, event.where), False, self.progress_every):
                return
        line = format_event(event)
        if line is not None:
            self.stream.write(redact(line) + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


class JsonRenderer(PlainRenderer):
    def handle(self, event: Event) -> None:
        if isinstance(event, Progress):
            key = (event.job, event.step)
            now = time.monotonic()
            if now - self._last_progress.get(key, 0.0) < 1.0 and not (event.total and event.done >= event.total):
                return
            self._last_progress[key] = now
        self.stream.write(event_json(event) + "\n")  # the job socket's event schema (engine/wire.py)
        self.stream.flush()


class RichRenderer:
    """Live progress bars (one per step) with the lines that matter scrolling above them: state
    changes, warnings, failures, step summaries. Per-batch checkpoint lines (two per Step D batch,
    906 at seed scale) and DEBUG lines go only to the log file and attached consoles, unless
    `verbose` (`-v`)."""

    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.verbose = verbose
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(file=stream)
        self.progress = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.tasks: dict[tuple[str, str], Any] = {}
        self.progress.start()

    def handle(self, event: Event) -> None:
        if isinstance(event, Progress):
            key = (event.job, event.step)
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(f"{event.job}:{event.step}", total=event.total, unit=event.unit)
            self.progress.update(self.tasks[key], completed=event.done, total=event.total)
            return
        if not self.verbose and (isinstance(event, CheckpointSaved)
                                 or (isinstance(event, LogLine) and event.level == "DEBUG")):
            return
        line = format_event(event)
        if line is None:
            return
        style = ""
        if isinstance(event, LogLine):
            style = {"ERROR": "red", "WARNING": "yellow", "DEBUG": "dim"}.get(event.level, "")
        elif isinstance(event, StateChanged):
            style = "bold cyan"
        elif type(event).__name__ == "Failure":
            style = "red"
        self.console.print(redact(line), style=style, markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def make_renderer(log_format: str, stream: TextIO | None = None, verbose: bool = False) -> Any:
    stream = stream or sys.stdout
    if log_format == "json":
        return JsonRenderer(stream)
    if log_format == "plain" or not stream.isatty():
        return PlainRenderer(stream)
    return RichRenderer(stream, verbose=verbose)


async def render(sub: Subscription, renderer: Any) -> None:
    async for event in sub:
        renderer.handle(event)


async def run_headless(job: Job, settings: Settings, *, log_format: str = "auto", stream: TextIO | None = None,
                       resources: dict[str, Any] | None = None, verbose: bool = False) -> JobOutcome:
    bus = EventBus()
    sub = bus.subscribe()
    renderer = make_renderer(log_format, stream, verbose=verbose)
    control = Control(job.name, bus, job.live_settings())
    error: OpsError | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(render, sub, renderer)
            try:
                outcome = await run_job(job, settings, bus, control, resources=resources)
            except OpsError as exc:  # e.g. the lock is held: re-raised plainly, not in a group
                error = exc
            finally:
                bus.close()
    finally:
        renderer.close()
    if error is not None:
        raise error
    return outcome
