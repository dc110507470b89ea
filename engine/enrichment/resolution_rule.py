"""The one rule for a usable resolution, in Python and as SQL generated from the same constants.

A resolution is valid when its condition id is real (not empty or a placeholder such as `unknown`),
known (when the caller says which conditions are known), and its payouts are `[p_yes, p_no]`, each
>= 0, summing to exactly 1. Arithmetic is exact: Decimal in Python, Decimal columns in ClickHouse.

Who applies it:
* Python: `loaders.validate_resolution` (file loads and Step C's Gamma resolutions) checks the
  placeholder and payout clauses row by row; the same placeholder set guards every id column of
  trades and markets loaded from files.
* SQL: `resolution_problem_sql` names the first broken clause of each row (the demo generator sorts
  its candidates with it), and `valid_resolution_sql` is the predicate Step D's payout freeze and
  fingerprint, Step E and the gates read `market_resolutions` through (`sql.VALID_RESOLUTIONS`).

"Known" needs the store, so it is the caller's: the demo passes `markets_dim`; `loaders.load_file`
checks it in its own query (`_reject_unknown_conditions`, which also requires the condition's market
id to match); Step C only asks Gamma about conditions of our trades and markets; readers of
`market_resolutions` pass nothing, because every writer checked it already.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from decimal import Decimal

# The union of the sets the loaders and the SQL used to have separately (the SQL set was a subset):
# every spelling of "no id" that exports, spreadsheets and the old resolution map are known to write.
# Compared after trimming ASCII whitespace and lower-casing ASCII letters.
PLACEHOLDER_IDS: frozenset[str] = frozenset(
    {"", "unknown", "none", "null", "nan", "n/a", "na", "undefined", "0x", "-", "?"}
)

# The reasons, in the order the clauses are checked; the first failing clause is the one reported.
PLACEHOLDER_CONDITION = "placeholder condition_id"
UNKNOWN_CONDITION = "unknown condition_id"
NULL_PAYOUTS = "unknown outcome (null payouts)"
NEGATIVE_PAYOUT = "negative payout"
PAYOUTS_NOT_ONE = "payouts do not sum to 1"

# Python's str.strip() with no argument strips Unicode whitespace, ClickHouse's trim strips the
# characters it is given: both sides use exactly these.
_TRIM = " \t\n\r\v\f"
_TRIM_SQL = r"' \t\n\r\v\f'"


def is_placeholder(value: str) -> bool:
    """True for an id that means "no id". Non-ASCII text never is (every placeholder is ASCII, and
    ClickHouse's `lower` only folds ASCII letters)."""
    text = value.strip(_TRIM)
    return text.isascii() and text.lower() in PLACEHOLDER_IDS


def payouts_problem(payouts: Sequence[Decimal | None] | None) -> str | None:
    """The payout clauses: two known payouts, each >= 0, summing to exactly 1."""
    if payouts is None or len(payouts) != 2 or any(p is None for p in payouts):
        return NULL_PAYOUTS
    values = [Decimal(p) for p in payouts if p is not None]
    if any(v < 0 for v in values):
        return NEGATIVE_PAYOUT
    if sum(values) != 1:
        return PAYOUTS_NOT_ONE
    return None


def resolution_problem(
    condition_id: str | None,
    payouts: Sequence[Decimal | None] | None,
    known: Container[str] | None = None,
) -> str | None:
    """Why a resolution is unusable (one of the reason constants), or None when it is valid."""
    if condition_id is None or is_placeholder(condition_id):
        return PLACEHOLDER_CONDITION
    if known is not None and condition_id not in known:
        return UNKNOWN_CONDITION
    return payouts_problem(payouts)


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resolution_problem_sql(known_conditions: str | None = None) -> str:
    """A ClickHouse expression over columns `condition_id` and `payouts` (Array of Decimal, Nullable
    elements allowed): the reason of `resolution_problem`, or '' when the row is valid.

    `known_conditions` is a subquery returning the known condition ids (e.g. `SELECT condition_id
    FROM $db.markets_dim`); None skips that clause, like `known=None` in Python.
    """
    placeholders = ", ".join(_sql_string(p) for p in sorted(PLACEHOLDER_IDS))
    clauses = [(f"lower(trim(BOTH {_TRIM_SQL} FROM condition_id)) IN ({placeholders})", PLACEHOLDER_CONDITION)]
    if known_conditions is not None:
        clauses.append((f"condition_id NOT IN ({known_conditions})", UNKNOWN_CONDITION))
    # multiIf stops at the first true condition, so assumeNotNull only sees rows without NULLs.
    clauses += [
        ("length(payouts) != 2 OR has(payouts, NULL)", NULL_PAYOUTS),
        ("assumeNotNull(payouts[1]) < 0 OR assumeNotNull(payouts[2]) < 0", NEGATIVE_PAYOUT),
        ("assumeNotNull(payouts[1]) + assumeNotNull(payouts[2]) != 1", PAYOUTS_NOT_ONE),
    ]
    arms = ",\n    ".join(f"{cond}, {_sql_string(reason)}" for cond, reason in clauses)
    return f"multiIf(\n    {arms},\n    '')"


def valid_resolution_sql(known_conditions: str | None = None) -> str:
    """The SQL predicate "this row is a valid resolution": exactly `resolution_problem(...) is None`."""
    return f"{resolution_problem_sql(known_conditions)} = ''"
