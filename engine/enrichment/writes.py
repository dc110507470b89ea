"""How Step D writes a batch: lightweight `UPDATE` (patch parts) or classic `ALTER TABLE … UPDATE`.

Both write the same absolute values for one key range of trades_raw in one statement. Lightweight
updates need ClickHouse 25.7+ and the two block columns (the schema enables them); classic
mutations work on any ClickHouse but are heavier and, on a server, asynchronous — Step D then waits
for them every N batches.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.enrichment import sql
from engine.errors import BadInput
from engine.stores.clickhouse import ClickHouse

STRATEGIES = ("auto", "lightweight", "classic")


def resolve_strategy(ch: ClickHouse, requested: str) -> str:
    if requested not in STRATEGIES:
        raise BadInput(f"unknown write strategy {requested!r}: choose one of {', '.join(STRATEGIES)}")
    if requested == "auto":
        return "lightweight" if ch.supports_lightweight_update() else "classic"
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


def write_batch(ch: ClickHouse, strategy: str, rng: KeyRange) -> None:
    params = {"lw": rng.last[0], "lc": rng.last[1]}
    if rng.after is not None:
        params.update(cw=rng.after[0], cc=rng.after[1])
    statement = sql.batch_update_sql(ch.database, strategy, rng.after is not None)
    # joinGet reads the run's frozen payouts table; ClickHouse treats it as non-deterministic for
    # mutations, which is safe here because that table does not change during the run.
    settings = {"allow_nondeterministic_mutations": 1} if strategy == "classic" else None
    ch.command(statement, params, settings)
