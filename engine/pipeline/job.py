"""The forecast pipeline as a job on the foundation runtime: the single-process runner.

fetch (Gamma or a snapshot) -> normalize -> group by event -> for each event, in a sliding window of
at most N events in flight: look up what is already stored, run the missing research, then the
missing forecasts whose research is there, committing each result the moment its call returns.

Crash safety comes from the natural key of every result, (event_key, experiment_name, config_hash):
whatever completed before a crash is found and reused by the next run, so no finished LLM call is
paid for twice. Pause/stop act between events (`pause_point`); in-flight events finish.

A run is three pieces, shared with `--worker` (engine/pipeline/worker.py): the frozen
`PipelineConfig` (config.py), a fresh `RunState` per run (run_state.py) and the `EventProcessor`
(event_processor.py). This module only drives them: open the store, ingest, schedule events, finalize.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from engine.last_result import save_last
from engine.errors import OpsError
from engine.pipeline.config import Configs, PipelineConfig, PipelineLive
from engine.pipeline.event_processor import EventProcessor
from engine.pipeline.experiments import Registry
from engine.pipeline.ingest import ingest
from engine.pipeline.normalize import EventGroup
from engine.pipeline.options import PipelineOptions, new_run_id
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.run_state import RunState, pause_point
from engine.redact import redact
from engine.runner import JobContext

__all__ = ["HEARTBEAT_EVERY_S", "PipelineJob", "PipelineLive", "git_sha"]

HEARTBEAT_EVERY_S = 30.0


def git_sha() -> str:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class PipelineJob:
    """One pipeline run in this process. `PipelineWorkerJob` derives from it only for what every
    pipeline job has (name, config, live settings, run id, summary) and drives its own run."""

    name = "pipeline"
    panels = ("pipeline",)  # the console shows its per-event counters (Job.panels)

    def __init__(self, options: PipelineOptions, registry: Registry | None = None) -> None:
        # Validates flags, override files and inline overrides: bad input fails here (exit 4).
        self.config = PipelineConfig.build(options, registry)
        self.run_id = self.config.options.run_id or new_run_id()
        self.summary: dict[str, Any] | None = None
        self.state: RunState | None = None  # the current (or last) run's state, once it started

    @property
    def options(self) -> PipelineOptions:
        return self.config.options

    @property
    def registry(self) -> Registry:
        return self.config.registry

    def live_settings(self) -> PipelineLive:
        return self.config.live_settings()

    # --- the run ---------------------------------------------------------------------------------
    async def run(self, ctx: JobContext) -> None:
        config, settings = self.config, ctx.settings
        state = self.state = RunState.begin(config, ctx, config.select_available(settings), self.run_id,
                                            config.options.window())
        processor = EventProcessor(state)
        pg = None
        status, error = "failed", None
        # LLM clients start up (SDK imports, TLS context: a few hundred ms) while the database is
        # prepared and markets are fetched, instead of on the first event's critical path.
        warmup = threading.Thread(target=state.providers.warm_up, args=(state.selection.experiments,),
                                  name="llm-client-startup", daemon=True)
        try:
            warmup.start()
            if not config.options.dry_run:
                from engine.stores.postgres import Postgres

                pg = Postgres(settings)
                await pg.open()
                state.repo = PipelineRepository(pg)
                await state.repo.migrate()
                sha = await anyio.to_thread.run_sync(git_sha)
                abandoned = await state.repo.start_run(
                    state.run_id, window=state.window_desc,
                    options=config.options_record(state.selection, state.window_desc, settings), git_sha=sha,
                    environment=settings.environment,
                )
                for rid in abandoned:
                    ctx.log(f"marked run {rid} failed: its process died without finalizing it", level="WARNING")
                await state.save_experiment_runs("running")
            groups = await ingest(state)
            await anyio.to_thread.run_sync(warmup.join)
            state.log_provider_startup_errors()
            await self._process_all(state, processor, groups)
            if ctx.control.stop_requested:
                status = "stopped"
            else:
                status = "completed_with_errors" if state.stats.failures_total else "completed"
        except OpsError as exc:
            error = redact(str(exc))
            raise
        except anyio.get_cancelled_exc_class():
            error = "aborted"
            raise
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._finalize(state, status, error)
                if warmup.is_alive():
                    await anyio.to_thread.run_sync(warmup.join)  # it may still be adding providers
                await state.providers.aclose()
                if pg is not None:
                    await pg.close()

    async def _finalize(self, state: RunState, status: str, error: str | None) -> None:
        extra = state.summary_extra(error)
        if self.options.summary_path:
            extra["summary_path"] = str(self.options.summary_path)
        summary = state.stats.summary(status, extra)
        self.summary = summary
        try:  # the console's launcher and `pipeline` on a terminal read the last summary from here
            save_last(state.ctx.settings.runtime, "pipeline", summary)
        except OSError as exc:
            state.ctx.log(f"could not record the summary in the runtime dir: {exc}", level="WARNING")
        if state.repo is not None:
            try:
                await state.repo.finish_run(state.run_id, status, state.stats.counts(), summary, error)
                await state.save_experiment_runs(status)
            except Exception as exc:  # the summary file and stdout still carry the result
                state.ctx.log(f"could not finalize run {state.run_id} in Postgres: {redact(str(exc))}", level="ERROR")
        await state.publish_summary(self.name, summary)

    # --- events ----------------------------------------------------------------------------------
    def _progress(self, state: RunState) -> None:
        s = state.stats
        state.ctx.progress("events", s.events_done, s.events_total, unit="events", in_flight=s.in_flight,
                           llm_calls=s.llm_calls, tokens=s.tokens, cost_usd=round(s.cost_usd, 6),
                           suites=s.progress_suites())

    async def _process_all(self, state: RunState, processor: EventProcessor, groups: list[EventGroup]) -> None:
        ctx, stats = state.ctx, state.stats
        slots = anyio.Semaphore(self.config.event_batch_size(ctx.settings))
        heartbeat = _Heartbeat(state)
        self._progress(state)
        async with anyio.create_task_group() as tg:
            for index, group in enumerate(groups):
                await slots.acquire()
                if not await pause_point(ctx.control, lambda: stats.in_flight):
                    slots.release()
                    stats.events_not_started = len(groups) - index
                    ctx.log(f"stopping: {stats.in_flight} event(s) in flight finish, "
                            f"{stats.events_not_started} not started")
                    break
                configs, hashes = state.configs_now()
                stats.in_flight += 1
                tg.start_soon(self._event_task, state, processor, heartbeat, group, configs, hashes, slots)
        self._progress(state)

    async def _event_task(self, state: RunState, processor: EventProcessor, heartbeat: _Heartbeat, group: EventGroup,
                          configs: Configs, hashes: dict[str, str], slots: anyio.Semaphore) -> None:
        stats = state.stats
        try:
            failed = await processor.run_event(group, configs, hashes)
        finally:
            stats.in_flight -= 1
            stats.events_done += 1  # counted even when aborted: the summary says how far the run got
            slots.release()
        if failed:
            stats.events_with_failures += 1
        self._progress(state)
        await heartbeat.maybe()


class _Heartbeat:
    """processing_runs.heartbeat at most every HEARTBEAT_EVERY_S, after an event finishes: it tells
    the next run that this process is alive (a silent run is marked failed as abandoned)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.last = time.monotonic()

    async def maybe(self) -> None:
        state = self.state
        if state.repo is None or time.monotonic() - self.last <= HEARTBEAT_EVERY_S:
            return
        self.last = time.monotonic()
        try:
            await state.repo.heartbeat(state.run_id, state.stats.counts())
        except Exception as exc:  # the next event tries again; a run only looks abandoned after a long silence
            state.ctx.log(f"heartbeat failed: {redact(str(exc))}", level="WARNING")
