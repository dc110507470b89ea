"""ClickHouse mutations: what is pending on OUR tables, a bounded wait that stops on failure, kill.

The old helper polled every mutation of every table on the server, with no timeout, and never read
`latest_fail_reason` — a failing mutation meant waiting forever. Here everything is scoped to our
database (and optionally to named tables), the wait has a deadline, and a reported failure ends the
wait at once with ClickHouse's own text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from engine.errors import BadInput, OpsError
from engine.events import MutationInfo
from engine.stores.clickhouse import ClickHouse, ident

# ClickHouse's defaults (MergeTree settings) when the server does not tell us.
DEFAULT_TO_DELAY = 500
DEFAULT_TO_THROW = 1000

_PENDING_SQL = """
SELECT database, table, mutation_id, command, toString(create_time) AS created,
       toFloat64(greatest(0, dateDiff('second', system.mutations.create_time, now()))) AS age_s,
       toInt64(parts_to_do) AS parts_to_do, latest_fail_reason
FROM system.mutations
WHERE database = {db:String} AND is_done = 0 {table_filter}
ORDER BY system.mutations.create_time, table, mutation_id
"""
# The fast path: Step D's wait polls every few batches and almost always finds nothing pending;
# counting is about half the cost of the detailed query above.
_COUNT_SQL = "SELECT count() FROM system.mutations WHERE database = {db:String} AND is_done = 0 {table_filter}"


class MutationFailed(OpsError):
    """A mutation on our tables reported `latest_fail_reason`; waiting longer will not help."""


class MutationTimeout(OpsError):
    """Mutations were still pending when the wait's deadline passed."""


def _filter(tables: Sequence[str] | None, params: dict[str, Any]) -> str:
    if tables is None:
        return ""
    for t in tables:
        ident(t)
    params["tables"] = list(tables)
    return "AND table IN {tables:Array(String)}"


def pending_mutations(ch: ClickHouse, tables: Sequence[str] | None = None) -> list[MutationInfo]:
    """Unfinished mutations of our database (optionally only `tables`), oldest first."""
    params: dict[str, Any] = {"db": ch.database}
    table_filter = _filter(tables, params)
    if int(ch.scalar(_COUNT_SQL.replace("{table_filter}", table_filter), params)) == 0:
        return []
    sql = _PENDING_SQL.replace("{table_filter}", table_filter)
    out = []
    for r in ch.query(sql, params).dicts():
        out.append(MutationInfo(
            database=r["database"], table=r["table"], mutation_id=r["mutation_id"],
            command=str(r["command"]).strip(), create_time=str(r["created"]), age_s=float(r["age_s"]),
            parts_to_do=int(r["parts_to_do"]), latest_fail_reason=str(r["latest_fail_reason"] or ""),
        ))
    return out


async def apending_mutations(ch: ClickHouse, tables: Sequence[str] | None = None) -> list[MutationInfo]:
    return await anyio.to_thread.run_sync(lambda: pending_mutations(ch, tables))


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_failure(m: MutationInfo) -> str:
    return f"mutation {m.mutation_id} on {m.table} failed: {_short(m.latest_fail_reason)} (command: {_short(m.command, 160)})"


async def wait_for_mutations(
    ch: ClickHouse,
    *,
    tables: Sequence[str] | None,
    timeout_s: float,
    poll_s: float = 1.0,
    on_status: Callable[[list[MutationInfo]], None] | None = None,
) -> None:
    """Poll until no mutation of `tables` is pending.

    Raises MutationFailed as soon as one reports `latest_fail_reason`, and MutationTimeout when
    `timeout_s` passes first. `on_status` sees every poll (jobs turn it into MutationStatus events).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pending = await apending_mutations(ch, tables)
        if on_status is not None:
            on_status(pending)
        if not pending:
            return
        failed = [m for m in pending if m.latest_fail_reason]
        if failed:
            raise MutationFailed(
                describe_failure(failed[0]) + (f" (+{len(failed) - 1} more failing)" if len(failed) > 1 else ""),
                hint=f"inspect with `opsconsole mutations`; after fixing the cause, remove it with "
                f"`opsconsole mutations --kill {failed[0].mutation_id}`",
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            oldest = pending[0]
            raise MutationTimeout(
                f"{len(pending)} mutation(s) still pending after {timeout_s:g}s; oldest {oldest.mutation_id} on "
                f"{oldest.table} ({oldest.parts_to_do} parts to do, {oldest.age_s:.0f}s old)",
                hint="check `opsconsole mutations`; raise MUTATION_WAIT_TIMEOUT or lower BATCH_SIZE",
            )
        await anyio.sleep(min(poll_s, max(remaining, 0.01)))


def kill_mutation(ch: ClickHouse, mutation_id: str) -> MutationInfo:
    """Kill one unfinished mutation of our database by id; returns what was killed."""
    mutation_id = mutation_id.strip()
    if not mutation_id:
        raise BadInput("a mutation id is required (see `opsconsole mutations`)")
    match = [m for m in pending_mutations(ch) if m.mutation_id == mutation_id]
    if not match:
        raise BadInput(
            f"no pending mutation {mutation_id!r} in database {ch.database}",
            hint="list them with `opsconsole mutations`",
        )
    ch.command(
        "KILL MUTATION WHERE database = {db:String} AND mutation_id = {id:String} SYNC",
        {"db": ch.database, "id": mutation_id},
    )
    return match[0]


@dataclass(frozen=True)
class MutationLimits:
    """Per-table headroom: ClickHouse delays inserts at `to_delay` pending mutations and refuses new
    mutations ("Too many mutations") at `to_throw`."""

    table: str
    pending: int
    to_delay: int
    to_throw: int

    @property
    def headroom(self) -> int:
        return max(0, self.to_throw - self.pending)


_SETTING = re.compile(r"\b(number_of_mutations_to_delay|number_of_mutations_to_throw)\s*=\s*(\d+)")


def mutation_limits(ch: ClickHouse, tables: Sequence[str] | None = None) -> list[MutationLimits]:
    """The two limits for each MergeTree table of our database: table SETTINGS override the server default."""
    defaults = {"number_of_mutations_to_delay": DEFAULT_TO_DELAY, "number_of_mutations_to_throw": DEFAULT_TO_THROW}
    for r in ch.query(
        "SELECT name, value FROM system.merge_tree_settings "
        "WHERE name IN ('number_of_mutations_to_delay', 'number_of_mutations_to_throw')"
    ).rows:
        defaults[str(r[0])] = int(r[1])
    params: dict[str, Any] = {"db": ch.database}
    rows = ch.query(
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = {db:String} AND engine LIKE '%MergeTree%' " + _filter(tables, params).replace("table IN", "name IN")
        + " ORDER BY name",
        params,
    ).rows
    counts: dict[str, int] = {}
    for m in pending_mutations(ch, tables):
        counts[m.table] = counts.get(m.table, 0) + 1
    out = []
    for name, ddl in rows:
        values = dict(defaults)
        for key, value in _SETTING.findall(str(ddl)):
            values[key] = int(value)
        out.append(MutationLimits(str(name), counts.get(str(name), 0),
                                  values["number_of_mutations_to_delay"], values["number_of_mutations_to_throw"]))
    return out
