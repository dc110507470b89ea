"""The daily path (`opsconsole enrich --step daily`): ingest, Steps A–E incrementally, then the gates.

One enrichment job (`EnrichmentJob`: the same step loop, Control boundaries between steps and
Step D batches, closing gates and exit codes), given the daily sequence instead of a list of steps:

* `DAILY_SEQUENCE` is the one place that says what a daily run does, in order. Steps A–E always
  run; a step outside A–E (Step T, ingest from Polymarket's data-api) runs only when it is
  registered in `EXTRA_STEPS` and says it is configured, and is otherwise skipped with the reason
  logged ("step T not configured: ...").
* Every step is incremental by itself: A fetches only markets missing from markets_dim, B writes
  only rows whose category differs, C asks only for conditions not yet resolved, D recomputes only
  the pairs affected since its last complete run (or everything on its first run, or with
  `--full`), E rebuilds only the wallets D touched.
* A Step D run left interrupted (stopped, crashed, a timed-out CI run) is finished first, before
  anything new is ingested: resumed over the inputs it was started with, so the next incremental
  run can trust its bookkeeping instead of recomputing every pair.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.enrichment.checkpoint import RemoteCheckpoints
from engine.enrichment.job import ALL_STEPS, EnrichmentJob
from engine.errors import BadInput
from engine.runner import JobContext
from engine.settings import Settings
from engine.stores.clickhouse import ClickHouse

#: What a daily run does, in order. A step not in A–E runs only when registered in EXTRA_STEPS.
DAILY_SEQUENCE = ("T", "A", "B", "C", "D", "E")
DAILY = "DAILY"  # the --step value


@dataclass(frozen=True)
class ExtraStep:
    """A daily step beyond A–E. `run(ctx, ch, **options)` takes the job's step options it names
    (snapshot, offline, ...) like Steps A–C; `unconfigured(settings)` is None when the step can run,
    otherwise why not (logged when the step is skipped)."""

    run: Callable[..., Awaitable[Any]]
    unconfigured: Callable[[Settings], str | None]


def _ingest_unconfigured(settings: Settings) -> str | None:
    # Ingest reaches the network: a daily run takes it only when the operator named the data-api.
    if "data_api_base_url" in settings.model_fields_set:
        return None
    return ("POLYMARKET_DATA_API_URL is not set (https://data-api.polymarket.com for the public API); "
            "trades come from `data load trades` instead")


async def _run_step_t(ctx: Any, ch: Any, **options: Any) -> Any:
    from engine.enrichment import stept

    return await stept.run_step_t(ctx, ch, **options)


#: Registered daily steps beyond A–E: Step T, ingest from Polymarket's data-api.
EXTRA_STEPS: dict[str, ExtraStep] = {"T": ExtraStep(_run_step_t, _ingest_unconfigured)}


def is_daily(steps: str | list[str] | tuple[str, ...]) -> bool:
    """True for `--step daily`; daily mixed with other steps is refused (it already runs them all)."""
    items = [steps] if isinstance(steps, str) else list(steps)
    parts = [p.upper() for item in items for p in str(item).replace(",", " ").split()]
    if DAILY not in parts:
        return False
    if len(parts) > 1:
        raise BadInput(f"--step daily runs {', '.join(DAILY_SEQUENCE)} by itself: give it alone, not with "
                       f"{', '.join(p for p in parts if p != DAILY) or 'itself again'}")
    return True


def plan(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The steps a daily run takes today, and the skipped ones with the reason."""
    steps: list[str] = []
    skipped: dict[str, str] = {}
    for step in DAILY_SEQUENCE:
        if step in ALL_STEPS:
            steps.append(step)
            continue
        extra = EXTRA_STEPS.get(step)
        reason = "no such step in this build" if extra is None else extra.unconfigured(settings)
        if reason is None:
            steps.append(step)
        else:
            skipped[step] = reason
    return steps, skipped


class DailyEnrichmentJob(EnrichmentJob):
    """`EnrichmentJob` over the daily sequence. The same job name, lock, checkpoint and log file as
    any `enrich` run: a daily run and a manual `enrich --step D` never run at once."""

    def __init__(self, steps: Any = DAILY, **options: Any) -> None:
        # `steps` is accepted for `from_settings`; the sequence is DAILY_SEQUENCE, planned at run time.
        if options.get("resume"):
            raise BadInput("--resume does not apply to --step daily: a daily run finishes an interrupted "
                           "Step D by itself before ingesting anything new")
        super().__init__(list(ALL_STEPS), **options)
        self.skipped: dict[str, str] = {}
        self._planned = False

    async def run(self, ctx: JobContext) -> None:
        self.steps, self.skipped = plan(ctx.settings)
        self._planned = False
        ctx.log("daily enrichment: " + " → ".join(self.steps) + " → gates", step="daily")
        for step, reason in self.skipped.items():
            ctx.log(f"step {step} not configured: {reason}; skipped", step="daily")
        self.results["skipped"] = dict(self.skipped)
        await super().run(ctx)

    async def _step(self, ctx: JobContext, ch: ClickHouse, step: str, remote: RemoteCheckpoints | None) -> bool:
        if not self._planned:
            self._planned = True
            if await self._finish_interrupted_step_d(ctx, ch, remote):
                return True
        if step in EXTRA_STEPS:
            return await self._call_step(ctx, ch, step, EXTRA_STEPS[step].run)
        return await super()._step(ctx, ch, step, remote)

    async def _finish_interrupted_step_d(self, ctx: JobContext, ch: ClickHouse, remote: RemoteCheckpoints | None) -> bool:
        """Resume a Step D run that did not complete, before new data changes its inputs; True when
        that run was stopped again (the daily run ends there, its checkpoint saved)."""
        from engine.enrichment.stepd import last_checkpoint

        if self.full:
            return False  # --full recomputes every pair anyway
        previous = await last_checkpoint(ctx, remote)
        if previous is None or previous.status == "done":
            return False
        ctx.log(f"the last Step D run did not complete (pairs_done={previous.pairs_done:,} of "
                f"{previous.pairs_total or '?'}); finishing it before ingesting new data", step="daily")
        self.resume = True
        try:
            stopped = await super()._step(ctx, ch, "D", remote)
        except BadInput as exc:  # its inputs changed since it stopped (data loaded by hand)
            raise BadInput(str(exc), hint="recompute every pair with `opsconsole enrich --step daily --full`") from None
        finally:
            self.resume = False
        self.results["D_resumed"] = self.results.pop("D")
        return stopped
