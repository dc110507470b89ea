"""Step D: realized P&L for every trade, in batches of (wallet, condition) pairs, crash-resumable.

* The work list is frozen once per run (every pair of trades_raw, sorted by key) together with a
  fingerprint of the inputs (trades and valid resolutions), so "the next 300 pairs" means the same
  pairs on every run.
* A batch is the next `batch_size` pairs after the cursor (the last pair done). ONE statement computes
  their P&L from the work list's per-pair sums and appends it to `step_d_pair_pnl`: absolute values,
  so re-running a batch after a crash writes the same rows again.
* Once every batch is done, the trades' own P&L is written into trades_raw by ONE set-based statement
  over the run's key range (a classic mutation by default, STEP_D_WRITE_STRATEGY), then checked
  against the batches' sums. One statement per batch into trades_raw cost 22–29 ms each at seed
  scale, two thirds of a whole run; the appends cost a few ms, and the trades' write about as much as
  the one-statement P&L itself. Until that write, trades_raw keeps its previous P&L (gate pnl_nulls
  and the value-conservation gate show Step D's effect at the end, not batch by batch).
* After every batch: the checkpoint (cursor + runbook fields) to the local file, atomically, then to
  Postgres (failures shown and retried, never blocking) — engine.enrichment.checkpoint_writer. Stop
  and pause only happen between batches.
* Incremental by default: a complete run records what each pair's P&L was computed from (trade
  count and hash, payouts) in `stepd_pair_state`, in one statement once every batch's P&L has
  landed. A fresh run after a complete one freezes only the affected pairs (new or changed trades,
  newly resolved, corrected resolution, P&L reset) and writes only those; `--full` (or no complete
  previous run, or no bookkeeping yet) recomputes every pair.
* Every `mutation_wait_every` batches (live setting) we wait for our tables' pending mutations,
  bounded by a timeout and failing with the mutation's own failure text.

Crash points (engine.crashpoints; OPSCONSOLE_CRASH_AT=name[:N], tests only — one environment lookup
when unset). Batch N's checkpoint is saved in the background while batch N+1 is written, so each
point is placed where its name holds no matter how that overlap falls:
* `before_trades_write` — every batch is written and its checkpoint saved (pairs_done = total, status
  running); the trades' P&L write has not started.
* `before_batch_write` — the next batch is taken, nothing of it written; the previous batch's
  checkpoint may still be in flight (on disk: that checkpoint or the one before it).
* `after_write_before_local_checkpoint` — the batch's rows are written; its checkpoint is not even
  started (on disk: the previous batch's checkpoint or the one before it).
* `between_local_and_remote_checkpoint` — the mirror task is about to write checkpoint N to Postgres:
  the local file holds N (or, the loop having moved on, a newer one); Postgres still holds N-1.
* `during_mutation_wait` — inside the mutation wait, after a poll: every `mutation_wait_every`
  batches (before the batch's checkpoint is started), and before and after the trades' write.
* `during_stop_handling` — a stop was requested, the last checkpoint has landed locally and the loop
  is leaving at a batch boundary: before the mirror is drained, the final mirror retry and the exit.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from engine.crashpoints import crash_point
from engine.enrichment import sql
from engine.enrichment.checkpoint import (
    JOB_NAME, Cursor, RemoteCheckpoints, StepDCheckpoint, load_local, now_iso, state_path,
)
from engine.enrichment.checkpoint_writer import CheckpointWriter
from engine.enrichment.mutations import wait_for_mutations
from engine.enrichment.schema import MUTATED_TABLES, STEP_D_PAIRS_NOW, ensure_schema
from engine.enrichment.writes import KeyRange, resolve_strategy, write_trades
from engine.errors import BadInput, OpsError
from engine.events import MutationInfo, MutationStatus
from engine.runner import JobContext
from engine.stores.clickhouse import ClickHouse


async def _t(fn: Any, *args: Any) -> Any:
    """Blocking ClickHouse work off the event loop."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


# --- inputs -------------------------------------------------------------------------------------
FINGERPRINT_V2 = "fp2:sha256:"
FINGERPRINT_V1 = "sha256:"


def input_fingerprint(ch: ClickHouse, like: str | None = None) -> str:
    """Changes when any trade column the P&L depends on, or any valid resolution, changes.

    `like`: a checkpoint's fingerprint; one written by an older build (version 1) is recomputed the
    old way so the comparison means the same thing."""
    v1 = like is not None and like.startswith(FINGERPRINT_V1)
    return _fingerprint(ch, ch.query(sql.FINGERPRINT_TRADES_V1 if v1 else sql.FINGERPRINT_TRADES).rows[0], v1)


