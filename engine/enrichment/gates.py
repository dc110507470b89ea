"""Validation gates. Each one can fail (and has a test that makes it fail).

The old gates could not: a LEFT JOIN without `join_use_nulls` fills defaults, not NULL; the P&L
column was not Nullable; the wallet count was compared with a constant. Here the missing-dimension
gate uses `NOT IN`, P&L is Nullable and also counted where Step D has not reached, and the expected
wallet count comes from the data.
"""

from __future__ import annotations

from engine.enrichment import sql
from engine.enrichment.mutations import pending_mutations
from engine.enrichment.schema import MUTATED_TABLES, ensure_schema
from engine.events import GateResult
from engine.stores.clickhouse import ClickHouse

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


def _pending_count(ch: ClickHouse) -> tuple[int, int]:
    """(pending, failing) mutations on our database's enrichment tables."""
    rows = pending_mutations(ch, MUTATED_TABLES)
    return len(rows), sum(1 for m in rows if m.latest_fail_reason)


def compute_gates(ch: ClickHouse) -> list[GateResult]:
    ensure_schema(ch)
    gates: list[GateResult] = []

    missing = int(ch.scalar(sql.GATE_MARKETS_MISSING_DIM))
    gates.append(GateResult(
        name="markets_missing_dim", actual=missing, expected="0 (1 tolerated: one market failed to fetch)",
        status=PASS if missing == 0 else WARN if missing == 1 else FAIL,
        detail="" if missing == 0 else "run `opsconsole enrich --step A` (FOCUS_FILE for single markets), then B",
    ))

    nulls = int(ch.scalar(sql.GATE_PNL_NULLS))
    gates.append(GateResult(
        name="pnl_nulls", actual=nulls, expected="0", status=PASS if nulls == 0 else FAIL,
        detail="" if nulls == 0 else "trades of resolved markets without P&L: run or resume Step D",
    ))

    expected_wallets = int(ch.scalar(sql.GATE_WALLETS_EXPECTED))
    actual_wallets = int(ch.scalar(sql.GATE_WALLETS_ACTUAL))
    gates.append(GateResult(
        name="wallets_with_outcomes", actual=actual_wallets,
        expected=f"{expected_wallets} (wallets with a non-flat position in a resolved market)",
        status=PASS if actual_wallets == expected_wallets else FAIL,
        detail="" if actual_wallets == expected_wallets else "outcomes are stale or missing: run Step E",
    ))

    pending, failing = _pending_count(ch)
    gates.append(GateResult(
        name="pending_mutations", actual=pending, expected="0", status=PASS if pending == 0 else FAIL,
        detail="" if pending == 0 else (
            f"{failing} failing — see `opsconsole mutations`" if failing else "wait for them: `opsconsole mutations`"),
    ))

    bad, sample = ch.query(sql.GATE_BAD_MARKETS).rows[0]
    resolved_markets = int(ch.scalar(sql.GATE_RESOLVED_MARKETS))
    bad = int(bad)
    gates.append(GateResult(
        name="bad_markets", actual=bad,
        expected=f"0 of {resolved_markets} resolved markets with |Σ realized_pnl_usd + Σ fee_usd| > 0.01",
        status=PASS if bad == 0 else FAIL,
        detail="" if bad == 0 else "value conservation broken in: " + ", ".join(map(str, sample)),
    ))
    return gates


def any_failed(gates: list[GateResult]) -> bool:
    return any(g.status == FAIL for g in gates)


def format_gates(gates: list[GateResult]) -> str:
    marks = {PASS: "✅", WARN: "⚠️ ", FAIL: "❌", "INFO": "📊"}
    lines = []
    for i, g in enumerate(gates, 1):
        line = f"{marks.get(g.status, '?')} Gate {i}: {g.name} = {g.actual}  [{g.status}; expected {g.expected}]"
        if g.detail:
            line += f"\n     {g.detail}"
        lines.append(line)
    return "\n".join(lines)
