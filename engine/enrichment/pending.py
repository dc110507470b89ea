"""Pending mutations on the enrichment tables, for Step D's waits, Step E's refusal and the gates.

`engine.enrichment.mutations` is the full toolkit (listing, kill, limits). This adapter calls it and
keeps a minimal equivalent query for when that module is missing or its query fails on this
ClickHouse — visibly (the caller logs the reason), never silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
import anyio

from engine.enrichment.schema import MUTATED_TABLES
from engine.errors import OpsError
from engine.events import MutationInfo
from engine.stores.clickhouse import ClickHouse, ClickHouseError

_FALLBACK_SQL = """
SELECT table, mutation_id, command, toString(create_time) AS created,
       toFloat64(greatest(0, dateDiff('second', create_time, now()))) AS age_s,
       toInt64(parts_to_do) AS parts_to_do, latest_fail_reason
FROM system.mutations
WHERE database = {db:String} AND is_done = 0 AND table IN {tables:Array(String)}
ORDER BY create_time, table, mutation_id
"""

fallback_reasons: list[str] = []  # why the shared helper was bypassed (shown by callers)


def _fallback(ch: ClickHouse, tables: list[str]) -> list[MutationInfo]:
    rows = ch.query(_FALLBACK_SQL, {"db": ch.database, "tables": tables}).rows
    return [
        MutationInfo(database=ch.database, table=str(r[0]), mutation_id=str(r[1]), command=str(r[2]).strip(),
                     create_time=str(r[3]), age_s=float(r[4]), parts_to_do=int(r[5]), latest_fail_reason=str(r[6] or ""))
        for r in rows
    ]


def pending(ch: ClickHouse, tables: list[str] | None = None) -> list[MutationInfo]:
    tables = list(tables or MUTATED_TABLES)
    try:
        from engine.enrichment.mutations import pending_mutations
    except ModuleNotFoundError:
        return _fallback(ch, tables)
    try:
        return pending_mutations(ch, tables)
    except ClickHouseError as exc:
        reason = f"engine.enrichment.mutations.pending_mutations failed ({str(exc)[:200]}); used the built-in query"
        if reason not in fallback_reasons:
            fallback_reasons.append(reason)
        return _fallback(ch, tables)


async def wait(
    ch: ClickHouse, *, timeout_s: float, on_status: Callable[[list[MutationInfo]], None],
    tables: list[str] | None = None, poll_s: float = 1.0,
) -> None:
    """Until none pending; stops on `latest_fail_reason` or at the deadline (same contract as
    `mutations.wait_for_mutations`)."""
    try:
        from engine.enrichment.mutations import MutationFailed, MutationTimeout  # noqa: F401
    except ModuleNotFoundError:
        MutationFailed = MutationTimeout = OpsError  # type: ignore[misc,assignment]  # noqa: N806
    deadline = time.monotonic() + timeout_s
    while True:
        now_pending: list[MutationInfo] = await anyio.to_thread.run_sync(lambda: pending(ch, tables))
        on_status(now_pending)
        if not now_pending:
            return
        failed = [m for m in now_pending if m.latest_fail_reason]
        if failed:
            m = failed[0]
            raise MutationFailed(
                f"mutation {m.mutation_id} on {m.table} failed: {' '.join(m.latest_fail_reason.split())[:400]}",
                hint=f"inspect with `opsconsole mutations`; remove it with `opsconsole mutations --kill {m.mutation_id}`",
            )
        if time.monotonic() >= deadline:
            oldest = now_pending[0]
            raise MutationTimeout(
                f"{len(now_pending)} mutation(s) still pending after {timeout_s:g}s; oldest {oldest.mutation_id} "
                f"on {oldest.table} ({oldest.parts_to_do} parts to do)",
                hint="check `opsconsole mutations`; raise MUTATION_WAIT_TIMEOUT or lower BATCH_SIZE",
            )
        await anyio.sleep(min(poll_s, max(deadline - time.monotonic(), 0.01)))


def pending_summary(ch: ClickHouse) -> tuple[int, int]:
    rows = pending(ch)
    return len(rows), sum(1 for m in rows if m.latest_fail_reason)
