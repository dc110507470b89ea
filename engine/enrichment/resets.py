"""Resets from the runbook's emergency procedures, made safe.

`reset --hard` (the nuclear option) and `reset --market ID` (one bad market). Both:
* hold the enrichment job's lock, so they never race a running Step D/E (a running job is named);
* back up first, to runtime/backups/<UTC timestamp>[-market-<id>]/ (CSV with a header, plus a
  manifest with row counts), and check the backup's row count before changing anything;
* write absolute values (`realized_pnl_usd = NULL, is_resolved = 0`), so re-running a reset that
  crashed half-way finishes the job.

Order for --hard: backup → Postgres checkpoint row → local checkpoint file → P&L columns →
wallet_resolution_outcomes. The checkpoints go first: if we crash after them, a fresh Step D simply
recomputes everything; the other order could leave a checkpoint that says "done" over NULL P&L.

--market leaves the checkpoint alone: Step D, on its next run, sees validly resolved trades without
P&L and recomputes (when its checkpoint says done), or covers the market in a fresh run.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from engine.enrichment.mutations import wait_for_mutations
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput, OpsError, StoreUnavailable
from engine.files import atomic_write_bytes, atomic_write_json, ensure_private_dir, read_json_bounded
from engine.redact import redact
from engine.runner import job_lock
from engine.settings import Settings
from engine.stores.clickhouse import ClickHouse

JOB_NAME = "full-enrichment"  # the enrichment job's lock, pid, log and checkpoint stem
BACKUP_CHUNK = 100_000

BACKUP_TRADES = """
SELECT trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, shares,
       usd_value, fee_usd, toString(timestamp) AS timestamp, tx_hash, canonical_category,
       realized_pnl_usd, is_resolved
FROM $db.trades_raw
WHERE (realized_pnl_usd IS NOT NULL OR is_resolved != 0) {market_filter} {after}
ORDER BY wallet_address, condition_id, trade_id
LIMIT {limit:UInt64}
"""
BACKUP_OUTCOMES = """
SELECT wallet_address, condition_id, market_id, resolved_outcome, final_side, won,
       toString(resolved_at) AS resolved_at, canonical_category, num_trades, final_shares, realized_pnl_usd