def _fingerprint(ch: ClickHouse, trades: tuple[Any, ...], v1: bool = False) -> str:
    r = ch.query(sql.FINGERPRINT_RESOLUTIONS).rows[0]
    text = f"trades:{int(trades[0] or 0)}:{int(trades[1] or 0)}|resolutions:{r[0]}:{r[1]}"
    return (FINGERPRINT_V1 if v1 else FINGERPRINT_V2) + hashlib.sha256(text.encode()).hexdigest()[:24]


def freeze_worklist(ch: ClickHouse, fingerprint: str | None = None) -> tuple[int, str]:
    """Freeze the work list; returns (pairs, fingerprint). Without a fingerprint (a fresh run) it is
    taken from the work list itself, equal to `input_fingerprint` and one full scan cheaper."""
    ch.command(sql.META_CLEAR)
    ch.command(sql.WORKLIST_CLEAR)
    ch.command(sql.PAIR_PNL_CLEAR)
    ch.command(sql.WORKLIST_BUILD)
    ch.command(sql.DIRTY_MARK_ALL)  # every pair is rewritten: the next Step E rebuilds every wallet
    total = int(ch.scalar(sql.WORKLIST_COUNT))
    if fingerprint is None:
        fingerprint = _fingerprint(ch, ch.query(sql.WORKLIST_FINGERPRINT).rows[0])
    ch.command(sql.META_WRITE, {"fp": fingerprint, "total": total})
    return total, fingerprint


def frozen_worklist(ch: ClickHouse) -> tuple[str, int] | None:
    """(fingerprint, pairs) of the frozen work list; None when there is none this build can use."""
    rows = ch.query(sql.META_READ).rows
    if not rows or int(rows[0][2]) != sql.WORKLIST_LAYOUT:
        return None
    fp, total = str(rows[0][0]), int(rows[0][1])
    return (fp, total) if int(ch.scalar(sql.WORKLIST_COUNT)) == total else None


def freeze_payouts(ch: ClickHouse) -> int:
    ch.command(sql.PAYOUTS_DROP)
    ch.command(sql.PAYOUTS_CREATE)
    ch.command(sql.PAYOUTS_FILL)
    return int(ch.scalar("SELECT count() FROM $db.step_d_payouts"))


def freeze_affected(ch: ClickHouse) -> tuple[int, str, dict[str, int], int]:
    """Freeze an incremental run's work list: only the pairs whose trades, payouts or P&L columns
    differ from their bookkeeping (stepd_pair_state). Needs this run's payouts frozen first.
    Returns (affected pairs, input fingerprint, affected pairs by reason, all pairs); the
    fingerprint equals `input_fingerprint`, taken from the same scan."""
    ch.command(sql.META_CLEAR)
    ch.command(sql.WORKLIST_CLEAR)
    ch.command(sql.PAIR_PNL_CLEAR)
    ch.command(sql.PAIRS_NOW_DROP)  # recreated in this build's shape (an older build's had no `pairs`)
    ch.command(STEP_D_PAIRS_NOW)
    ch.command(sql.pairs_now_build_sql(ch.database))
    ch.command(sql.WORKLIST_FROM_AFFECTED)
    # Step E rebuilds these wallets (marked before any P&L is written, so never too few).
    ch.command(sql.DIRTY_MARK_AFFECTED)
    ch.command(sql.DIRTY_MARK_VANISHED)
    total = int(ch.scalar(sql.WORKLIST_COUNT))
    fingerprint = _fingerprint(ch, ch.query(sql.PAIRS_NOW_FINGERPRINT).rows[0])
    counts = {str(r[0]): int(r[1]) for r in ch.query(sql.PAIRS_NOW_REASONS).rows}
    ch.command(sql.PAIRS_NOW_CLEAR)  # not needed any more
    ch.command(sql.META_WRITE, {"fp": fingerprint, "total": total})
    reasons = {r: counts.get(r, 0) for r in sql.AFFECTED_REASONS}
    return total, fingerprint, reasons, sum(n for r, n in counts.items() if r != sql.VANISHED)


def bookkeeping_pairs(ch: ClickHouse) -> int:
    return int(ch.scalar(sql.PAIR_STATE_COUNT))


