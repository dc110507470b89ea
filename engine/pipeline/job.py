"""The forecast pipeline as a job on the foundation runtime.

fetch (Gamma or a snapshot) -> normalize -> group by event -> for each event, in a sliding window of
at most N events in flight: look up what is already stored, run the missing research, then the
missing forecasts whose research is there, committing each result the moment its call returns.

Crash safety comes from the natural key of every result, (event_key, experiment_name, config_hash):
whatever completed before a crash is found and reused by the next run, so no finished LLM call is
paid for twice. Pause/stop act between events (`control.boundary()`); in-flight events finish.
"""

from __future__ import annotations

import copy
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, field_validator

from engine.errors import BadInput, OpsError
from engine.events import Summary
from engine.files import atomic_write_json
from engine.pipeline.dumps import DumpWriter, new_document
from engine.pipeline.experiments import (
    Experiment,
    Registry,
    default_registry,
    effective_configs,
    experiment_hashes,
    select,
    suite_availability,
)
from engine.pipeline.forecast import StrategyError, StrategyOutput, baseline_forecast
from engine.pipeline.gamma import FetchResult, GammaClient, Window, load_snapshot
from engine.pipeline.normalize import EventGroup, NormalizationError, group_by_event, normalize_market
from engine.pipeline.options import PipelineOptions, new_run_id
from engine.pipeline.overrides import OverrideSet, build_override_set
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.summary import RunStats
from engine.redact import redact
from engine.runner import JobContext

HEARTBEAT_EVERY_S = 30.0


