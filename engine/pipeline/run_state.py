"""The state of one pipeline run: made fresh when a run starts, thrown away when it ends.

A `RunState` holds what a run accumulates (run id, window, stats, per-experiment counts, the
repository handle, the LLM providers, the live configuration last seen) and the few operations
both runners need on it: record a failure, save the experiment rows, publish the summary.
`pause_point` is the one pause/stop boundary both the single runner and `--worker` pass before
they start new work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine.control import Control
from engine.errors import BadInput
from engine.events import Summary
from engine.files import atomic_write_json
from engine.pipeline.config import Configs, PipelineConfig
from engine.pipeline.dumps import DumpWriter
from engine.pipeline.experiments import Experiment, Selection
from engine.pipeline.forecast import StrategyError
from engine.pipeline.gamma import Window
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.summary import RunStats
from engine.redact import redact
from engine.runner import JobContext
from engine.settings import Settings

PAUSE_POLL_S = 0.05


async def pause_point(control: Control[Any], busy: Callable[[], int]) -> bool:
    """Pass this before starting new work; False means stop.

    Pause means: start nothing new, let the work in hand finish (`busy()` reaches 0: events in
    flight, or events claimed and not yet marked done), then hold at `control.boundary()`, which
    is where the job reports itself paused. Stop skips the drain: in-flight work finishes anyway
    while the runner leaves its loop."""
    if control.pause_requested and not control.stop_requested:
        while busy() and control.pause_requested and not control.stop_requested:
            await anyio.sleep(PAUSE_POLL_S)
    return await control.boundary()


class ProviderPool:
    """One LLM provider per family (openai, gemini), created on first use and closed at the end."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # No lock: `warm_up` runs in a thread that the runner joins before the first event and
        # before `aclose`, so the thread and the event loop never use this dict at the same time.
        self._providers: dict[str, Any] = {}
        self.startup_errors: dict[str, str] = {}  # family -> why warm_up could not create it

    def get(self, exp: Experiment) -> Any:
        family = exp.kind.split("_", 1)[0]
        if family not in self._providers:
            self._providers[family] = self._create(family, exp)
        return self._providers[family]

    def _create(self, family: str, exp: Experiment) -> Any:
        settings = self._settings
        if family == "openai":
            from engine.pipeline.llm_openai import OpenAIProvider

            assert settings.openai_api_key is not None
            return OpenAIProvider(settings.openai_api_key.get_secret_value(), settings.openai_base_url)
        if family == "gemini":
            from engine.pipeline.llm_gemini import GeminiProvider

            assert settings.gemini_api_key is not None
            return GeminiProvider(settings.gemini_api_key.get_secret_value(), settings.gemini_base_url)
        raise StrategyError(f"no provider for strategy kind {exp.kind!r}", retriable=False)

    def warm_up(self, experiments: list[Experiment]) -> None:
        """Create the providers these experiments use ahead of the first event (SDK imports, TLS
        context: a few hundred ms), in a worker thread. Nothing is lost when one fails here: the
        first event that needs it calls `get` again, gets the same error, and reports it against
        that event like any other provider error. The error is kept so the runner can log it (a
        thread must not publish on the event bus)."""
        for exp in experiments:
            if exp.uses_llm:
                try:
                    self.get(exp)
                except Exception as exc:
                    self.startup_errors.setdefault(exp.kind.split("_", 1)[0], redact(f"{type(exc).__name__}: {exc}"))

    async def aclose(self) -> None:
        for provider in list(self._providers.values()):
            await provider.aclose()


