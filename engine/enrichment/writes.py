"""How Step D writes the trades' P&L once its batches are done: a classic `ALTER TABLE … UPDATE`
or a lightweight `UPDATE` (patch parts, then applied); `auto` picks per run (`resolve_strategy`).

Both write the same absolute values for one key range of trades_raw in one statement. A classic
mutation rewrites the two P&L columns of every part it touches, in place, and works on any
ClickHouse (on a server it runs asynchronously and Step D waits for it). A lightweight update needs
ClickHouse 25.7+ and the two block columns (the schema enables them) and writes patch parts, which
Step D then applies. Measured on embedded chDB at seed scale (2.45M trades), for every pair: the
classic mutation 0.92 s, the lightweight UPDATE 2.73 s plus 1.32 s to apply its patches.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.enrichment import sql
from engine.errors import BadInput
from engine.stores.clickhouse import ClickHouse

STRATEGIES = ("auto", "lightweight", "classic")


def resolve_strategy(ch: ClickHouse, requested: str, incremental: bool = False) -> str:
    """The strategy `auto` stands for: classic for a full run; lightweight for an incremental one
    (its few affected rows lie in every part, and a classic mutation rewrites every part it
    touches) and on a cluster, wherever the server supports it."""
    if requested not in STRATEGIES:
        raise BadInput(f"unknown write strategy {requested!r}: choose one of {', '.join(STRATEGIES)}")
    if requested == "auto":
        # On a cluster a classic mutation is replayed by every replica, and the joinGet helper
        # table exists only on the job's node (docs/scaling-out.md).
        return "lightweight" if (incremental or ch.cluster) and ch.supports_lightweight_update() else "classic"
    if requested == "lightweight" and not ch.supports_lightweight_update():
        raise BadInput(
            "STEP_D_WRITE_STRATEGY=lightweight, but this ClickHouse does not support lightweight UPDATE",
            hint="use auto or classic (lightweight UPDATE needs ClickHouse 25.7+)",
        )
    return requested


@dataclass(frozen=True)
class KeyRange:
    """Pairs after `after` (exclusive; None = from the start) up to `last` (inclusive)."""

    after: tuple[str, str] | None
    last: tuple[str, str]

    def params(self) -> dict[str, str]:
        """The bound values of sql.batch_range_where."""
        params = {"lw": self.last[0], "lc": self.last[1]}
        if self.after is not None:
            params.update(cw=self.after[0], cc=self.after[1])
        return params


def write_trades(ch: ClickHouse, strategy: str, rng: KeyRange, incremental: bool = False) -> None:
    """The trades' P&L over the key range; `incremental`: only the work list's pairs in it (between
    two affected pairs lie unaffected ones, whose P&L stays as it is)."""
    build = sql.incremental_trades_update_sql if incremental else sql.trades_update_sql
    statement = build(ch.database, strategy, rng.after is not None)
    # joinGet reads the run's frozen payouts table; ClickHouse treats it as non-deterministic for
    # mutations, which is safe here because that table does not change during the run.
    settings = {"allow_nondeterministic_mutations": 1} if strategy == "classic" else None
    ch.command(statement, rng.params(), settings)
