"""Steps A–C, the mutation helpers and the loaders' dimension upserts through both ClickHouse backends
(embedded chDB and clickhouse-connect over HTTP): the same SQL and parameters must work on both."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine.enrichment.mutations import kill_mutation, pending_mutations, wait_for_mutations, MutationFailed
from engine.enrichment.steps_abc import run_step_a, run_step_b, run_step_c
from tests.enrichment.abc_data import gamma_market, seed_trades, trade
from tests.enrichment.test_steps_abc import make_ctx


def test_steps_a_b_c_from_a_snapshot_on_both_backends(ch_backend, settings, tmp_path: Path) -> None:
    ch = ch_backend
    seed_trades(ch, [trade(i, market=1 + i % 3) for i in range(1, 10)])
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps([gamma_market(1, category="NBA"), gamma_market(2, prices=("0", "1")),
                                gamma_market(3, prices=("0.3", "0.3"))]))

    async def go() -> tuple:
        ctx, events = make_ctx(settings)
        a = await run_step_a(ctx, ch, snapshot=snap)
        b = await run_step_b(ctx, ch, mutation_timeout_s=60)
        c = await run_step_c(ctx, ch, snapshot=snap)
        return a, b, c

    a, b, c = anyio.run(go)
    assert (a.written, b.statements, b.rows_to_update, c.written, len(c.rejected)) == (3, 1, 9, 2, 1)
    cats = dict(ch.query("SELECT market_id, any(canonical_category) FROM $db.trades_raw GROUP BY market_id").rows)
    assert cats == {"m1": "Sports", "m2": "Politics", "m3": "Politics"}


def test_mutations_on_both_backends(ch_backend) -> None:
    ch = ch_backend
    ch.command("CREATE TABLE $db.mt (id String, v UInt8) ENGINE = MergeTree ORDER BY id")
    ch.command("INSERT INTO $db.mt VALUES ('1', 1), ('2', 0)")
    ch.command("ALTER TABLE $db.mt UPDATE v = throwIf(id = '2', 'poisoned row') WHERE 1", settings={"mutations_sync": 0})
    with pytest.raises(MutationFailed, match="poisoned row"):
        anyio.run(lambda: wait_for_mutations(ch, tables=["mt"], timeout_s=60, poll_s=0.05))
    [m] = pending_mutations(ch, ["mt"])
    kill_mutation(ch, m.mutation_id)
    assert pending_mutations(ch) == []