@dataclass
class RunState:
    config: PipelineConfig
    ctx: JobContext
    selection: Selection
    run_id: str
    window: Window | None  # one per run, fixed at its start: ingestion uses exactly what the run records
    stats: RunStats
    dumps: DumpWriter
    providers: ProviderPool
    exp_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_configs: Configs = field(default_factory=dict)  # what the last event started with
    repo: PipelineRepository | None = None  # None: dry run (or not connected yet)

    @classmethod
    def begin(cls, config: PipelineConfig, ctx: JobContext, selection: Selection, run_id: str,
              window: Window | None) -> RunState:
        """Per-run state once the run id and window are known. Workers that join a run pass the run's
        recorded window, so every worker (and an ingestion takeover) uses the same one."""
        opts, settings = config.options, ctx.settings
        stats = RunStats(run_id, opts.dry_run)
        for suite in selection.suites:
            st = stats.suite(suite)
            if suite in selection.skipped_suites:
                st.skipped_reason = selection.skipped_suites[suite]
                ctx.log(f"suite {suite} skipped: {st.skipped_reason}", level="WARNING")
        dump_root = None if opts.no_debug_dump else (opts.debug_dump_dir or settings.debug_dump_dir)
        state = cls(
            config=config, ctx=ctx, selection=selection, run_id=run_id, window=window, stats=stats,
            dumps=DumpWriter(Path(dump_root).expanduser().resolve() if dump_root else None, run_id),
            providers=ProviderPool(settings),
            exp_counts={e.name: {"ok": 0, "failed": 0, "reused": 0, "skipped": 0} for e in selection.experiments},
            last_configs=config.start_configs,
        )
        ctx.log(f"run {run_id}: {len(selection.experiments)} experiment(s) selected: "
                f"{', '.join(e.name for e in selection.experiments) or 'none'}"
                + (" (dry run: nothing is written to the database)" if opts.dry_run else ""))
        return state

    @property
    def window_desc(self) -> dict[str, str | None]:
        return self.window.describe() if self.window else {"start": None, "end": None}

    def configs_now(self) -> tuple[Configs, dict[str, str]]:
        """Configs for an event about to start: files + the live inline overrides as they are now."""
        try:
            configs = self.config.configs_with(self.ctx.control.live.experiment_overrides)
            if configs != self.last_configs:
                self.ctx.log("experiment overrides changed: events starting from now use the new configuration")
            self.last_configs = configs
        except BadInput as exc:
            self.ctx.log(f"ignoring live overrides ({exc}); keeping the previous configuration", level="ERROR")
        return self.last_configs, self.config.hashes(self.last_configs)

    def log_provider_startup_errors(self) -> None:
        for family, reason in self.providers.startup_errors.items():
            self.ctx.log(f"{family} client startup failed ({reason}); every event using it reports the error",
                         level="WARNING")

    def record_failure(self, market_id: str | None, reason: str, retriable: bool, experiment: str | None,
                       event_key: str | None, stage: str, sink: list[dict[str, Any]]) -> None:
        """Count it, publish it, and add its processing_failures row to `sink` (saved by the caller)."""
        reason = redact(reason)
        self.stats.add_failure(market_id, reason, retriable, experiment, event_key)
        self.ctx.failure(market_id or "(no id)", reason, retriable)
        sink.append({"run_id": self.run_id, "market_id": market_id, "event_key": event_key,
                     "experiment_name": experiment, "stage": stage, "reason": reason, "retriable": retriable})

    async def save_experiment_runs(self, status: str) -> None:
        if self.repo is None:
            return
        start = self.config.start_configs
        hashes = self.config.hashes(start)
        rows = [
            {"name": e.name, "suite": e.suite, "stage": e.stage, "variant": e.variant,
             "config": start[e.name], "config_hash": hashes[e.name], "status": status,
             "counts": self.exp_counts.get(e.name, {})}
            for e in self.selection.experiments
        ]
        await self.repo.save_experiment_runs(self.run_id, rows)

    def summary_extra(self, error: str | None) -> dict[str, Any]:
        """The summary fields both runners add to the stats."""
        o, run_dir = self.config.options, self.dumps.run_dir
        return {"window": self.window_desc, "stage": o.stage, "source": str(o.source) if o.source else None,
                "dump_dir": str(run_dir) if run_dir is not None and run_dir.is_dir() else None, "error": error}

    async def publish_summary(self, job_name: str, summary: dict[str, Any]) -> None:
        """--summary-path (when asked for), then the Summary event every renderer prints."""
        path = self.config.options.summary_path
        if path:
            try:
                await anyio.to_thread.run_sync(atomic_write_json, Path(path), summary)
            except OSError as exc:
                self.ctx.log(f"could not write --summary-path {path}: {exc}", level="ERROR")
        self.ctx.emit(Summary(job=job_name, data=summary))
