"""The enrichment job ("full-enrichment"): optional demo data, Steps A–E in order, then the gates.

Each requested step runs once, in the order A, B, C, D, E (the old master script ignored
`--step=E` and reran everything). Between steps and between Step D batches the job honours the
Control (pause/stop); a stopped Step D ends the run with its checkpoint saved and skips E.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from engine.enrichment.checkpoint import JOB_NAME, RemoteCheckpoints
from engine.enrichment.gates import any_failed, format_gates
from engine.enrichment.gates_record import compute_and_save
from engine.errors import BadInput
from engine.events import GatesReported, Summary
from engine.files import atomic_write_json
from engine.redact import redact_obj
from engine.runner import JobContext
from engine.settings import DEFAULT_BATCH_SIZE, DEFAULT_MUTATION_WAIT_EVERY, BatchSize, MutationWaitEvery, Settings
from engine.enrichment.schema import ensure_schema
from engine.stores.clickhouse import ChdbClickHouse, ClickHouse, aopen_clickhouse

ALL_STEPS = ("A", "B", "C", "D", "E")
STEP_ORDER = ("T", *ALL_STEPS)  # T (trades from the data-api) runs only when named, before A
DEMO_SNAPSHOT = "demo-gamma-snapshot.json"


class EnrichmentLive(BaseModel):
    """Live settings: take effect at the next Step D batch. Types and defaults are `Settings`'s."""

    batch_size: BatchSize = DEFAULT_BATCH_SIZE
    mutation_wait_every: MutationWaitEvery = DEFAULT_MUTATION_WAIT_EVERY


@dataclass(frozen=True)
class DemoRequest:
    scale: str = "medium"
    seed: int = 7


def parse_steps(text: str | list[str] | tuple[str, ...]) -> list[str]:
    items = [text] if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            part = part.strip().upper()
            if part == "ALL":
                out.extend(ALL_STEPS)
            elif part in STEP_ORDER:
                out.append(part)
            else:
                raise BadInput(f"unknown step {part!r}: use T, A, B, C, D, E, all or daily")
    return [s for s in STEP_ORDER if s in out]


class _OpenStore:
    """The job's ClickHouse once it is open; socket reads asked before then wait for it."""

    def __init__(self) -> None:
        self._ready = anyio.Event()
        self._ch: ClickHouse | None = None

    def set(self, ch: ClickHouse) -> None:
        self._ch = ch
        self._ready.set()

    async def get(self) -> ClickHouse:
        await self._ready.wait()
        assert self._ch is not None
        return self._ch


