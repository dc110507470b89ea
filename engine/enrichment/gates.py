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

    gates.append(value_conservation(ch))
    return gates


# Gate 5 checks value conservation only where it must hold: in markets whose fills are complete.
# A fill is complete when both of its sides are present. Per transaction (tx_hash; rows without one
# form one group per market), a complete set of fills moves as many YES shares as NO shares: a plain
# transfer nets both to 0, a mint (BUY YES + BUY NO) or a merge nets both to ±k. A transaction whose
# YES and NO share flows differ has a side missing — the data-api's default takerOnly=true lists
# only the taker's row of every match — and its market is reported, not judged. Where every
# transaction balances, |Σ realized_pnl_usd + Σ fee_usd| > 0.01 is a real error and FAILs.
# One pass: per (market, transaction) the YES and NO share flows and the P&L; per market whether any
# transaction is unbalanced and the market's imbalance. cityHash64(tx_hash): grouping by the 66-char
# string costs more, and a collision could only merge two transactions of one market.
VALUE_CONSERVATION = """
SELECT countIf(unbalanced > 0), sumIf(unbalanced, unbalanced > 0), groupArrayIf(5)(market_id, unbalanced > 0),
       countIf(unbalanced = 0 AND abs(imbalance) > 0.01), groupArrayIf(10)(market_id, unbalanced = 0 AND abs(imbalance) > 0.01)
FROM (
    SELECT market_id, countIf(abs(flow) > 10000) AS unbalanced, sum(pnl) AS imbalance
    FROM (
        -- flow = net YES − net NO shares, in integer micro-shares (shares has 6 decimals): 10000 = 0.01
        SELECT market_id, cityHash64(tx_hash) AS tx,
               sum(toInt64(shares * 1000000) * if(side = 'BUY', 1, -1) * if(outcome_index = 0, 1, -1)) AS flow,
               sum(ifNull(realized_pnl_usd, 0)) + sum(fee_usd) AS pnl
        FROM $db.trades_raw WHERE is_resolved = 1
        GROUP BY market_id, tx
    )
    GROUP BY market_id
)
"""


def value_conservation(ch: ClickHouse) -> GateResult:
    resolved_markets = int(ch.scalar(sql.GATE_RESOLVED_MARKETS))
    one_sided, unbalanced, one_sided_sample, bad, sample = ch.query(VALUE_CONSERVATION).rows[0]
    one_sided, unbalanced, bad = int(one_sided), int(unbalanced or 0), int(bad)
    checked = resolved_markets - one_sided
    details = []
    if bad:
        details.append("value conservation broken in: " + ", ".join(map(str, sample)))
    if one_sided:
        details.append(
            f"{one_sided} resolved market(s) not checked: one-sided fills ({unbalanced} transaction(s) whose YES and "
            f"NO share flows do not balance, so a side of a fill is missing — e.g. data-api takerOnly=true lists only "
            f"takers; fetch with `enrich --step T`, which asks for both sides): " + ", ".join(map(str, one_sided_sample)))
    return GateResult(
        name="bad_markets", actual=bad,
        expected=f"0 of {checked} resolved markets with complete fills with |Σ realized_pnl_usd + Σ fee_usd| > 0.01"
                 + (f" ({one_sided} one-sided not checked)" if one_sided else ""),
        status=FAIL if bad else WARN if one_sided else PASS,
        detail="; ".join(details),
    )


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