def write_pair_pnl(ch: ClickHouse, rng: KeyRange) -> None:
    """A batch: the P&L of the work list's pairs in the key range, from their sums."""
    ch.command(sql.pair_pnl_batch_sql(ch.database, rng.after is not None), rng.params())


def pnl_agreement(ch: ClickHouse, rng: KeyRange, incremental: bool) -> str:
    """'' when the trades' P&L in the key range equals the batches' pair P&L (sum and resolved
    trades), else what differs."""
    statement = sql.pnl_agreement_sql(ch.database, rng.after is not None, incremental)
    pairs_pnl, trades_pnl, should, marked = ch.query(statement, rng.params()).rows[0]
    problems = []
    if pairs_pnl != trades_pnl:
        problems.append(f"the trades' P&L sums to {trades_pnl}, the pairs' to {pairs_pnl}")
    if int(should) != int(marked):
        problems.append(f"{int(marked):,} trades are marked resolved, {int(should):,} should be")
    return "; ".join(problems)


def write_pair_state(ch: ClickHouse, rng: KeyRange) -> None:
    """Bookkeeping for the work list's pairs in the range; only called once their P&L has landed."""
    params = {**rng.params(), "version": time.time_ns()}
    ch.command(sql.pair_state_write_sql(ch.database, rng.after is not None), params)


def pair_at(ch: ClickHouse, offset: int) -> tuple[str, str]:
    row = ch.query(sql.WORKLIST_PAIR_AT, {"offset": offset}).rows[0]
    return str(row[0]), str(row[1])


def rank_of(ch: ClickHouse, cursor: tuple[str, str]) -> int:
    return int(ch.scalar(sql.WORKLIST_RANK, {"cw": cursor[0], "cc": cursor[1]}))


@dataclass(frozen=True)
class Batch:
    pairs: int
    rows: int
    range: KeyRange


def next_batch(ch: ClickHouse, cursor: tuple[str, str] | None, size: int) -> Batch | None:
    params: dict[str, Any] = {"n": size}
    if cursor is not None:
        params.update(cw=cursor[0], cc=cursor[1])
    row = ch.query(sql.next_batch_sql(cursor is not None), params).dicts()[0]
    if int(row["pairs"]) == 0:
        return None
    return Batch(int(row["pairs"]), int(row["rows"] or 0), KeyRange(cursor, (str(row["last_wallet"]), str(row["last_condition"]))))