class EnrichmentJob:
    name = JOB_NAME
    panels: tuple[str, ...] = ("steps", "gates", "mutations")

    def __init__(
        self,
        steps: list[str] | tuple[str, ...] | str = ALL_STEPS,
        resume: bool = False,
        force: bool = False,
        *,
        batch_size: int | None = None,
        mutation_wait_every: int | None = None,
        write_strategy: str | None = None,
        mutation_timeout_s: float | None = None,
        demo: DemoRequest | None = None,
        run_gates: bool = True,
        remote_checkpoints: bool = True,
        abc_options: dict[str, Any] | None = None,
        full: bool = False,
        summary_path: Path | None = None,
    ) -> None:
        self.steps = parse_steps(steps)
        if not self.steps and demo is None:
            raise BadInput("no steps to run")
        self.resume = resume
        if full and resume:
            raise BadInput("--full and --resume contradict each other: --resume continues a stopped run, "
                           "--full starts one that recomputes every pair")
        self.full = full  # Step D: recompute every pair instead of only those affected since the last complete run
        self.force = force
        self.batch_size = batch_size
        self.mutation_wait_every = mutation_wait_every
        self.write_strategy = write_strategy
        self.mutation_timeout_s = mutation_timeout_s
        self.demo = demo
        self.run_gates = run_gates
        self.remote_checkpoints = remote_checkpoints
        # Passed to Steps A–C where their signature takes them: snapshot, offline, focus_file, ...
        self.abc_options = dict(abc_options or {})
        self.summary_path = summary_path  # --summary-path: the Summary (and every gate) as JSON, for CI artifacts
        self.results: dict[str, Any] = {}
        self.gates: list[Any] = []
        self.live_settings()  # bad values are refused now, with the setting named

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        steps: list[str] | tuple[str, ...] | str = ALL_STEPS,
        *,
        batch_size: int | None = None,
        mutation_wait_every: int | None = None,
        write_strategy: str | None = None,
        **options: Any,
    ) -> EnrichmentJob:
        """The job as the operator configured it, for every front end (CLI commands, the launcher):
        Step D's batch size, mutation-wait cadence and write strategy come from `settings`
        (BATCH_SIZE, MUTATION_WAIT_EVERY, STEP_D_WRITE_STRATEGY) unless given here (a command-line
        flag). `options` are the constructor's others (resume, force, demo, abc_options, ...)."""
        return cls(
            steps,
            batch_size=settings.batch_size if batch_size is None else batch_size,
            mutation_wait_every=settings.mutation_wait_every if mutation_wait_every is None else mutation_wait_every,
            write_strategy=write_strategy or settings.write_strategy,
            **options,
        )

    def live_settings(self) -> EnrichmentLive:
        values: dict[str, int] = {}
        if self.batch_size is not None:
            values["batch_size"] = self.batch_size
        if self.mutation_wait_every is not None:
            values["mutation_wait_every"] = self.mutation_wait_every
        try:
            return EnrichmentLive(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BadInput(f"invalid Step D setting: {problems}") from None

    async def run(self, ctx: JobContext) -> None:
        # Offered before the store is open: `opsconsole gates` asked while the job starts waits
        # for the store instead of hearing that this job offers no gates.
        store = _OpenStore()
        self._offer_reads(ctx, store)
        ch: ClickHouse = ctx.resources.get("ch") or await aopen_clickhouse(ctx.settings)
        store.set(ch)
        if self.demo is not None:
            await self._demo(ctx, ch)
        remote = None
        if "D" in self.steps and self.remote_checkpoints:
            remote = RemoteCheckpoints(ctx.settings, pg=ctx.resources.get("postgres"))
        try:
            for i, step in enumerate(self.steps):
                if not await ctx.control.boundary():
                    ctx.log(f"stopped before Step {step}", step=step)
                    return
                if step in ALL_STEPS and all(s not in ALL_STEPS for s in self.steps[:i]):
                    await self._warn_if_no_trades(ctx, ch)  # after any ingest, before the first of A–E
                stopped = await self._step(ctx, ch, step, remote)
                if stopped:
                    return
        finally:
            if remote is not None:
                await remote.close()
        if self.run_gates:
            self.gates = await anyio.to_thread.run_sync(compute_and_save, ch, ctx.settings.runtime)
            ctx.emit(GatesReported(job=ctx.name, gates=tuple(self.gates)))
            for line in format_gates(self.gates).splitlines():
                ctx.log(line, level="WARNING" if any_failed(self.gates) and "FAIL" in line else "INFO", step="gates")
        data = {"steps": self.steps, **self.results, "gates": {g.name: g.status for g in self.gates}}
        if self.summary_path is not None:
            await self._write_summary(ctx, data)
        ctx.emit(Summary(job=ctx.name, data=data))

    @staticmethod
    async def _warn_if_no_trades(ctx: JobContext, ch: ClickHouse) -> None:
        """An empty trades_raw makes every step a no-op and every gate PASS: say so, since it
        usually means the wrong store (CLICKHOUSE_DATABASE, CLICKHOUSE_PATH or _URL) or no load yet."""
        await anyio.to_thread.run_sync(ensure_schema, ch)
        if int(await anyio.to_thread.run_sync(ch.scalar, "SELECT count() FROM $db.trades_raw")):
            return
        where = f"{ch.path}" if isinstance(ch, ChdbClickHouse) else "the ClickHouse server"
        ctx.log(f"trades_raw is empty (database {ch.database!r} in {where}): there is nothing to enrich, and the "
                "gates will pass on nothing — load trades (`opsconsole data load trades FILE`), fetch them "
                "(`--step T`), or try `opsconsole demo`", level="WARNING")

    async def _write_summary(self, ctx: JobContext, data: dict[str, Any]) -> None:
        """The run's summary with each gate in full (the shape of `opsconsole gates --json`). Only a
        run that reached its end writes it: a stopped run leaves no file, so a stale one is never
        mistaken for today's."""
        assert self.summary_path is not None
        path = self.summary_path
        # Redacted like every text leaving the process (a step's error can quote a URL).
        document = redact_obj({**data, "ok": not any_failed(self.gates), "gate_results": [asdict(g) for g in self.gates]})
        try:
            await anyio.to_thread.run_sync(atomic_write_json, path, document)
        except OSError as exc:  # the run's work is done; a missing artifact is reported, not fatal
            ctx.log(f"could not write --summary-path {self.summary_path}: {exc}", level="ERROR")

    def _offer_reads(self, ctx: JobContext, store: _OpenStore) -> None:
        """Answer gates and mutation reads on the job socket: with embedded chDB this process is
        the only one that can open the data, so `opsconsole gates`, `mutations` and every attached
        console ask it. They run in worker threads, beside the batches (the chDB handle takes one
        statement at a time), once the store is open."""
        from engine.enrichment.mutations import pending_mutations

        async def gates(args: dict[str, Any]) -> Any:
            ch = await store.get()
            return await anyio.to_thread.run_sync(compute_and_save, ch, ctx.settings.runtime)

        async def refresh_gates(args: dict[str, Any]) -> Any:
            result = await gates(args)
            ctx.emit(GatesReported(job=ctx.name, gates=tuple(result)))  # every console sees them
            return result

        async def mutations(args: dict[str, Any]) -> Any:
            ch = await store.get()
            return await anyio.to_thread.run_sync(pending_mutations, ch)

        ctx.register_query("gates", gates)
        ctx.register_query("refresh_gates", refresh_gates)
        ctx.register_query("mutations", mutations)

    async def _demo(self, ctx: JobContext, ch: ClickHouse) -> None:
        from engine.enrichment.demo import generate_demo

        assert self.demo is not None
        ctx.progress("demo", 0, 1, unit="datasets")
        ctx.log(f"generating demo data (scale {self.demo.scale}, seed {self.demo.seed})", step="demo")
        # The demo runs offline: Steps A and C read the markets and resolutions it held back from a
        # Gamma snapshot written next to the other runtime files.
        snapshot = ctx.settings.runtime / DEMO_SNAPSHOT
        report = await anyio.to_thread.run_sync(generate_demo, ch, self.demo.scale, self.demo.seed, snapshot)
        self.abc_options.setdefault("snapshot", snapshot)
        ctx.log(f"Gamma snapshot for offline Steps A and C: {snapshot}", step="demo")
        ctx.log(report.line(), step="demo")
        ctx.progress("demo", 1, 1, unit="datasets")
        self.results["demo"] = asdict(report)

    async def _step(self, ctx: JobContext, ch: ClickHouse, step: str, remote: RemoteCheckpoints | None) -> bool:
        """Run one step; True when it stopped early (the run ends there)."""
        if step in ("T", "A", "B", "C"):
            return await self._step_abc(ctx, ch, step)
        if step == "D":
            from engine.enrichment.stepd import run_step_d

            result = await run_step_d(
                ctx, ch, resume=self.resume, full=self.full,
                write_strategy=self.write_strategy or ctx.settings.write_strategy,
                remote=remote,
                mutation_timeout_s=self.mutation_timeout_s or ctx.settings.mutation_wait_timeout_s,
            )
            self.results["D"] = asdict(result)
            return result.status == "stopped"
        if step != "E":  # parse_steps admits only STEP_ORDER; anything else is a bug, not Step E
            raise ValueError(f"no such enrichment step: {step!r}")
        from engine.enrichment.stepe import run_step_e

        result_e = await run_step_e(ctx, ch, force=self.force)
        self.results["E"] = asdict(result_e)
        return False

    async def _step_abc(self, ctx: JobContext, ch: ClickHouse, step: str) -> bool:
        # Steps A–C live in their own module (Gamma, categories, resolutions), imported when first
        # run so a Step D run does not load the Gamma client. A missing module is a packaging bug
        # and fails the job loudly.
        from engine.enrichment import steps_abc

        if step == "T":
            from engine.enrichment import stept

            return await self._call_step(ctx, ch, step, stept.run_step_t)
        return await self._call_step(ctx, ch, step, getattr(steps_abc, f"run_step_{step.lower()}"))

    async def _call_step(self, ctx: JobContext, ch: ClickHouse, step: str, fn: Any) -> bool:
        """Run a step function `fn(ctx, ch, **options)` with the job's options it accepts, keeping
        its result under the step's name."""
        accepted = inspect.signature(fn).parameters
        options = {k: v for k, v in self.abc_options.items() if k in accepted and v is not None}
        if "mutation_timeout_s" in accepted:
            options.setdefault("mutation_timeout_s", self.mutation_timeout_s or ctx.settings.mutation_wait_timeout_s)
        result = await fn(ctx, ch, **options)
        if result is not None:
            self.results[step] = asdict(result) if hasattr(result, "__dataclass_fields__") else result
        return getattr(result, "status", "") == "stopped"  # Step T stops between pages