class PipelineLive(BaseModel):
    """Live settings: overrides edited while running apply to events not yet started."""

    experiment_overrides: list[str] = []

    @field_validator("experiment_overrides")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        try:
            effective_configs(default_registry(), OverrideSet().with_inline(value))
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return value


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
    name = "pipeline"
    panels = ("pipeline",)  # the console shows its per-event counters (Job.panels)

    def __init__(self, options: PipelineOptions, registry: Registry | None = None) -> None:
        # Everything an operator can get wrong is checked here, before any network or database work.
        options.validate()
        self.options = options
        self.registry = registry or default_registry()
        self.base_overrides = build_override_set(options.override_files, [])
        self.start_configs = effective_configs(self.registry, self.base_overrides.with_inline(options.experiment_overrides))
        select(self.registry, suites=options.suites, stage=options.stage,
               include_research=options.include_research, include_forecast=options.include_forecast)
        self.run_id = options.run_id or new_run_id()
        self.summary: dict[str, Any] | None = None
        self._providers: dict[str, Any] = {}
        self._dump_locks: dict[Path, anyio.Lock] = {}
        self._exp_counts: dict[str, dict[str, int]] = {}

    def live_settings(self) -> PipelineLive:
        return PipelineLive(experiment_overrides=list(self.options.experiment_overrides))

    # --- the run ---------------------------------------------------------------------------------
    def _select_available(self, ctx: JobContext) -> None:
        opts = self.options
        self.selection = select(
            self.registry, suites=opts.suites, stage=opts.stage, include_research=opts.include_research,
            include_forecast=opts.include_forecast, available=suite_availability(self.registry, ctx.settings),
        )

    def _prepare(self, ctx: JobContext, window: Window | None = None, *, use_window: bool = False) -> None:
        """Per-run state (stats, dumps, window) once the run id is known. Workers that join a run pass
        the run's recorded window, so every worker (and an ingestion takeover) uses the same one."""
        opts, settings = self.options, ctx.settings
        self.ctx = ctx
        self.stats = stats = RunStats(self.run_id, opts.dry_run)
        for suite in self.selection.suites:
            st = stats.suite(suite)
            if suite in self.selection.skipped_suites:
                st.skipped_reason = self.selection.skipped_suites[suite]
                ctx.log(f"suite {suite} skipped: {st.skipped_reason}", level="WARNING")
        for exp in self.selection.experiments:
            self._exp_counts[exp.name] = {"ok": 0, "failed": 0, "reused": 0, "skipped": 0}
        # One window per run, computed once: ingestion uses exactly the window the run records.
        self.fixed_window = window if use_window else opts.window()
        window = self.fixed_window
        self.window_desc: dict[str, str | None] = window.describe() if window else {"start": None, "end": None}
        dump_root = None if opts.no_debug_dump else (opts.debug_dump_dir or settings.debug_dump_dir)
        self.dumps = DumpWriter(Path(dump_root).expanduser().resolve() if dump_root else None, self.run_id)
        self.last_configs = self.start_configs
        ctx.log(f"run {self.run_id}: {len(self.selection.experiments)} experiment(s) selected: "
                f"{', '.join(e.name for e in self.selection.experiments) or 'none'}"
                + (" (dry run: nothing is written to the database)" if opts.dry_run else ""))

    async def run(self, ctx: JobContext) -> None:
        opts, settings = self.options, ctx.settings
        self._select_available(ctx)
        self._prepare(ctx)
        stats = self.stats

        self.repo: PipelineRepository | None = None
        pg = None
        status, error = "failed", None
        # LLM clients start up (SDK imports, TLS context: a few hundred ms) while the database is
        # prepared and markets are fetched, instead of on the first event's critical path.
        warmup = threading.Thread(target=self._start_providers, name="llm-client-startup", daemon=True)
        try:
            warmup.start()
            if not opts.dry_run:
                from engine.stores.postgres import Postgres

                pg = Postgres(settings)
                await pg.open()
                self.repo = PipelineRepository(pg)
                await self.repo.migrate()
                sha = await anyio.to_thread.run_sync(git_sha)
                abandoned = await self.repo.start_run(
                    self.run_id, window=self.window_desc, options=self._options_record(), git_sha=sha,
                    environment=settings.environment,
                )
                for rid in abandoned:
                    ctx.log(f"marked run {rid} failed: its process died without finalizing it", level="WARNING")
                await self._save_experiment_runs("running")
            groups = await self._ingest(ctx)
            await anyio.to_thread.run_sync(warmup.join)
            await self._process_all(ctx, groups)
            if ctx.control.stop_requested:
                status = "stopped"
            else:
                status = "completed_with_errors" if stats.failures_total else "completed"
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
                await self._finalize(ctx, status, error)
                if warmup.is_alive():
                    await anyio.to_thread.run_sync(warmup.join)  # it may still be adding providers
                for provider in list(self._providers.values()):
                    await provider.aclose()
                if pg is not None:
                    await pg.close()

    def _options_record(self) -> dict[str, Any]:
        o = self.options
        return {
            "suites": self.selection.suites, "stage": o.stage, "include_research": o.include_research,
            "include_forecast": o.include_forecast, "experiment_overrides": o.experiment_overrides,
            "override_files": [str(p) for p in o.override_files], "limit": o.limit,
            "source": str(o.source) if o.source else None,
            "event_batch_size": o.event_batch_size or self.ctx.settings.pipeline_event_batch_size,
            "window": self.window_desc, "skipped_suites": self.selection.skipped_suites,
        }

    async def _save_experiment_runs(self, status: str) -> None:
        if self.repo is None:
            return
        hashes = experiment_hashes(self.registry, self.start_configs)
        rows = [
            {"name": e.name, "suite": e.suite, "stage": e.stage, "variant": e.variant,
             "config": self.start_configs[e.name], "config_hash": hashes[e.name], "status": status,
             "counts": self._exp_counts.get(e.name, {})}
            for e in self.selection.experiments
        ]
        await self.repo.save_experiment_runs(self.run_id, rows)

    async def _finalize(self, ctx: JobContext, status: str, error: str | None) -> None:
        stats = self.stats
        extra: dict[str, Any] = {"window": self.window_desc, "stage": self.options.stage,
                                 "source": str(self.options.source) if self.options.source else None,
                                 "dump_dir": str(self.dumps.run_dir) if self.dumps.run_dir is not None and self.dumps.run_dir.is_dir() else None,
                                 "error": error}
        if self.options.summary_path:
            extra["summary_path"] = str(self.options.summary_path)
        summary = stats.summary(status, extra)
        self.summary = summary
        if self.repo is not None:
            try:
                await self.repo.finish_run(self.run_id, status, stats.counts(), summary, error)
                await self._save_experiment_runs(status)
            except Exception as exc:  # the summary file and stdout still carry the result
                ctx.log(f"could not finalize run {self.run_id} in Postgres: {redact(str(exc))}", level="ERROR")
        if self.options.summary_path:
            try:
                await anyio.to_thread.run_sync(atomic_write_json, Path(self.options.summary_path), summary)
            except OSError as exc:
                ctx.log(f"could not write --summary-path {self.options.summary_path}: {exc}", level="ERROR")
        ctx.emit(Summary(job=self.name, data=summary))

    # --- ingestion -------------------------------------------------------------------------------
    async def _ingest(self, ctx: JobContext) -> list[EventGroup]:
        opts, settings, stats = self.options, ctx.settings, self.stats
        if opts.source is not None:
            source, window = opts.source, self.fixed_window
            fetched: FetchResult = await anyio.to_thread.run_sync(lambda: load_snapshot(source, window, opts.limit))
            ctx.log(f"read {fetched.seen} market(s) from {opts.source}")
        else:
            window = self.fixed_window
            assert window is not None
            client = GammaClient(
                settings.polymarket_base_url, page_size=settings.ingestion_page_size, filters=settings.ingestion_filters,
                timeout_s=opts.gamma_timeout_s, attempts=opts.gamma_attempts, backoff_base_s=opts.gamma_backoff_s,
                on_retry=lambda msg: ctx.log(msg, level="WARNING", step="ingest"),
            )
            ctx.log(f"fetching markets from {settings.polymarket_base_url}/markets closing "
                    f"{self.window_desc['start']} .. {self.window_desc['end']} (UTC)", step="ingest")
            fetched = await client.fetch(window, opts.limit, should_stop=lambda: ctx.control.stop_requested)
            ctx.log(f"fetched {fetched.seen} market(s) in {fetched.pages} page(s), {fetched.requests} request(s)", step="ingest")
        stats.markets_seen, stats.duplicates, stats.requests = fetched.seen, fetched.duplicates, fetched.requests
        if fetched.duplicates:
            ctx.log(f"dropped {fetched.duplicates} duplicate market(s) repeated across pages", level="WARNING", step="ingest")
        failures: list[dict[str, Any]] = []
        for _raw, reason in fetched.rejects:
            # No id: upstream data we cannot key; retrying will not give it one.
            self._record_failure(None, reason, False, None, None, "ingest", failures)
        markets = []
        for raw in fetched.markets:
            try:
                markets.append(normalize_market(raw))
            except NormalizationError as exc:
                self._record_failure(str(raw.get("id")), f"normalization failed: {exc}", True, None, None, "normalize", failures)
        stats.markets_valid = len(markets)
        stats.markets_invalid = len(fetched.rejects) + (len(fetched.markets) - len(markets))
        if self.repo is not None:
            await self.repo.save_failures(failures)
        groups = group_by_event(markets)
        stats.events_total = len(groups)
        ctx.log(f"{len(markets)} valid market(s) in {len(groups)} event(s)")
        return groups

    def _record_failure(self, market_id: str | None, reason: str, retriable: bool, experiment: str | None,
                        event_key: str | None, stage: str, sink: list[dict[str, Any]]) -> None:
        reason = redact(reason)
        self.stats.add_failure(market_id, reason, retriable, experiment, event_key)
        self.ctx.failure(market_id or "(no id)", reason, retriable)
        sink.append({"run_id": self.run_id, "market_id": market_id, "event_key": event_key,
                     "experiment_name": experiment, "stage": stage, "reason": reason, "retriable": retriable})

    # --- events ----------------------------------------------------------------------------------
    def _progress(self) -> None:
        s = self.stats
        self.ctx.progress("events", s.events_done, s.events_total, unit="events", in_flight=s.in_flight,
                          llm_calls=s.llm_calls, tokens=s.tokens, cost_usd=round(s.cost_usd, 6),
                          suites=s.progress_suites())

    def _configs_now(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Configs for an event about to start: files + the live inline overrides as they are now."""
        try:
            configs = effective_configs(self.registry, self.base_overrides.with_inline(self.ctx.control.live.experiment_overrides))
            if configs != self.last_configs:
                self.ctx.log("experiment overrides changed: events starting from now use the new configuration")
            self.last_configs = configs
        except BadInput as exc:
            self.ctx.log(f"ignoring live overrides ({exc}); keeping the previous configuration", level="ERROR")
        return self.last_configs, experiment_hashes(self.registry, self.last_configs)

    async def _process_all(self, ctx: JobContext, groups: list[EventGroup]) -> None:
        window_size = self.options.event_batch_size or ctx.settings.pipeline_event_batch_size
        slots = anyio.Semaphore(window_size)
        self._last_heartbeat = time.monotonic()
        self._progress()
        async with anyio.create_task_group() as tg:
            for index, group in enumerate(groups):
                await slots.acquire()
                if ctx.control.pause_requested and not ctx.control.stop_requested:
                    # Pause means: start nothing new, let the in-flight events finish, then hold.
                    while self.stats.in_flight and ctx.control.pause_requested and not ctx.control.stop_requested:
                        await anyio.sleep(0.05)
                if not await ctx.control.boundary():
                    slots.release()
                    self.stats.events_not_started = len(groups) - index
                    ctx.log(f"stopping: {self.stats.in_flight} event(s) in flight finish, "
                            f"{self.stats.events_not_started} not started")
                    break
                configs, hashes = self._configs_now()
                self.stats.in_flight += 1
                tg.start_soon(self._event_task, group, configs, hashes, slots)
        self._progress()

    async def _event_task(self, group: EventGroup, configs: dict[str, dict[str, Any]], hashes: dict[str, str],
                          slots: anyio.Semaphore) -> None:
        try:
            failed = await self._process_event(group, configs, hashes)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a store error after its retries: this event fails, the run goes on
            failed = True
            await self._event_crashed(group, exc)
        finally:
            self.stats.in_flight -= 1
            self.stats.events_done += 1
            slots.release()
        if failed:
            self.stats.events_with_failures += 1
        self._progress()
        if self.repo is not None and time.monotonic() - self._last_heartbeat > HEARTBEAT_EVERY_S:
            self._last_heartbeat = time.monotonic()
            try:
                await self.repo.heartbeat(self.run_id, self.stats.counts())
            except Exception as exc:
                self.ctx.log(f"heartbeat failed: {redact(str(exc))}", level="WARNING")

    async def _event_crashed(self, group: EventGroup, exc: Exception) -> None:
        sink: list[dict[str, Any]] = []
        for m in group.markets:
            self._record_failure(m.market_id, f"event failed: {type(exc).__name__}: {exc}", True, None, group.event_key, "event", sink)
        try:
            if self.repo is not None:
                await self.repo.save_failures(sink)
        except Exception:
            pass

    async def _process_event(self, group: EventGroup, configs: dict[str, dict[str, Any]], hashes: dict[str, str]) -> bool:
        """Returns True when something failed for this event."""
        stats, repo = self.stats, self.repo
        research = [e for e in self.selection.experiments if e.stage == "research"]
        forecasts = [e for e in self.selection.experiments if e.stage == "forecast"]
        deps = sorted({d for f in forecasts for d in f.requires} | {e.name for e in research})
        stored_research: dict[tuple[str, str], dict[str, Any]] = {}
        stored_results: set[tuple[str, str]] = set()
        if repo is not None:
            stored_research, stored_results = await repo.stored(group.event_key, deps, [f.name for f in forecasts])
        todo_research = [e for e in research if (e.name, hashes[e.name]) not in stored_research]
        todo_forecast = [f for f in forecasts if (f.name, hashes[f.name]) not in stored_results]
        for e in research:
            if e not in todo_research:
                stats.suite(e.suite).research_reused += 1
                self._exp_counts[e.name]["reused"] += 1
        for f in forecasts:
            if f not in todo_forecast:
                stats.suite(f.suite).forecast_reused += 1
                self._exp_counts[f.name]["reused"] += 1
        if not todo_research and not todo_forecast:
            stats.events_complete_skipped += 1
            self.ctx.log(f"event {group.event_key}: already complete for every selected variant; skipped", level="DEBUG")
            return False
        if repo is not None:
            await repo.save_event(group, self.run_id)

        research_payloads = {name: payload for (name, h), payload in stored_research.items() if h == hashes.get(name)}
        failed_reasons: dict[str, str] = {}
        docs: dict[str, dict[str, Any]] = {}
        failures: list[dict[str, Any]] = []
        ctx_event = group.to_dict()

        def doc(suite: str) -> dict[str, Any]:
            if suite not in docs:
                docs[suite] = new_document(self.run_id, suite, ctx_event)
            return docs[suite]

        async def run_one(exp: Experiment) -> None:
            cfg = configs[exp.name]
            try:
                if exp.stage == "research":
                    out = await self._provider(exp).research(cfg, group)
                elif exp.kind == "market_prices":
                    out = baseline_forecast(group)
                else:
                    out = await self._provider(exp).forecast(cfg, group, {d: research_payloads[d] for d in exp.requires})
            except anyio.get_cancelled_exc_class():
                raise
            except StrategyError as exc:
                await self._experiment_failed(exp, group, cfg, hashes, exc.reason, exc.retriable, doc(exp.suite), failures)
                failed_reasons[exp.name] = exc.reason
                return
            except Exception as exc:  # a bug or an SDK surprise: this strategy fails, not the run
                reason = f"{type(exc).__name__}: {exc}"
                await self._experiment_failed(exp, group, cfg, hashes, reason, True, doc(exp.suite), failures)
                failed_reasons[exp.name] = reason
                return
            payload = await self._experiment_ok(exp, group, cfg, hashes, out, doc(exp.suite))
            if exp.stage == "research":
                research_payloads[exp.name] = payload

        async with anyio.create_task_group() as tg:
            for exp in todo_research:
                tg.start_soon(run_one, exp)
        async with anyio.create_task_group() as tg:
            for exp in todo_forecast:
                missing = [d for d in exp.requires if d not in research_payloads]
                if missing:
                    dep = missing[0]
                    reason = (f"skipped: required research {dep} failed ({failed_reasons[dep]})" if dep in failed_reasons
                              else f"skipped: required research {dep} is not stored for this config (run --stage research first)")
                    stats.suite(exp.suite).skipped += 1
                    self._exp_counts[exp.name]["skipped"] += 1
                    failed_reasons[exp.name] = reason
                    self._fail_markets(exp, group, reason, True, failures)
                    doc(exp.suite)["experiments"][exp.name] = {"status": "skipped", "stage": exp.stage, "reason": reason}
                    continue
                tg.start_soon(run_one, exp)
        if forecasts:
            ok_any = any(f.name not in failed_reasons for f in forecasts)
            if not ok_any:
                for m in group.markets:
                    self._record_failure(m.market_id, "no_forecast_results: every selected forecast failed or was skipped",
                                         True, None, group.event_key, "forecast", failures)
        for suite, document in docs.items():
            await self._write_dump(suite, group.event_key, document)
        if repo is not None:
            await repo.save_failures(failures)
        return bool(failed_reasons)

    def _start_providers(self) -> None:
        """Create the selected suites' providers ahead of the first event (runs in a worker thread
        while nothing else touches `_providers`). A failure here is left to the first call, which
        reports it against that event like any other provider error."""
        for exp in self.selection.experiments:
            if exp.uses_llm:
                try:
                    self._provider(exp)
                except Exception:
                    pass

    def _provider(self, exp: Experiment) -> Any:
        family = exp.kind.split("_", 1)[0]
        if family not in self._providers:
            settings = self.ctx.settings
            if family == "openai":
                from engine.pipeline.llm_openai import OpenAIProvider

                assert settings.openai_api_key is not None
                self._providers[family] = OpenAIProvider(settings.openai_api_key.get_secret_value(), settings.openai_base_url)
            elif family == "gemini":
                from engine.pipeline.llm_gemini import GeminiProvider

                assert settings.gemini_api_key is not None
                self._providers[family] = GeminiProvider(settings.gemini_api_key.get_secret_value(), settings.gemini_base_url)
            else:
                raise StrategyError(f"no provider for strategy kind {exp.kind!r}", retriable=False)
        return self._providers[family]

    def _fail_markets(self, exp: Experiment, group: EventGroup, reason: str, retriable: bool, sink: list[dict[str, Any]]) -> None:
        for m in group.markets:
            self._record_failure(m.market_id, f"{exp.name}: {reason}", retriable, exp.name, group.event_key, exp.stage, sink)

    async def _experiment_failed(self, exp: Experiment, group: EventGroup, cfg: dict[str, Any], hashes: dict[str, str],
                                 reason: str, retriable: bool, document: dict[str, Any], sink: list[dict[str, Any]]) -> None:
        st = self.stats.suite(exp.suite)
        if exp.stage == "research":
            st.research_failed += 1
        else:
            st.forecast_failed += 1
        self._exp_counts[exp.name]["failed"] += 1
        self._fail_markets(exp, group, reason, retriable, sink)
        document["experiments"][exp.name] = {"status": "failed", "stage": exp.stage, "variant": exp.variant,
                                             "config": cfg, "config_hash": hashes[exp.name], "reason": reason,
                                             "retriable": retriable}
        await self._write_dump(exp.suite, group.event_key, document)

    async def _experiment_ok(self, exp: Experiment, group: EventGroup, cfg: dict[str, Any], hashes: dict[str, str],
                             out: StrategyOutput, document: dict[str, Any]) -> dict[str, Any]:
        st = self.stats.suite(exp.suite)
        st.llm_calls += out.llm_calls
        st.tokens_in += out.tokens_in
        st.tokens_out += out.tokens_out
        st.cost_usd += out.cost_usd
        research_keys = [[d, hashes[d]] for d in exp.requires]
        row = {"event_key": group.event_key, "name": exp.name, "suite": exp.suite, "stage": exp.stage,
               "variant": exp.variant, "config_hash": hashes[exp.name], "config": cfg, "payload": out.payload,
               "probabilities": out.probabilities, "research_keys": research_keys, "model": out.model,
               "tokens_in": out.tokens_in, "tokens_out": out.tokens_out, "cost_usd": out.cost_usd, "run_id": self.run_id}
        # The dump first: if the database write below fails, `opsconsole replay` can still persist it.
        document["experiments"][exp.name] = {
            "status": "ok", "stage": exp.stage, "variant": exp.variant, "kind": exp.kind, "config": cfg,
            "config_hash": hashes[exp.name], "research_keys": research_keys, "payload": out.payload,
            "probabilities": out.probabilities, "model": out.model,
            "usage": {"tokens_in": out.tokens_in, "tokens_out": out.tokens_out, "cost_usd": out.cost_usd},
            "request": out.request, "response": out.response,
        }
        await self._write_dump(exp.suite, group.event_key, document)
        payload = out.payload
        if self.repo is not None:
            wrote = (await self.repo.save_artifact(row)) if exp.stage == "research" else (await self.repo.save_result(row))
            if not wrote:
                self.ctx.log(f"event {group.event_key}: {exp.name} was already stored (another runner finished it first)")
                if exp.stage == "research":
                    stored, _ = await self.repo.stored(group.event_key, [exp.name], [])
                    payload = stored.get((exp.name, hashes[exp.name]), payload)
        if exp.stage == "research":
            st.research_ok += 1
        else:
            st.forecast_ok += 1
        self._exp_counts[exp.name]["ok"] += 1
        return payload

    async def _write_dump(self, suite: str, event_key: str, document: dict[str, Any]) -> None:
        path = self.dumps.path(suite, event_key)
        if path is None:
            return
        lock = self._dump_locks.setdefault(path, anyio.Lock())
        snapshot = copy.deepcopy(document)  # other tasks keep editing `document` while the thread writes
        async with lock:
            try:
                await anyio.to_thread.run_sync(self.dumps.write, suite, event_key, snapshot)
            except OSError as exc:
                self.ctx.log(f"could not write debug dump {path}: {exc}", level="WARNING")