class WorklistReader:
    """Reads the frozen work list ahead in chunks, so taking the next batch (of whatever live size)
    is a slice in memory rather than a query per batch. Positions are keys, never counters."""

    def __init__(self, ch: ClickHouse, cursor: tuple[str, str] | None, chunk: int = 20_000) -> None:
        self.ch = ch
        self.chunk = chunk
        self.buffer: list[tuple[str, str, int]] = []
        self.pos = 0
        self.read_to = cursor  # last key fetched into the buffer
        self.exhausted = False

    def _fill(self, need: int) -> None:
        while not self.exhausted and len(self.buffer) - self.pos < need:
            params: dict[str, Any] = {"n": max(self.chunk, need)}
            if self.read_to is not None:
                params.update(cw=self.read_to[0], cc=self.read_to[1])
            rows = self.ch.query(sql.worklist_chunk_sql(self.read_to is not None), params).rows
            if len(rows) < params["n"]:
                self.exhausted = True
            if rows:
                self.buffer = self.buffer[self.pos:] + [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
                self.pos = 0
                self.read_to = (self.buffer[-1][0], self.buffer[-1][1])

    def buffered(self, size: int) -> bool:
        """True when `take(size)` needs no query (the loop then skips the worker thread)."""
        return self.exhausted or len(self.buffer) - self.pos >= size

    def take(self, cursor: tuple[str, str] | None, size: int) -> Batch | None:
        self._fill(size)
        items = self.buffer[self.pos:self.pos + size]
        if not items:
            return None
        self.pos += len(items)
        return Batch(len(items), sum(i[2] for i in items), KeyRange(cursor, (items[-1][0], items[-1][1])))


def step_d_missing(ch: ClickHouse) -> int:
    """Trades of validly resolved conditions still without P&L (0 when Step D is complete)."""
    return int(ch.scalar(sql.STEP_D_MISSING))


def pnl_checksum(ch: ClickHouse) -> tuple[int, int]:
    row = ch.query(sql.PNL_CHECKSUM).rows[0]
    return int(row[0]), int(row[1])


# --- mutation waits ----------------------------------------------------------------------------
async def wait_mutations(ctx: JobContext, ch: ClickHouse, timeout_s: float) -> int:
    """Wait for our tables' mutations; returns how many were pending at the first poll."""
    first: list[int] = []

    def status(pending: list[MutationInfo]) -> None:
        if not first:
            first.append(len(pending))
        ctx.emit(MutationStatus(job=ctx.name, pending=len(pending), details=tuple(pending)))
        crash_point("during_mutation_wait")

    await wait_for_mutations(ch, tables=list(MUTATED_TABLES), timeout_s=timeout_s, on_status=status)
    return first[0] if first else 0


# --- the step ------------------------------------------------------------------------------------
@dataclass
class StepDResult:
    status: str  # done | stopped | already-done
    pairs_done: int
    pairs_total: int
    batches: int
    rows_written: int
    seconds: float
    write_strategy: str
    # Applying the run's patch parts after the trades' write (lightweight strategy); not part of
    # `seconds`, which is the work the checkpoint describes. None when not applied.
    patches_applied_s: float | None = None
    # full | incremental; for an incremental run, the affected pairs by reason (AFFECTED_REASONS).
    mode: str = "full"
    affected: dict[str, int] | None = None
    # The trades' P&L write after the batches (part of `seconds`); None when the run stopped before it.
    trades_write_s: float | None = None


APPLYING_PATCHES = "applying this run's patch parts to trades_raw, so Step E and the gates read plain columns"


async def apply_patches(ctx: JobContext, ch: ClickHouse, timeout_s: float) -> float | None:
    """Materialize Step D's patch parts into trades_raw's columns; returns the seconds it took, or
    None when it could not (a warning: reads stay correct, only slower).

    Every read of trades_raw otherwise applies hundreds of patch parts on the fly until background
    merges catch up: measured at seed scale, the gates took 6.3 s before and 0.4 s after a 2.3 s
    apply. A small incremental run's few patch parts are worth applying too: at 10x seed, after
    one that rewrote 0.8% of the rows, Step E took 9.1 s and the gates 18.9 s through the unapplied
    patches, against a 4.8 s apply, then 5.3 s and 8.5 s. Embedded chDB applies synchronously; a
    server runs it as a mutation, waited for with
    the usual bounded mutation wait (shown in the console like any other)."""
    started = time.monotonic()
    ctx.log(APPLYING_PATCHES, step="D")
    try:
        sync = {"mutations_sync": 2} if ch.backend == "chdb" else None
        await anyio.to_thread.run_sync(lambda: ch.command(sql.APPLY_PATCHES, settings=sync))
        await wait_mutations(ctx, ch, timeout_s)
    except OpsError as exc:  # a mutation timeout or failure: the P&L itself is complete
        ctx.log(f"patch parts not applied yet ({exc}); results are correct, reads stay slower until "
                "ClickHouse merges them", level="WARNING", step="D")
        return None
    except Exception as exc:  # e.g. a server with lightweight UPDATE but without APPLY PATCHES
        ctx.log(f"could not apply patch parts ({type(exc).__name__}: {str(exc)[:200]}); results are correct, "
                "reads stay slower until ClickHouse merges them", level="WARNING", step="D")
        return None
    elapsed = time.monotonic() - started
    ctx.log(f"patch parts applied in {elapsed:.1f}s", step="D")
    return elapsed


REMOTE_WHERE = "Postgres ops_job_checkpoints"


async def last_checkpoint(ctx: JobContext, remote: RemoteCheckpoints | None) -> StepDCheckpoint | None:
    """The last Step D run's checkpoint, as a fresh run judges it: the local file, or the Postgres
    mirror when there is no local file (a new machine, a CI runner). An unreadable local file
    counts as none (a fresh run replaces it)."""
    previous: StepDCheckpoint | None = None
    try:
        previous = await _t(load_local, ctx.settings.runtime)
    except BadInput:
        pass
    if previous is None and remote is not None and not state_path(ctx.settings.runtime).exists():
        previous = await remote.load()
    return previous


async def _start_position(
    ctx: JobContext, ch: ClickHouse, cp: StepDCheckpoint, fingerprint: str, total: int, where: str
) -> tuple[tuple[str, str] | None, int]:
    """Cursor and pairs_done to continue from, checked against the frozen work list."""
    if cp.fingerprint is not None and cp.fingerprint != fingerprint:
        raise BadInput(
            f"Step D inputs changed since the checkpoint in {where} was written (trades or resolutions "
            f"differ: fingerprint {cp.fingerprint} then, {fingerprint} now); resuming would mix old and "
            "new P&L",
            hint="run `opsconsole enrich --step D` without --resume to recompute from the start",
        )
    if cp.cursor is not None:
        cursor = (cp.cursor.wallet_address, cp.cursor.condition_id)
        done = await _t(rank_of, ch, cursor)
        if cp.fingerprint is not None and cp.pairs_done != done:
            ctx.log(f"checkpoint said pairs_done={cp.pairs_done}; its cursor is pair {done} of the work list — "
                    "continuing after the cursor", level="WARNING", step="D")
        return cursor, done
    # The runbook's hand-written format: only a count of pairs. The stable order turns it into a cursor.
    if cp.fingerprint is None:
        ctx.log("checkpoint has no input fingerprint (hand-written or from the old job): cannot verify "
                "that trades and resolutions are unchanged", level="WARNING", step="D")
    if cp.pairs_done > total:
        raise BadInput(f"checkpoint in {where} says pairs_done={cp.pairs_done}, but the work list has only {total} pairs",
                       hint="fix pairs_done (the runbook's rule: batch_idx × 300), or start without --resume")
    if cp.pairs_done == 0:
        return None, 0
    cursor = await _t(pair_at, ch, cp.pairs_done - 1)
    ctx.log(f"checkpoint has no cursor: pair #{cp.pairs_done} of the stable order is {cursor[0]} / {cursor[1]}", step="D")
    return cursor, cp.pairs_done



class StepD:
    """One run of Step D.

    The position (cursor, pairs_done, batch_idx) moves only after a batch's rows are written, and a
    checkpoint is only built from the position: so a checkpoint says less than is done, never more.
    The CheckpointWriter saves it in the background while the next batch is written, and keeps
    checkpoints in order; stop, pause, a failure and the end `settle` it first."""

    def __init__(self, ctx: JobContext, ch: ClickHouse, *, remote: RemoteCheckpoints | None,
                 mutation_timeout_s: float) -> None:
        self.ctx = ctx
        self.ch = ch
        self.mutation_timeout_s = mutation_timeout_s
        self.writer = CheckpointWriter(ctx, remote)
        self.started = time.monotonic()
        # Fixed once the work list is frozen (`_prepare`).
        self.total = 0
        self.fingerprint = ""
        self.strategy = ""
        self.mode: Literal["full", "incremental"] = "full"
        self.affected: dict[str, int] | None = None
        # Pairs after this one get their bookkeeping at the end (None: all of them).
        self.bookkeeping_from: tuple[str, str] | None = None
        self.pairs_before_bookkeeping = 0
        # The position: what is done.
        self.cursor: tuple[str, str] | None = None
        self.pairs_done = 0
        self.batch_idx = 0
        self.last_mutations = 0
        # This run's work.
        self.batches_run = 0
        self.rows_written = 0
        self.trades_write_s: float | None = None

    async def run(self, *, resume: bool, write_strategy: str, full: bool = False) -> StepDResult:
        ctx, ch = self.ctx, self.ch
        self.started = time.monotonic()
        await _t(ensure_schema, ch)
        ctx.progress("D", 0, None, unit="pairs")
        cp, where = await self._load(resume)

        if not resume and await self._incremental_possible(full):
            await self._prepare_incremental(write_strategy)
        else:
            # Resuming must compare the checkpoint with today's inputs before anything else; a fresh
            # run takes its fingerprint from the work-list build (the same value, one scan fewer).
            fingerprint: str | None = None
            if cp is not None:
                ctx.log("fingerprinting inputs (trades, valid resolutions)", step="D")
                fingerprint = await _t(input_fingerprint, ch, cp.fingerprint)

            if cp is not None and cp.status == "done" and cp.fingerprint == fingerprint:
                result = await self._already_done(cp, where)
                if result is not None:
                    return result
                cp = None

            await self._prepare(cp, where, fingerprint, write_strategy)
        self._report()
        stopped = await self.writer.run(self._batches)
        if stopped is not None:
            await self._mark_stopped()
            return stopped
        return await self._finish()

    async def _mark_stopped(self) -> None:
        """A graceful stop: the newest checkpoint again, saying `stopped` (the same position), so a
        shell or the launcher can tell it from a killed run. A run stopped before its first batch
        saved nothing, and leaves the previous checkpoint as it was (a complete run's stays done,
        and the next run stays incremental). Saved `final`, it is mirrored inline: a mirror that fell
        behind during the run is brought current before the job ends."""
        if self.writer.last_saved is not None:
            await self.writer.save(self._checkpoint("stopped"), final=True)

    async def _load(self, resume: bool) -> tuple[StepDCheckpoint | None, str]:
        """The checkpoint to resume from (None: start from the beginning) and where it was read."""
        ctx, runtime, remote = self.ctx, self.ctx.settings.runtime, self.writer.remote
        where = str(state_path(runtime))
        if not resume:
            old = None
            try:
                old = await _t(load_local, runtime)
            except BadInput:
                pass
            if old is not None and old.status != "done":
                ctx.log(f"starting fresh: the previous checkpoint (pairs_done={old.pairs_done}) is replaced; "
                        "use --resume to continue a stopped run", level="WARNING", step="D")
            return None, where
        cp: StepDCheckpoint | None = await _t(load_local, runtime)
        if cp is None and remote is not None:
            cp = await remote.load()
            where = REMOTE_WHERE
            if cp is not None:
                ctx.log("no local checkpoint; resuming from the Postgres mirror", level="WARNING", step="D")
        if cp is None:
            ctx.log("--resume: no checkpoint found; starting Step D from the beginning", level="WARNING", step="D")
        return cp, where

    async def _incremental_possible(self, full: bool) -> bool:
        """A fresh run is incremental when a previous run completed and left per-pair bookkeeping.

        Only a *complete* run's bookkeeping is trusted: a stopped or crashed run may have classic
        mutations still in flight, and a reset --hard removes the checkpoint (so the next run is
        full). --full skips all of this."""
        ctx = self.ctx
        if full:
            ctx.log("--full: recomputing every (wallet, condition) pair", step="D")
            return False
        previous = await last_checkpoint(ctx, self.writer.remote)
        if previous is None or previous.status != "done":
            return False
        if not await _t(bookkeeping_pairs, self.ch):
            why = ("the previous complete run had no pairs" if not previous.pairs_total
                   else "the previous complete run kept no per-pair bookkeeping (an older build)")
            ctx.log(f"{why}: computing every pair once; later runs recompute only what changed", step="D")
            return False
        return True

    async def _prepare_incremental(self, write_strategy: str) -> None:
        """Freeze the payouts, then the work list of affected pairs only, and pick the write strategy."""
        ctx, ch = self.ctx, self.ch
        ctx.log("incremental run: comparing every pair with what its P&L was computed from", step="D")
        conditions = await _t(freeze_payouts, ch)
        self.total, self.fingerprint, self.affected, pairs = await _t(freeze_affected, ch)
        self.mode = "incremental"
        self.strategy = await _t(resolve_strategy, ch, write_strategy, self.mode == "incremental")
        why = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in self.affected.items())
        ctx.log(f"{self.total:,} of {pairs:,} pairs affected ({why}); {conditions:,} resolved conditions, "
                f"write strategy {self.strategy} — `--full` recomputes every pair", step="D")

    async def _already_done(self, cp: StepDCheckpoint, where: str) -> StepDResult | None:
        """The result when a done checkpoint matches today's inputs and data; None: recompute."""
        ctx = self.ctx
        missing = await _t(step_d_missing, self.ch)
        if missing:
            ctx.log(f"checkpoint says done but {missing} resolved trades have no P&L (reset?); recomputing",
                    level="WARNING", step="D")
            return None
        total = cp.pairs_total or cp.pairs_done
        ctx.log("Step D already complete for these inputs; nothing to do", step="D")
        if where != REMOTE_WHERE:
            await self.writer.catch_up_mirror(cp)
        ctx.progress("D", total, total, unit="pairs")
        return StepDResult("already-done", total, total, 0, 0, time.monotonic() - self.started, cp.write_strategy or "",
                           mode=cp.mode)

    async def _prepare(self, cp: StepDCheckpoint | None, where: str, fingerprint: str | None, write_strategy: str) -> None:
        """Freeze the work list and payouts, pick the write strategy, and place the cursor."""
        ctx, ch = self.ctx, self.ch
        frozen = await _t(frozen_worklist, ch)
        if cp is not None and frozen is not None and frozen[0] == fingerprint:
            self.total = frozen[1]
            self.mode = cp.mode  # an incremental run's frozen work list is its affected pairs
        else:
            ctx.log("freezing the work list of (wallet, condition) pairs" + ("" if fingerprint else ", fingerprinting inputs"), step="D")
            self.total, fingerprint = await _t(freeze_worklist, ch, fingerprint)
            frozen = None
        assert fingerprint is not None  # resumed: computed before; fresh: from the work list
        self.fingerprint = fingerprint
        conditions = await _t(freeze_payouts, ch)
        self.strategy = await _t(resolve_strategy, ch, write_strategy, self.mode == "incremental")
        if cp is not None:
            self.cursor, self.pairs_done = await _start_position(ctx, ch, cp, fingerprint, self.total, where)
            if frozen is None and self.cursor is not None:
                # Frozen again (by an older build, or gone): the pairs before the cursor get their
                # pair P&L again, in one statement, so the check after the trades' write covers them.
                await _t(write_pair_pnl, ch, KeyRange(None, self.cursor))
            self.batch_idx = cp.batch_idx
            self.last_mutations = cp.last_mutations
            ctx.log(f"resuming after pair {self.pairs_done:,} of {self.total:,} (batch_idx {self.batch_idx})"
                    + (" of an incremental run" if self.mode == "incremental" else ""), step="D")
            if cp.fingerprint is None:
                # The pairs before the cursor were computed from inputs nobody can vouch for: no
                # bookkeeping for them, so the next incremental run recomputes them.
                self.bookkeeping_from = self.cursor
                self.pairs_before_bookkeeping = self.pairs_done
        ctx.log(f"{self.total:,} pairs, {conditions:,} resolved conditions, write strategy {self.strategy}", step="D")

    def _checkpoint(self, status: str = "running") -> StepDCheckpoint:
        cursor = self.cursor
        return StepDCheckpoint(
            job=JOB_NAME, step="D", batch_idx=self.batch_idx, pairs_done=self.pairs_done,
            last_mutations=self.last_mutations, updated_at=now_iso(),
            cursor=Cursor(wallet_address=cursor[0], condition_id=cursor[1]) if cursor else None,
            fingerprint=self.fingerprint, pairs_total=self.total, batch_size=self.ctx.control.live.batch_size,
            write_strategy=self.strategy, status=status, mode=self.mode,
        )

    def _report(self) -> None:
        size = self.ctx.control.live.batch_size
        cursor = self.cursor
        self.ctx.progress(
            "D", self.pairs_done, self.total, unit="pairs", batch_idx=self.batch_idx,
            batches_total=self.batch_idx + math.ceil(max(self.total - self.pairs_done, 0) / size), batch_size=size,
            rows_written=self.rows_written, write_strategy=self.strategy,
            cursor={"wallet_address": cursor[0], "condition_id": cursor[1]} if cursor else {},
        )

    def _result(self, status: str, seconds: float, applied: float | None = None) -> StepDResult:
        return StepDResult(status, self.pairs_done, self.total, self.batches_run, self.rows_written, seconds,
                           self.strategy, applied, self.mode, self.affected, self.trades_write_s)

    async def _batches(self) -> StepDResult | None:
        """The batch loop; returns a result when stopped, None when the work list is exhausted.
        Runs inside `CheckpointWriter.run`: batch i's checkpoint is saved while batch i+1 is written."""
        ctx, ch, writer = self.ctx, self.ch, self.writer
        reader = WorklistReader(ch, self.cursor)
        while True:
            if ctx.control.stop_requested or ctx.control.pause_requested:
                await writer.settle()  # a pause holds with the newest checkpoint on disk
            if not await ctx.control.boundary():
                crash_point("during_stop_handling")
                await writer.settle()
                ctx.log(f"stopped at a batch boundary after pair {self.pairs_done:,} of {self.total:,}; checkpoint saved — "
                        "continue with `opsconsole enrich --step D --resume`", step="D")
                return self._result("stopped", time.monotonic() - self.started)
            size = ctx.control.live.batch_size
            batch = reader.take(self.cursor, size) if reader.buffered(size) else await _t(reader.take, self.cursor, size)
            if batch is None:
                return None
            crash_point("before_batch_write")
            try:
                await _t(write_pair_pnl, ch, batch.range)
            except Exception as exc:
                await writer.settle()  # the failure is reported with the newest checkpoint on disk
                reason = f"{type(exc).__name__}: {exc}"
                ctx.failure(f"batch {self.batch_idx + 1} (pairs after {self.cursor or 'start'})", reason, retriable=True, step="D")
                raise OpsError(
                    f"Step D batch {self.batch_idx + 1} failed; the checkpoint still points after pair {self.pairs_done:,}: {reason}",
                    hint="fix the cause, then `opsconsole enrich --step D --resume`",
                ) from None
            crash_point("after_write_before_local_checkpoint")
            # The batch is written: only now does the position move.
            self.cursor = batch.range.last
            self.pairs_done += batch.pairs
            self.batch_idx += 1
            self.batches_run += 1
            self.rows_written += batch.rows
            if self.batches_run % ctx.control.live.mutation_wait_every == 0:
                self.last_mutations = await wait_mutations(ctx, ch, self.mutation_timeout_s)
            await writer.save_next(self._checkpoint)
            self._report()

    async def _write_and_check_trades(self) -> None:
        """Every batch is done: the trades' P&L in one statement, waited for, then checked against
        the pairs' P&L the batches computed from the same frozen inputs."""
        ctx, ch = self.ctx, self.ch
        assert self.cursor is not None
        rng = KeyRange(self.bookkeeping_from, self.cursor)
        how = "one classic mutation" if self.strategy == "classic" else "one lightweight UPDATE"
        pairs = self.pairs_done - self.pairs_before_bookkeeping
        ctx.log(f"every batch done: writing the trades' P&L of {pairs:,} pairs into trades_raw, {how}", step="D")
        crash_point("before_trades_write")
        started = time.monotonic()
        # A server keeps running a mutation after the job that sent it has gone: the trades' write
        # of an earlier attempt (timed out, stopped, crashed) finishes before this one is sent.
        await wait_mutations(ctx, ch, self.mutation_timeout_s)
        try:
            await _t(write_trades, ch, self.strategy, rng, self.mode == "incremental")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            ctx.failure("the trades' P&L write", reason, retriable=True, step="D")
            raise OpsError(f"Step D's trades write failed after every batch was done: {reason}",
                           hint="fix the cause, then `opsconsole enrich --step D --resume` (only the write is repeated)") from None
        # Complete only when every mutation has landed (classic mutations run asynchronously on a server).
        self.last_mutations = await wait_mutations(ctx, ch, self.mutation_timeout_s)
        self.trades_write_s = time.monotonic() - started
        problem = await _t(pnl_agreement, ch, rng, self.mode == "incremental")
        if problem:
            ctx.failure("trades' P&L check", problem, retriable=True, step="D")
            raise OpsError(f"Step D's trades' P&L does not match the pairs' P&L: {problem}",
                           hint="did trades change while Step D ran? run `opsconsole enrich --step D` again")
        ctx.log(f"trades' P&L written in {self.trades_write_s:.1f}s; it matches the pairs' P&L", step="D")

    async def _finish(self) -> StepDResult:
        ctx = self.ctx
        if self.cursor is not None and self.cursor != self.bookkeeping_from:
            await self._write_and_check_trades()
            # The bookkeeping of every pair of the work list, in one statement, now that all their
            # P&L has landed (a resumed run's earlier batches included: a resume is refused unless
            # the inputs are the ones they were computed from). Only a run that gets here is
            # trusted by the next incremental one.
            await _t(write_pair_state, self.ch, KeyRange(self.bookkeeping_from, self.cursor))
        else:
            self.last_mutations = await wait_mutations(ctx, self.ch, self.mutation_timeout_s)
        await self.writer.save(self._checkpoint("done"), final=True)
        self._report()
        elapsed = time.monotonic() - self.started
        ctx.log(f"Step D done{' (incremental)' if self.mode == 'incremental' else ''}: {self.pairs_done:,} pairs, "
                f"{self.rows_written:,} rows in {self.batches_run} batches, {elapsed:.1f}s", step="D")
        applied = None
        if self.strategy == "lightweight" and self.trades_write_s is not None and ctx.settings.apply_patches:
            applied = await apply_patches(ctx, self.ch, self.mutation_timeout_s)
        return self._result("done", elapsed, applied)


async def run_step_d(
    ctx: JobContext,
    ch: ClickHouse,
    *,
    resume: bool,
    write_strategy: str,
    remote: RemoteCheckpoints | None,
    mutation_timeout_s: float,
    full: bool = False,
) -> StepDResult:
    """`full`: recompute every pair even when a complete previous run's bookkeeping would allow an
    incremental run (the default for a run without --resume)."""
    step = StepD(ctx, ch, remote=remote, mutation_timeout_s=mutation_timeout_s)
    return await step.run(resume=resume, write_strategy=write_strategy, full=full)