FROM $db.wallet_resolution_outcomes
WHERE 1 {market_filter} {after}
ORDER BY wallet_address, condition_id
LIMIT {limit:UInt64}
"""
COUNT_RESOLVED = """
SELECT count() FROM $db.trades_raw WHERE (realized_pnl_usd IS NOT NULL OR is_resolved != 0) {market_filter}
"""
RESET_PNL = """
ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0
WHERE (realized_pnl_usd IS NOT NULL OR is_resolved != 0) {market_filter}
"""
DELETE_MARKET_OUTCOMES = "ALTER TABLE $db.wallet_resolution_outcomes DELETE WHERE market_id = {market:String}"
DELETE_REMOTE_CHECKPOINT = "DELETE FROM ops_job_checkpoints WHERE job = %s"


@dataclass
class ResetPlan:
    """What a reset would change; shown before the confirmation."""

    scope: str  # "hard" or "market <id>"
    resolved_trades: int
    outcome_rows: int
    local_checkpoint: Path | None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"reset {self.scope}:",
            f"  trades_raw: {self.resolved_trades:,} trade(s) with P&L -> realized_pnl_usd = NULL, is_resolved = 0",
            f"  wallet_resolution_outcomes: {self.outcome_rows:,} row(s) removed",
        ]
        if self.scope == "hard":
            cp = f"{self.local_checkpoint} removed" if self.local_checkpoint else "no local checkpoint file"
            lines.append(f"  checkpoints: {cp}; Postgres ops_job_checkpoints row for {JOB_NAME} deleted")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class ResetResult:
    plan: ResetPlan
    backup_dir: Path
    backed_up_trades: int
    backed_up_outcomes: int
    remote_checkpoint_deleted: int = 0


def _market_filter(market_id: str | None, params: dict[str, Any]) -> str:
    if market_id is None:
        return ""
    params["market"] = market_id
    return "AND market_id = {market:String}"


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def plan_reset(ch: ClickHouse, settings: Settings, market_id: str | None = None) -> ResetPlan:
    ensure_schema(ch)
    params: dict[str, Any] = {}
    mf = _market_filter(market_id, params)
    if market_id is not None:
        if not market_id.strip():
            raise BadInput("--market needs a market id")
        if not int(ch.scalar("SELECT count() FROM $db.trades_raw WHERE market_id = {market:String}", params) or 0):
            raise BadInput(f"market {market_id!r} has no trades in trades_raw; nothing to reset",
                           hint="check the id: SELECT DISTINCT market_id FROM trades_raw")
    resolved = int(ch.scalar(COUNT_RESOLVED.replace("{market_filter}", mf), params) or 0)
    outcomes = int(ch.scalar("SELECT count() FROM $db.wallet_resolution_outcomes WHERE 1 " + mf, params) or 0)
    state = settings.runtime / f"{JOB_NAME}.state.json"
    plan = ResetPlan("hard" if market_id is None else f"market {market_id}", resolved, outcomes,
                     state if state.exists() else None)
    if market_id is not None:
        plan.notes.append(_market_checkpoint_note(state))
    return plan


def _market_checkpoint_note(state: Path) -> str:
    status = ""
    try:
        doc = read_json_bounded(state, "checkpoint file")
        status = str(doc.get("status") or "") if isinstance(doc, dict) else ""
    except OpsError:
        pass  # an unreadable checkpoint only loses this note; resume reports it properly
    if status and status != "done":
        return ("a Step D run is in progress (checkpoint status " + status + "); resuming it only covers pairs "
                "after its cursor — after it finishes, run `opsconsole enrich --step D` again to reprocess this market")
    return "the next `opsconsole enrich --step D` (with or without --resume) recomputes this market's P&L"


def _backup_table(ch: ClickHouse, sql: str, key_cols: tuple[str, ...], path: Path, market_id: str | None) -> int:
    """Stream a table to CSV in key order, one bounded chunk at a time (keyset pagination)."""
    written = 0
    last: tuple[Any, ...] | None = None
    with path.open("w", newline="", encoding="utf-8") as fh:
        os.chmod(path, 0o600)
        writer = csv.writer(fh)
        header_done = False
        while True:
            params: dict[str, Any] = {"limit": BACKUP_CHUNK}
            mf = _market_filter(market_id, params)
            after = ""
            if last is not None:
                names = ", ".join(key_cols)
                binds = ", ".join(f"{{k{i}:String}}" for i in range(len(key_cols)))
                after = f"AND ({names}) > ({binds})"
                params.update({f"k{i}": v for i, v in enumerate(last)})
            res = ch.query(sql.replace("{market_filter}", mf).replace("{after}", after), params)
            if not header_done:
                writer.writerow(res.columns)
                header_done = True
            if not res.rows:
                break
            for row in res.rows:
                writer.writerow(["" if v is None else v for v in row])
            written += len(res.rows)
            cols = res.columns
            last = tuple(str(res.rows[-1][cols.index(k)]) for k in key_cols)
            if len(res.rows) < BACKUP_CHUNK:
                break
        fh.flush()
        os.fsync(fh.fileno())
    return written


def backup(ch: ClickHouse, settings: Settings, plan: ResetPlan, market_id: str | None) -> tuple[Path, int, int]:
    suffix = "" if market_id is None else "-market-" + re.sub(r"[^A-Za-z0-9_.-]", "_", market_id)[:60]
    directory = ensure_private_dir(settings.runtime / "backups" / (_timestamp() + suffix))
    trades = _backup_table(ch, BACKUP_TRADES, ("wallet_address", "condition_id", "trade_id"),
                           directory / "trades_raw_resolved.csv", market_id)
    outcomes = _backup_table(ch, BACKUP_OUTCOMES, ("wallet_address", "condition_id"),
                             directory / "wallet_resolution_outcomes.csv", market_id)
    if plan.local_checkpoint is not None and market_id is None:
        atomic_write_bytes(directory / plan.local_checkpoint.name, plan.local_checkpoint.read_bytes())
    if trades != plan.resolved_trades or outcomes != plan.outcome_rows:
        raise OpsError(
            f"backup incomplete: wrote {trades} trade(s) and {outcomes} outcome row(s), expected "
            f"{plan.resolved_trades} and {plan.outcome_rows}; nothing was reset",
            hint="is another process writing? run the reset again",
        )
    atomic_write_json(directory / "manifest.json", {
        "scope": plan.scope, "database": ch.database, "created_at": datetime.now(timezone.utc).isoformat(),
        "trades_raw_resolved.csv": trades, "wallet_resolution_outcomes.csv": outcomes,
        "restore_hint": "trades: ALTER TABLE trades_raw UPDATE from this CSV is not automatic; re-run Step D instead",
    })
    return directory, trades, outcomes


async def _delete_remote_checkpoint(settings: Settings) -> int:
    from engine.stores.postgres import Postgres

    try:
        async with Postgres(settings, retry_seconds=5.0) as pg:
            exists = await pg.fetch_one("SELECT to_regclass('ops_job_checkpoints') IS NOT NULL AS present")
            if not exists or not exists["present"]:
                return 0
            return await pg.execute(DELETE_REMOTE_CHECKPOINT, (JOB_NAME,))
    except OpsError:
        raise
    except Exception as exc:
        raise StoreUnavailable(
            f"could not delete the Postgres checkpoint row: {redact(str(exc))}; nothing was reset "
            "(a stale remote checkpoint would let --resume skip work)",
            hint="fix POSTGRES_URL/SUPABASE_DB_URL or start Postgres, then run the reset again",
        ) from None


async def run_reset(
    ch: ClickHouse,
    settings: Settings,
    *,
    market_id: str | None = None,
    confirm: Callable[[ResetPlan], bool],
    timeout_s: float | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> ResetResult | None:
    """Plan, confirm, back up, reset. Returns None when not confirmed (nothing changed)."""
    lock = job_lock(settings, JOB_NAME)
    lock.acquire()  # LockHeld names the running job; never reset under it
    try:
        plan = await anyio.to_thread.run_sync(lambda: plan_reset(ch, settings, market_id))
        if not confirm(plan):
            return None
        directory, trades, outcomes = await anyio.to_thread.run_sync(lambda: backup(ch, settings, plan, market_id))
        log(f"backup: {trades:,} trade(s), {outcomes:,} outcome row(s) in {directory}")
        result = ResetResult(plan, directory, trades, outcomes)
        timeout = timeout_s or settings.mutation_wait_timeout_s
        if market_id is None:
            result.remote_checkpoint_deleted = await _delete_remote_checkpoint(settings)
            log(f"Postgres checkpoint row(s) deleted: {result.remote_checkpoint_deleted}")
            state = settings.runtime / f"{JOB_NAME}.state.json"
            state.unlink(missing_ok=True)
            log(f"removed {state}")
        params: dict[str, Any] = {}
        mf = _market_filter(market_id, params)
        if plan.resolved_trades:
            await ch.acommand(RESET_PNL.replace("{market_filter}", mf), params)
        if market_id is None:
            await ch.acommand("TRUNCATE TABLE IF EXISTS $db.wallet_resolution_outcomes")
        elif plan.outcome_rows:
            await ch.acommand(DELETE_MARKET_OUTCOMES, params)
        # Mutations run in the background on a server: the reset is done when they are.
        await wait_for_mutations(ch, tables=["trades_raw", "wallet_resolution_outcomes"], timeout_s=timeout, poll_s=0.5)
        left = int(await ch.ascalar(COUNT_RESOLVED.replace("{market_filter}", mf), params) or 0)
        if left:
            raise OpsError(f"reset incomplete: {left} trade(s) still carry P&L; run the reset again")
        log(f"reset {plan.scope}: {plan.resolved_trades:,} trade(s) reset, {plan.outcome_rows:,} outcome row(s) removed")
        return result
    finally:
        lock.release()
