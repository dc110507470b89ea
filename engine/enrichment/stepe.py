"""Step E: per-position resolution outcomes, built aside and swapped in atomically.

The old job truncated `wallet_resolution_outcomes` first, so readers saw it empty for the whole run.
Here the new contents are built in a side table and `EXCHANGE TABLES` swaps the two in one atomic
step: a reader sees the old rows or the new rows, never none. The per-wallet accuracy view reads the
table by name, so it follows the swap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from engine.enrichment import sql
from engine.enrichment.checkpoint import load_local
from engine.enrichment.mutations import pending_mutations
from engine.enrichment.schema import MUTATED_TABLES, ensure_schema
from engine.errors import OpsError
from engine.events import MutationInfo
from engine.runner import JobContext
from engine.stores.clickhouse import ClickHouse


class StepERefused(OpsError):
    """Step E would read incomplete P&L."""


@dataclass
class StepEResult:
    positions: int
    wallets: int
    seconds: float
    mode: str = "full"  # full | incremental
    wallets_rebuilt: int | None = None  # incremental: the wallets with positions recomputed
    pairs_rebuilt: int | None = None  # incremental: the positions marked (whole wallets not counted)


def _pending(ch: ClickHouse) -> list[MutationInfo]:
    return pending_mutations(ch, MUTATED_TABLES)


def readiness_problems(ch: ClickHouse, runtime: Any) -> list[str]:
    """Why Step E should not run now (empty list = ready)."""
    from engine.enrichment.stepd import step_d_missing

    problems = []
    missing = step_d_missing(ch)
    if missing:
        problems.append(f"Step D is incomplete: {missing:,} trades of resolved markets have no P&L yet")
    try:
        cp = load_local(runtime)
    except OpsError:
        cp = None
    if cp is not None and cp.status != "done" and not missing:
        said = "it was stopped" if cp.status == "stopped" else "it is still running"
        problems.append(f"the Step D checkpoint says {said} (pairs_done={cp.pairs_done:,} of {cp.pairs_total or '?'})")
    pending = _pending(ch)
    if pending:
        problems.append(f"{len(pending)} mutation(s) are pending on the enrichment tables")
    return problems


def build_and_swap(ch: ClickHouse) -> tuple[int, int]:
    ch.command(sql.OUTCOMES_DROP_BUILD)
    ch.command(sql.OUTCOMES_CREATE_BUILD)
    ch.command(sql.OUTCOMES_FILL)
    positions, wallets = (int(v) for v in ch.query(sql.OUTCOMES_COUNT_BUILD).rows[0])
    ch.command(sql.OUTCOMES_EXCHANGE)
    ch.command(sql.OUTCOMES_DROP_BUILD)  # now holds the previous contents
    return positions, wallets


@dataclass(frozen=True)
class StepEPlan:
    incremental: bool
    fingerprint: str
    dirty_wallets: int
    dirty_pairs: int
    why: str  # why a full build (empty for an incremental one)


#: What the last build recorded in step_e_meta: how its per-condition hashes (step_e_resolutions)
#: were made. Older builds stored a fingerprint of every category instead; their hashes cover the
#: resolutions only, so a store they built gets one full build, then incremental ones.
INPUTS_VERSION = "per-condition resolutions and categories, v2"


def plan_step_e(ch: ClickHouse, force: bool) -> StepEPlan:
    """Incremental when the last build recorded its per-condition inputs the way this build does:
    the positions Step D touched since then, and those of conditions whose resolution or categories
    changed; otherwise every position."""
    fingerprint = INPUTS_VERSION
    last = ch.query(sql.STEP_E_META_READ).rows
    ch.command(sql.STEP_E_NEXT_CLEAR)
    ch.command(sql.STEP_E_NEXT_WRITE)
    if last:  # resolutions are compared per condition (the table is only trusted once a build recorded it)
        ch.command(sql.DIRTY_MARK_RESOLUTIONS)
    everyone, dirty, pairs = (int(v) for v in ch.query(sql.DIRTY_SUMMARY).rows[0])
    why = ""
    if force:
        why = "--force"
    elif not last:
        why = "no previous build recorded"
    elif str(last[0][0]) != fingerprint:
        why = "the last build was recorded by an older version"
    elif everyone:
        why = "Step D recomputed every pair"
    elif not int(ch.scalar(sql.OUTCOMES_COUNT)):
        why = "wallet_resolution_outcomes is empty"
    return StepEPlan(not why, fingerprint, dirty, pairs, why)


def build_incremental_and_swap(ch: ClickHouse) -> tuple[int, int]:
    """The new contents, built aside as well: the clean positions' rows copied, the dirty ones
    recomputed from their trades; then the same atomic swap as a full build."""
    ch.command(sql.OUTCOMES_DROP_BUILD)
    ch.command(sql.OUTCOMES_CREATE_BUILD)
    ch.command(sql.OUTCOMES_COPY_CLEAN)
    ch.command(sql.outcomes_fill_dirty_sql())
    positions, wallets = (int(v) for v in ch.query(sql.OUTCOMES_COUNT_BUILD).rows[0])
    ch.command(sql.OUTCOMES_EXCHANGE)
    ch.command(sql.OUTCOMES_DROP_BUILD)
    return positions, wallets


def record_build(ch: ClickHouse, fingerprint: str) -> None:
    """After the swap: the per-condition hashes this build was planned from (sql.STEP_E_NEXT_WRITE),
    then the dirty wallets are clean. A crash in between only makes the next build redo work (a full
    one, or the same wallets again)."""
    ch.command(sql.STEP_E_META_CLEAR)
    ch.command(sql.STEP_E_RESOLUTIONS_CLEAR)
    ch.command(sql.STEP_E_RESOLUTIONS_WRITE)
    ch.command(sql.STEP_E_META_WRITE, {"fp": fingerprint})
    ch.command(sql.DIRTY_CLEAR)


async def run_step_e(ctx: JobContext, ch: ClickHouse, *, force: bool) -> StepEResult:
    started = time.monotonic()
    await anyio.to_thread.run_sync(ensure_schema, ch)
    ctx.progress("E", 0, 3, unit="phases")
    problems = await anyio.to_thread.run_sync(readiness_problems, ch, ctx.settings.runtime)
    if problems:
        text = "; ".join(problems)
        if not force:
            raise StepERefused(
                f"Step E refused: {text}",
                hint="finish Step D (`opsconsole enrich --step D --resume`) and let mutations clear "
                "(`opsconsole gates`), or pass --force to build from the current data anyway",
            )
        ctx.log(f"--force: building Step E anyway although {text}", level="WARNING", step="E")
    ctx.progress("E", 1, 3, unit="phases")
    plan = await anyio.to_thread.run_sync(plan_step_e, ch, force)
    if plan.incremental:
        ctx.log(f"incremental: rebuilding {plan.dirty_pairs:,} position(s) of {plan.dirty_wallets:,} wallet(s) touched "
                "since the last build, copying the rest; building aside, then swapping it in", step="E")
        positions, wallets = await anyio.to_thread.run_sync(build_incremental_and_swap, ch)
    else:
        ctx.log(f"building wallet_resolution_outcomes aside, then swapping it in (every wallet: {plan.why})", step="E")
        positions, wallets = await anyio.to_thread.run_sync(build_and_swap, ch)
    await anyio.to_thread.run_sync(record_build, ch, plan.fingerprint)
    ctx.progress("E", 3, 3, unit="phases")
    elapsed = time.monotonic() - started
    ctx.log(f"Step E done: {positions:,} resolved positions for {wallets:,} wallets, swapped in ({elapsed:.1f}s)", step="E")
    return StepEResult(positions, wallets, elapsed, "incremental" if plan.incremental else "full",
                       plan.dirty_wallets if plan.incremental else None, plan.dirty_pairs if plan.incremental else None)
