"""The one resolution-validity rule: the Python check and the SQL generated from it agree, case by
case, on real chDB (and over HTTP); every bad case is rejected with its reason, including by the statements Step D,
Step E and the gates read market_resolutions through."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from engine.enrichment import sql
from engine.enrichment.resolution_rule import (
    NEGATIVE_PAYOUT,
    NULL_PAYOUTS,
    PAYOUTS_NOT_ONE,
    PLACEHOLDER_CONDITION,
    PLACEHOLDER_IDS,
    UNKNOWN_CONDITION,
    resolution_problem,
    resolution_problem_sql,
    valid_resolution_sql,
)
from engine.enrichment.schema import ensure_schema


def _cid(n: int) -> str:
    return "0x" + f"{n:064x}"


UNKNOWN_CID = _cid(999)  # never in the known set

# (condition_id, payouts, expected reason or None). Known conditions are _cid(n) for n < 999.
CASES: list[tuple[str, list[D | None], str | None]] = [
    (_cid(1), [D(1), D(0)], None),
    (_cid(2), [D(0), D(1)], None),
    (_cid(3), [D("0.5"), D("0.5")], None),
    (_cid(4), [D("0.333333"), D("0.666667")], None),
    (_cid(5), [D("0.000001"), D("0.999999")], None),
    (_cid(6), [D("0.333333"), D("0.666666")], PAYOUTS_NOT_ONE),  # 0.999999: exact, not "close enough"
    (_cid(7), [D("0.6"), D("0.6")], PAYOUTS_NOT_ONE),
    (_cid(8), [D(0), D(0)], PAYOUTS_NOT_ONE),
    (_cid(9), [D("1.000001"), D(0)], PAYOUTS_NOT_ONE),
    (_cid(10), [D("1.2"), D("-0.2")], NEGATIVE_PAYOUT),            # sums to 1, still invalid
    (_cid(11), [D(-1), D(2)], NEGATIVE_PAYOUT),
    (_cid(12), [None, None], NULL_PAYOUTS),
    (_cid(13), [D(1), None], NULL_PAYOUTS),
    (_cid(14), [], NULL_PAYOUTS),
    (_cid(15), [D(1)], NULL_PAYOUTS),
    (_cid(16), [D("0.5"), D("0.25"), D("0.25")], NULL_PAYOUTS),   # not [yes, no]
    (UNKNOWN_CID, [D(1), D(0)], UNKNOWN_CONDITION),
    (_cid(998) + "x", [D(-1), D(2)], UNKNOWN_CONDITION),           # the first broken clause is named
    # not placeholders: a real id that merely contains one, and non-ASCII look-alikes
    ("un\u212anown", [D(1), D(0)], UNKNOWN_CONDITION),             # KELVIN SIGN: "unknown" only to str.lower()
    ("0x0", [D(1), D(0)], UNKNOWN_CONDITION),
    # every placeholder spelling, as written and in other cases/with whitespace, whatever the payouts
    *[(p, [D(1), D(0)], PLACEHOLDER_CONDITION) for p in sorted(PLACEHOLDER_IDS)],
    *[(p.upper(), [D(-1), D(2)], PLACEHOLDER_CONDITION) for p in sorted(PLACEHOLDER_IDS)],
    ("  None ", [D(1), D(0)], PLACEHOLDER_CONDITION),
    ("\tN/A\n", [None, None], PLACEHOLDER_CONDITION),
    ("NaN", [D(1), D(0)], PLACEHOLDER_CONDITION),
    ("Undefined", [D(1), D(0)], PLACEHOLDER_CONDITION),
]
KNOWN = {_cid(n) for n in range(1, 999)}


def test_the_placeholder_set_is_the_union_of_the_old_sets() -> None:
    loaders_set = {"", "unknown", "none", "null", "nan", "n/a", "na", "undefined", "0x", "-", "?"}
    sql_set = {"", "unknown", "none", "null", "n/a", "0x"}
    assert PLACEHOLDER_IDS == loaders_set | sql_set


@pytest.mark.parametrize("condition_id, payouts, expected", CASES)
def test_python_rule_names_each_case(condition_id: str, payouts: list[D | None], expected: str | None) -> None:
    assert resolution_problem(condition_id, payouts, known=KNOWN) == expected


def test_python_and_sql_agree_on_every_case(ch_backend) -> None:
    ch = ch_backend  # embedded chDB, and the same SQL over HTTP (clickhouse-connect)
    ensure_schema(ch)
    ch.command("CREATE TABLE $db.rule_cases (i UInt32, condition_id String, "
               "payouts Array(Nullable(Decimal(18, 6)))) ENGINE = Memory")
    ch.command("CREATE TABLE $db.rule_known (condition_id String) ENGINE = Memory")
    ch.insert_rows("rule_cases", ["i", "condition_id", "payouts"],
                   [(i, c, p) for i, (c, p, _) in enumerate(CASES)])
    ch.insert_rows("rule_known", ["condition_id"], [(c,) for c in sorted(KNOWN)])
    known_sql = "SELECT condition_id FROM $db.rule_known"
    rows = ch.query(f"SELECT i, condition_id, {resolution_problem_sql(known_sql)} AS reason, "
                    f"{valid_resolution_sql(known_sql)} AS ok FROM $db.rule_cases ORDER BY i").rows
    assert len(rows) == len(CASES)
    for i, stored, reason, ok in rows:
        condition_id, payouts, expected = CASES[i]
        assert stored == condition_id  # the id reached the store unchanged (whitespace included)
        python = resolution_problem(condition_id, payouts, known=KNOWN)
        assert (reason or None, bool(ok)) == (python, python is None) == (expected, expected is None), CASES[i]
    # without a known set, SQL and Python both skip that clause alone
    rows = ch.query(f"SELECT i, {resolution_problem_sql()} FROM $db.rule_cases ORDER BY i").rows
    assert [r[1] or None for r in rows] == [resolution_problem(c, p) for c, p, _ in CASES]
    assert resolution_problem(UNKNOWN_CID, [D(1), D(0)]) is None


def test_readers_of_market_resolutions_use_only_valid_rows(ch) -> None:
    """Rows that break the rule but fit the table (non-null payouts) are written straight into
    market_resolutions, bypassing the loaders: Step D's payout freeze and fingerprint, Step E's
    positions and the gates (all through VALID_RESOLUTIONS) must still ignore every one of them."""
    ensure_schema(ch)
    # one row per condition id (the table's key), so FINAL has nothing to collapse
    fits = list({c: p for c, p, _ in reversed(CASES) if None not in p}.items())
    at = datetime(2025, 2, 1, tzinfo=timezone.utc)
    ch.insert_rows("market_resolutions", ["condition_id", "market_id", "payouts", "resolved_at", "source"],
                   [(c, f"m{i}", p, at, "test") for i, (c, p) in enumerate(fits)])
    expected_valid = {c for c, p in fits if resolution_problem(c, p) is None}
    assert expected_valid == {_cid(n) for n in (1, 2, 3, 4, 5)} | {UNKNOWN_CID, "un\u212anown", "0x0"}
    assert int(ch.scalar("SELECT count() FROM $db.market_resolutions FINAL")) == len(fits)
    got = {r[0] for r in ch.query(f"SELECT condition_id FROM ({sql.VALID_RESOLUTIONS})").rows}
    assert got == expected_valid
    ch.command(sql.PAYOUTS_DROP)
    ch.command(sql.PAYOUTS_CREATE)
    ch.command(sql.PAYOUTS_FILL)
    frozen = {r[0] for r in ch.query("SELECT condition_id FROM $db.step_d_payouts").rows}
    assert frozen == expected_valid
    assert int(ch.query(sql.FINGERPRINT_RESOLUTIONS).rows[0][0]) == len(expected_valid)
    ch.command(sql.PAYOUTS_DROP)
