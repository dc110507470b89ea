"""Processing one event group: research, then forecasts, each result committed as it returns.

For each event: look up what is already stored for the configs it starts with, run the missing
research, then the missing forecasts whose research is there. Every result is written to its
debug dump first and then to Postgres under its natural key (event_key, experiment_name,
config_hash), so whatever finished before a crash is reused by the next run or worker. A strategy
that fails fails only itself (and the forecasts that need its research); a store error fails only
this event. The single runner and `--worker` both process events through `EventProcessor.run_event`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anyio

from engine.pipeline.config import Configs
from engine.pipeline.dumps import new_document
from engine.pipeline.experiments import Experiment
from engine.pipeline.forecast import StrategyError, StrategyOutput, baseline_forecast
from engine.pipeline.normalize import EventGroup
from engine.pipeline.run_state import RunState
from engine.redact import redact


class EventProcessor:
    def __init__(self, state: RunState) -> None:
        self.state = state
        # One lock per dump file: an event's experiments finish concurrently and rewrite the same file.
        self._dump_locks: dict[Path, anyio.Lock] = {}

    async def run_event(self, group: EventGroup, configs: Configs, hashes: dict[str, str]) -> bool:
        """Process one event; returns True when something failed for it. An unexpected error (a store
        error after its retries) is recorded against the event's markets: the event fails, the run
        goes on. The caller keeps the in-flight count; cancellation propagates."""
        try:
            return await self.process(group, configs, hashes)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            await self.crashed(group, exc)
            return True

    async def crashed(self, group: EventGroup, exc: Exception) -> None:
        state = self.state
        sink: list[dict[str, Any]] = []
        for m in group.markets:
            state.record_failure(m.market_id, f"event failed: {type(exc).__name__}: {exc}", True, None, group.event_key,
                                 "event", sink)
        if state.repo is None:
            return
        try:
            await state.repo.save_failures(sink)
        except Exception as err:  # most likely the same store error that failed the event
            # The failures are still counted, published and listed in the summary; the event's
            # missing results make the next run retry it.
            state.ctx.log(f"event {group.event_key}: could not save its {len(sink)} failure row(s): "
                          f"{redact(str(err))}", level="WARNING")

    async def process(self, group: EventGroup, configs: Configs, hashes: dict[str, str]) -> bool:
        """Returns True when something failed for this event."""
        state = self.state
        stats, repo, exp_counts = state.stats, state.repo, state.exp_counts
        research = [e for e in state.selection.experiments if e.stage == "research"]
        forecasts = [e for e in state.selection.experiments if e.stage == "forecast"]
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
                exp_counts[e.name]["reused"] += 1
        for f in forecasts:
            if f not in todo_forecast:
                stats.suite(f.suite).forecast_reused += 1
                exp_counts[f.name]["reused"] += 1
        if not todo_research and not todo_forecast:
            stats.events_complete_skipped += 1
            state.ctx.log(f"event {group.event_key}: already complete for every selected variant; skipped", level="DEBUG")
            return False
        if repo is not None:
            await repo.save_event(group, state.run_id)

        research_payloads = {name: payload for (name, h), payload in stored_research.items() if h == hashes.get(name)}
        failed_reasons: dict[str, str] = {}
        docs: dict[str, dict[str, Any]] = {}
        failures: list[dict[str, Any]] = []
        ctx_event = group.to_dict()

        def doc(suite: str) -> dict[str, Any]:
            if suite not in docs:
                docs[suite] = new_document(state.run_id, suite, ctx_event)
            return docs[suite]

        async def run_one(exp: Experiment) -> None:
            cfg = configs[exp.name]
            try:
                if exp.stage == "research":
                    out = await state.providers.get(exp).research(cfg, group)
                elif exp.kind == "market_prices":
                    out = baseline_forecast(group)
                else:
                    out = await state.providers.get(exp).forecast(cfg, group, {d: research_payloads[d] for d in exp.requires})
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
                    exp_counts[exp.name]["skipped"] += 1
                    failed_reasons[exp.name] = reason
                    self._fail_markets(exp, group, reason, True, failures)
                    doc(exp.suite)["experiments"][exp.name] = {"status": "skipped", "stage": exp.stage, "reason": reason}
                    continue
                tg.start_soon(run_one, exp)
        if forecasts:
            ok_any = any(f.name not in failed_reasons for f in forecasts)
            if not ok_any:
                for m in group.markets:
                    state.record_failure(m.market_id, "no_forecast_results: every selected forecast failed or was skipped",
                                         True, None, group.event_key, "forecast", failures)
        for suite, document in docs.items():
            await self._write_dump(suite, group.event_key, document)
        if repo is not None:
            await repo.save_failures(failures)
        return bool(failed_reasons)

    def _fail_markets(self, exp: Experiment, group: EventGroup, reason: str, retriable: bool, sink: list[dict[str, Any]]) -> None:
        for m in group.markets:
            self.state.record_failure(m.market_id, f"{exp.name}: {reason}", retriable, exp.name, group.event_key, exp.stage, sink)

    async def _experiment_failed(self, exp: Experiment, group: EventGroup, cfg: dict[str, Any], hashes: dict[str, str],
                                 reason: str, retriable: bool, document: dict[str, Any], sink: list[dict[str, Any]]) -> None:
        st = self.state.stats.suite(exp.suite)
        if exp.stage == "research":
            st.research_failed += 1
        else:
            st.forecast_failed += 1
        self.state.exp_counts[exp.name]["failed"] += 1
        self._fail_markets(exp, group, reason, retriable, sink)
        document["experiments"][exp.name] = {"status": "failed", "stage": exp.stage, "variant": exp.variant,
                                             "config": cfg, "config_hash": hashes[exp.name], "reason": reason,
                                             "retriable": retriable}
        await self._write_dump(exp.suite, group.event_key, document)

    async def _experiment_ok(self, exp: Experiment, group: EventGroup, cfg: dict[str, Any], hashes: dict[str, str],
                             out: StrategyOutput, document: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        st = state.stats.suite(exp.suite)
        st.llm_calls += out.llm_calls
        st.tokens_in += out.tokens_in
        st.tokens_out += out.tokens_out
        st.cost_usd += out.cost_usd
        research_keys = [[d, hashes[d]] for d in exp.requires]
        row = {"event_key": group.event_key, "name": exp.name, "suite": exp.suite, "stage": exp.stage,
               "variant": exp.variant, "config_hash": hashes[exp.name], "config": cfg, "payload": out.payload,
               "probabilities": out.probabilities, "research_keys": research_keys, "model": out.model,
               "tokens_in": out.tokens_in, "tokens_out": out.tokens_out, "cost_usd": out.cost_usd, "run_id": state.run_id}
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
        if state.repo is not None:
            wrote = (await state.repo.save_artifact(row)) if exp.stage == "research" else (await state.repo.save_result(row))
            if not wrote:
                state.ctx.log(f"event {group.event_key}: {exp.name} was already stored (another runner finished it first)")
                if exp.stage == "research":
                    stored, _ = await state.repo.stored(group.event_key, [exp.name], [])
                    payload = stored.get((exp.name, hashes[exp.name]), payload)
        if exp.stage == "research":
            st.research_ok += 1
        else:
            st.forecast_ok += 1
        state.exp_counts[exp.name]["ok"] += 1
        return payload

    async def _write_dump(self, suite: str, event_key: str, document: dict[str, Any]) -> None:
        dumps = self.state.dumps
        path = dumps.path(suite, event_key)
        if path is None:
            return
        lock = self._dump_locks.setdefault(path, anyio.Lock())
        snapshot = copy.deepcopy(document)  # other tasks keep editing `document` while the thread writes
        async with lock:
            try:
                await anyio.to_thread.run_sync(dumps.write, suite, event_key, snapshot)
            except OSError as exc:
                self.state.ctx.log(f"could not write debug dump {path}: {exc}", level="WARNING")
