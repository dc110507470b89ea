"""SQL of the demo generator, Step D (with the one-statement yardstick its benchmark compares
against), Step E and the gates, and the valid-resolution predicate they share.

Other modules keep their statements beside the code that runs them: the DDL in schema.py, Steps A–C
in steps_abc.py, file loading in loaders.py, mutation waits, pending mutations, resets and
checkpoints in their own modules.

Tables are written `$db.name` (the store substitutes the validated database); values are always bound
as `{name:Type}` parameters. The few statements that need a table name inside a string literal
(`joinGet`) are built by functions that take the already-validated database name.
"""

from __future__ import annotations

from engine.enrichment.resolution_rule import resolution_problem_sql, valid_resolution_sql
from engine.stores.clickhouse import ident

# Valid resolutions, one row per condition (ReplacingMergeTree: FINAL gives the latest version).
# The predicate is generated from resolution_rule, the same rule the loaders apply in Python. No
# "known condition" clause here: every writer of market_resolutions checked that before writing.
VALID_RESOLUTIONS = f"""
SELECT condition_id, payouts, resolved_outcome, resolved_at
FROM $db.market_resolutions FINAL
WHERE {valid_resolution_sql()}
"""

# =================================================================================================
# Demo data. Every value is a deterministic function of (seed, row number) through cityHash64, so
# the same seed gives the same data on chDB and on a server, generated set-based in one statement
# per table. u(tag, x) below is a uniform float in [0, 1).
# =================================================================================================


def _u(tag: str, *args: str) -> str:
    inner = ", ".join(["{seed:UInt64}", f"'{tag}'", *args])
    return f"(cityHash64({inner}) / 18446744073709551616.0)"


def _h(tag: str, *args: str) -> str:
    return "cityHash64(" + ", ".join(["{seed:UInt64}", f"'{tag}'", *args]) + ")"


# Per-market parameters as expressions of the market number `m`.
_COND = "concat('0x', lower(hex(SHA256(concat('cond:', toString({seed:UInt64}), ':', toString(m))))))"
_MARKET_ID = "toString(500000 + m)"
_Q = f"(0.05 + 0.9 * {_u('q', 'm')})"  # the market's "true" YES probability
_RESOLVED = f"({_u('res', 'm')} < {{resolved_share:Float64}})"
_SPLIT = f"({_u('split', 'm')} < 0.01)"  # a few 50/50 resolutions (valid, nobody "wins")
_YES_WINS = f"({_u('out', 'm')} < {_Q})"
_OPEN_TS = f"({{base_ts:UInt32}} + {_h('open', 'm')} % (300 * 86400))"
_DURATION = f"(86400 + {_h('dur', 'm')} % (60 * 86400))"
_FEE_BPS = f"multiIf({_u('fee', 'm')} < 0.6, 0, {_u('fee', 'm')} < 0.85, 10, 20)"  # taker fee, basis points
_K = f"({{k_min:UInt32}} + {_h('k', 'm')} % {{k_span:UInt32}})"  # participants of market m
_CATEGORIES = "['Politics', 'Sports', 'Crypto', 'Economics', 'Science', 'Culture']"
_RAW_CATEGORIES = "['us-current-affairs', 'nba', 'bitcoin', 'fed-rates', 'ai', 'movies']"
_CAT_IDX = f"(1 + {_h('cat', 'm')} % 6)"

DEMO_MARKETS = f"""
INSERT INTO $db.markets_dim
    (market_id, condition_id, question, slug, event_id, category, canonical_category, outcomes,
     clob_token_ids, closed, end_date, source, updated_at)
SELECT
    {_MARKET_ID}, {_COND},
    concat('Demo market ', toString(m), ': will it happen?'),
    concat('demo-market-', toString(m)),
    toString(90000 + intDiv(m, 4)),
    {_RAW_CATEGORIES}[{_CAT_IDX}],
    {_CATEGORIES}[{_CAT_IDX}],
    ['Yes', 'No'],
    [toString({_h('tok0', 'm')}), toString({_h('tok1', 'm')})],
    toUInt8({_RESOLVED}),
    toDateTime({_OPEN_TS} + {_DURATION}, 'UTC'),
    'demo',
    toDateTime64('2025-01-01 00:00:00', 3, 'UTC')
FROM (SELECT number AS m FROM numbers({{markets:UInt32}}))
"""

DEMO_EVENTS = f"""
INSERT INTO $db.events_dim (event_id, title, slug, category, canonical_category, updated_at)
SELECT toString(90000 + e), concat('Demo event ', toString(e)), concat('demo-event-', toString(e)),
       {_RAW_CATEGORIES}[{_CAT_IDX.replace("'cat', m", "'cat', e * 4")}],
       {_CATEGORIES}[{_CAT_IDX.replace("'cat', m", "'cat', e * 4")}],
       toDateTime64('2025-01-01 00:00:00', 3, 'UTC')
FROM (SELECT number AS e FROM numbers(intDiv({{markets:UInt32}} + 3, 4)))
"""

# One fill = two trade rows (both sides). Kinds: a transfer (A buys outcome o from B at `price`),
# a complete-set mint (A buys YES at p, B buys NO at 1 - p) and a merge (A sells YES at p, B sells
# NO at 1 - p). Each is zero-sum for any payout vector summing to 1, so value conservation holds.
# The taker (leg 0) pays the market's fee rate on its notional.
DEMO_TRADES = f"""
INSERT INTO $db.trades_raw
    (trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, shares,
     usd_value, fee_usd, timestamp, tx_hash, canonical_category, realized_pnl_usd, is_resolved)
SELECT
    concat(tx_hash, '-', toString(leg))                                       AS trade_id,
    concat('0x', substring(lower(hex(SHA256(concat('wallet:', toString({{seed:UInt64}}), ':',
        toString(if(leg = 0, wa, wb)))))), 1, 40))                            AS wallet_address,
    {_MARKET_ID}                                                              AS market_id,
    {_COND}                                                                   AS condition_id,
    toUInt8(multiIf(kind = 0, o, leg))                                        AS outcome_index,
    multiIf(kind = 0, if(leg = 0, 'BUY', 'SELL'), kind = 1, 'BUY', 'SELL')    AS side,
    if(outcome_index = 0, p_yes, 1 - p_yes)                                   AS price,
    sh                                                                        AS shares,
    toDecimal128(price, 6) * shares                                           AS usd_value,
    if(leg = 0, round(usd_value * fee_bps / 10000, 6), toDecimal128(0, 12))  AS fee_usd,
    toDateTime(ts, 'UTC')                                                     AS timestamp,
    tx_hash,
    ''                                                                        AS canonical_category,
    CAST(NULL AS Nullable(Decimal(38, 12)))                                   AS realized_pnl_usd,
    toUInt8(0)                                                                AS is_resolved
FROM (
    SELECT
        f, m, k, j1,
        (j1 + 1 + {_h('j2', 'f')} % (k - 1)) % k                              AS j2,
        {_h('wal', 'm', 'j1')} % {{wallets:UInt32}}                            AS wa,
        {_h('wal', 'm', 'j2')} % {{wallets:UInt32}}                            AS wb,
        multiIf({_u('kind', 'f')} < 0.82, 0, {_u('kind', 'f')} < 0.96, 1, 2)   AS kind,
        {_h('o', 'f')} % 2                                                    AS o,
        -- prices in whole ticks of 0.001 and shares in cents, made Decimal before any arithmetic:
        -- 1 - p_yes must be exact or complete sets would not cost exactly 1
        toDecimal64(toUInt32(round(least(0.99, greatest(0.01, {_Q} + ({_u('px', 'f')} - 0.5) * 0.3)) * 1000)), 6) / 1000 AS p_yes,
        toDecimal64(toUInt64(round(100 + 50000 * pow({_u('sh', 'f')}, 3))), 6) / 100 AS sh,
        toUInt32({_FEE_BPS})                                                  AS fee_bps,
        {_OPEN_TS} + toUInt32({_u('t', 'f')} * {_DURATION})                   AS ts,
        concat('0x', lower(hex(SHA256(concat('tx:', toString({{seed:UInt64}}), ':', toString(f)))))) AS tx_hash
    FROM (
        SELECT f, m, {_K} AS k, {_h('j1', 'f')} % k AS j1
        FROM (
            SELECT number AS f,
                   least(toUInt32({{markets:UInt32}} - 1),
                         toUInt32(floor({{markets:UInt32}} * pow({_u('mk', 'number')}, 1.4)))) AS m
            FROM numbers({{fills:UInt64}})
        )
    )
)
ARRAY JOIN [0, 1] AS leg
"""

# Resolution candidates, valid and not: most markets resolve; a few candidate rows are broken the
# way the old resolution map was (null outcome, payouts not summing to 1, placeholder ids). The
# valid ones go to market_resolutions, the rest to resolution_rejects with the reason.
DEMO_RESOLUTION_CANDIDATES = f"""
CREATE TABLE $db.demo_resolution_candidates ENGINE = Memory AS
SELECT condition_id, market_id, payouts, resolved_at FROM (
    SELECT {_COND} AS condition_id, {_MARKET_ID} AS market_id,
           CAST(multiIf({_SPLIT}, [0.5, 0.5], {_YES_WINS}, [1, 0], [0, 1]) AS Array(Nullable(Decimal(18, 6)))) AS payouts,
           toDateTime({_OPEN_TS} + {_DURATION} + 3600, 'UTC') AS resolved_at
    FROM (SELECT number AS m FROM numbers({{markets:UInt32}}))
    WHERE {_RESOLVED}
    UNION ALL
    -- broken candidates for some unresolved markets: they must be rejected, never used
    SELECT {_COND}, {_MARKET_ID},
           CAST(multiIf({_h('bad', 'm')} % 3 = 0, [NULL, NULL], {_h('bad', 'm')} % 3 = 1, [0.6, 0.6], [1.2, -0.2])
                AS Array(Nullable(Decimal(18, 6)))),
           toDateTime({_OPEN_TS} + {_DURATION} + 3600, 'UTC')
    FROM (SELECT number AS m FROM numbers({{markets:UInt32}}))
    WHERE NOT {_RESOLVED} AND {_u('badpick', 'm')} < 0.5
    UNION ALL
    SELECT 'unknown', 'unknown', CAST([1, 0] AS Array(Nullable(Decimal(18, 6)))), toDateTime({{base_ts:UInt32}}, 'UTC')
)
"""

# Market m = toUInt32(market_id) - 500000 (demo ids). Held back: a few dims (Step A's work) and a few
# valid resolutions (Step C's work); both come back from the demo's Gamma snapshot.
_M_OF_ID = "(toUInt32OrZero(market_id) - 500000)"
_WITHHELD = f"({_h('withhold', _M_OF_ID)} % 25 = 0)"
_LATE = f"({_h('late', _M_OF_ID)} % 12 = 0)"

# The demo knows a condition when markets_dim has it (every demo trade's condition is there).
_CANDIDATE_PROBLEM = resolution_problem_sql(known_conditions="SELECT condition_id FROM $db.markets_dim")

DEMO_RESOLUTIONS_VALID = f"""
INSERT INTO $db.market_resolutions (condition_id, market_id, payouts, resolved_at, source, updated_at)
SELECT condition_id, market_id, arrayMap(x -> assumeNotNull(x), payouts), resolved_at, 'demo',
       toDateTime64('2025-01-01 00:00:00', 3, 'UTC')
FROM $db.demo_resolution_candidates
WHERE {_CANDIDATE_PROBLEM} = '' AND NOT ({{hold_back:UInt8}} = 1 AND {_LATE})
"""

DEMO_RESOLUTIONS_REJECTED = f"""
INSERT INTO $db.resolution_rejects (condition_id, market_id, reason, raw, source)
SELECT condition_id, market_id, {_CANDIDATE_PROBLEM} AS reason,
       toJSONString(map('condition_id', condition_id, 'market_id', market_id,
                        'payouts', toString(payouts))), 'demo'
FROM $db.demo_resolution_candidates
WHERE reason != ''
"""

# The Gamma view of every demo market, for an offline snapshot file: Step A fetches the markets held
# back from markets_dim from it, Step C the resolutions held back from market_resolutions.
DEMO_SNAPSHOT_ROWS = f"""
SELECT d.market_id, d.condition_id, d.question, d.slug, d.category, d.clob_token_ids, d.closed,
       formatDateTime(assumeNotNull(d.end_date), '%Y-%m-%dT%H:%i:%SZ') AS end_date, d.event_id,
       arrayMap(x -> toString(x), ifNull(c.payouts, [])) AS payouts,
       formatDateTime(ifNull(c.resolved_at, toDateTime(0, 'UTC')), '%Y-%m-%dT%H:%i:%SZ') AS closed_time
FROM $db.markets_dim AS d
LEFT JOIN (
    SELECT market_id, arrayMap(x -> assumeNotNull(x), payouts) AS payouts, resolved_at
    FROM $db.demo_resolution_candidates WHERE {_CANDIDATE_PROBLEM} = ''
) AS c ON c.market_id = d.market_id
ORDER BY d.market_id
SETTINGS join_use_nulls = 1
"""

DEMO_HOLD_BACK_MARKETS = f"""
ALTER TABLE $db.markets_dim DELETE WHERE {_WITHHELD}
"""

# =================================================================================================
# Step D
# =================================================================================================

# Inputs of Step D: every trade column the P&L depends on, and the valid resolutions. Order-free
# sums of row hashes (with the row count) change when any row is added, removed or edited.
# Version 2 hashes the decimals and the side in their stored binary form (about 40% faster over
# 2.45M trades than formatting them as text first). Version 1 is kept so that a checkpoint written
# by an older build is still checked against the same kind of fingerprint on --resume.
_TRADE_HASH = "trade_hash"  # schema.TRADE_HASH, stored with each row
FINGERPRINT_TRADES = f"""
SELECT count() AS n, sumWithOverflow({_TRADE_HASH}) AS h
FROM $db.trades_raw
"""
FINGERPRINT_TRADES_V1 = """
SELECT count() AS n,
       sumWithOverflow(cityHash64(trade_id, wallet_address, condition_id, outcome_index, toString(side),
                                  toString(price), toString(shares), toString(fee_usd))) AS h
FROM $db.trades_raw
"""

FINGERPRINT_RESOLUTIONS = f"""
SELECT count() AS n, sumWithOverflow(cityHash64(condition_id, toString(payouts))) AS h
FROM ({VALID_RESOLUTIONS})
"""

WORKLIST_CLEAR = "TRUNCATE TABLE $db.step_d_worklist"
# A pair's P&L sums (schema.STEP_D_WORKLIST): the signed shares per outcome, and what the trades
# cost. The outcome split matches pnl_expressions: outcome 0 is paid p_yes, any other p_no.
_SIGNED_SHARES = "if(side = 'BUY', 1, -1) * toDecimal128(shares, 6)"
PAIR_SUMS = (f"sumIf({_SIGNED_SHARES}, outcome_index = 0) AS a_yes, sumIf({_SIGNED_SHARES}, outcome_index != 0) AS a_no, "
             f"sum({_SIGNED_SHARES} * price + fee_usd) AS cost")
# The build also sums each pair's trade hashes: a wrapping sum is associative, so the work list
# then yields exactly FINGERPRINT_TRADES (count, hash) without a second scan of trades_raw.
WORKLIST_BUILD = f"""
INSERT INTO $db.step_d_worklist (wallet_address, condition_id, n_trades, h, a_yes, a_no, cost)
SELECT wallet_address, condition_id, toUInt32(count()), sumWithOverflow({_TRADE_HASH}), {PAIR_SUMS}
FROM $db.trades_raw
GROUP BY wallet_address, condition_id
ORDER BY wallet_address, condition_id
"""
WORKLIST_FINGERPRINT = "SELECT sum(n_trades) AS n, sumWithOverflow(h) AS h FROM $db.step_d_worklist"
META_CLEAR = "TRUNCATE TABLE $db.step_d_meta"
WORKLIST_LAYOUT = 2  # schema.STEP_D_META: the work list carries the P&L sums
META_WRITE = f"INSERT INTO $db.step_d_meta (fingerprint, pairs_total, layout) VALUES ({{fp:String}}, {{total:UInt64}}, {WORKLIST_LAYOUT})"
META_READ = "SELECT fingerprint, pairs_total, layout FROM $db.step_d_meta ORDER BY created_at DESC LIMIT 1"
WORKLIST_COUNT = "SELECT count() FROM $db.step_d_worklist"

# The pair at a position of the stable order (hand-written runbook checkpoints give only a count).
WORKLIST_PAIR_AT = """
SELECT wallet_address, condition_id FROM $db.step_d_worklist
ORDER BY wallet_address, condition_id LIMIT 1 OFFSET {offset:UInt64}
"""
# How many pairs lie at or before a cursor (checks a cursor and recomputes pairs_done).
WORKLIST_RANK = """
SELECT count() FROM $db.step_d_worklist
WHERE (wallet_address, condition_id) <= ({cw:String}, {cc:String})
"""


def next_batch_sql(has_cursor: bool) -> str:
    """The next `n` pairs after the cursor: how many, their trade rows, and the last pair."""
    # The plain `wallet_address >=` bound lets the primary index skip what is done; the tuple
    # comparison alone is not used for pruning.
    after = (
        "WHERE wallet_address >= {cw:String} AND (wallet_address, condition_id) > ({cw:String}, {cc:String})"
        if has_cursor else ""
    )
    return f"""
SELECT count() AS pairs, sum(n_trades) AS rows, min(wallet_address) AS first_wallet,
       tupleElement(max((wallet_address, condition_id)), 1) AS last_wallet,
       tupleElement(max((wallet_address, condition_id)), 2) AS last_condition
FROM (
    SELECT wallet_address, condition_id, n_trades FROM $db.step_d_worklist {after}
    ORDER BY wallet_address, condition_id LIMIT {{n:UInt64}}
)
"""


# A chunk of the work list after a key (Step D reads ahead so a batch costs no lookup query).
def worklist_chunk_sql(has_cursor: bool) -> str:
    after = (
        "WHERE wallet_address >= {cw:String} AND (wallet_address, condition_id) > ({cw:String}, {cc:String})"
        if has_cursor else ""
    )
    return f"""
SELECT wallet_address, condition_id, n_trades FROM $db.step_d_worklist {after}
ORDER BY wallet_address, condition_id LIMIT {{n:UInt64}}
"""


# Payouts frozen for the run in a Join-engine table: the per-batch UPDATE looks them up with
# joinGet, so a batch is one statement over one key range of trades_raw.
PAYOUTS_DROP = "DROP TABLE IF EXISTS $db.step_d_payouts"
PAYOUTS_CREATE = """
CREATE TABLE $db.step_d_payouts (
    condition_id String, p_yes Decimal(18, 6), p_no Decimal(18, 6), ok UInt8
) ENGINE = Join(ANY, LEFT, condition_id)
"""
PAYOUTS_FILL = f"""
INSERT INTO $db.step_d_payouts
SELECT condition_id, payouts[1], payouts[2], 1 FROM ({VALID_RESOLUTIONS})
"""


def pnl_expressions(database: str) -> tuple[str, str]:
    """(realized_pnl_usd, is_resolved) as the README's "P&L and storage" defines them:
    s × shares × (p[outcome] − price) − fee.

    Absolute values from the row itself and its condition's payouts: re-running a batch writes the
    same bits. Unresolved (or no longer valid) conditions get NULL / 0.
    """
    ident(database)
    table = f"'{database}.step_d_payouts'"
    ok = f"joinGet({table}, 'ok', condition_id)"
    payout = f"if(outcome_index = 0, joinGet({table}, 'p_yes', condition_id), joinGet({table}, 'p_no', condition_id))"
    pnl = (
        f"if({ok} = 1, CAST(if(side = 'BUY', 1, -1) * toDecimal128(shares, 6) * ({payout} - price) - fee_usd "
        "AS Nullable(Decimal(38, 12))), CAST(NULL AS Nullable(Decimal(38, 12))))"
    )
    return pnl, f"toUInt8({ok})"


def pnl_assignments(database: str) -> str:
    pnl, resolved = pnl_expressions(database)
    return f"realized_pnl_usd = {pnl}, is_resolved = {resolved}"


def batch_range_where(has_cursor: bool) -> str:
    """Rows of the pairs in (cursor, last]: the explicit wallet bounds let the primary index prune."""
    lower = (
        "wallet_address >= {cw:String} AND (wallet_address, condition_id) > ({cw:String}, {cc:String}) AND "
        if has_cursor else ""
    )
    return lower + "wallet_address <= {lw:String} AND (wallet_address, condition_id) <= ({lw:String}, {lc:String})"


# A batch: the P&L of the work list's pairs in one key range, from their sums (no trades_raw read).
PAIR_PNL_CLEAR = "TRUNCATE TABLE $db.step_d_pair_pnl"


def pair_pnl_batch_sql(database: str, has_cursor: bool) -> str:
    ident(database)
    table = f"'{database}.step_d_payouts'"
    ok = f"joinGet({table}, 'ok', condition_id)"
    pnl = (f"if({ok} = 1, CAST(joinGet({table}, 'p_yes', condition_id) * a_yes + joinGet({table}, 'p_no', condition_id) * a_no "
           "- cost AS Nullable(Decimal(38, 12))), CAST(NULL AS Nullable(Decimal(38, 12))))")
    return f"""
INSERT INTO $db.step_d_pair_pnl (wallet_address, condition_id, realized_pnl_usd, is_resolved)
SELECT wallet_address, condition_id, {pnl}, toUInt8({ok})
FROM $db.step_d_worklist
WHERE {batch_range_where(has_cursor)}
"""


def pnl_agreement_sql(database: str, has_cursor: bool, incremental: bool) -> str:
    """Over the work list's pairs in one key range, once the trades' P&L is written: (the batches'
    P&L, the trades' P&L, trades of resolved pairs, trades marked resolved). The first two must be
    equal, and so must the last two."""
    ident(database)
    where = batch_range_where(has_cursor)
    only = (f" AND (wallet_address, condition_id) IN (SELECT wallet_address, condition_id FROM $db.step_d_worklist WHERE {where})"
            if incremental else "")
    return f"""
SELECT p.pnl, t.pnl, w.resolved, t.resolved FROM
    (SELECT sum(ifNull(realized_pnl_usd, 0)) AS pnl FROM $db.step_d_pair_pnl FINAL WHERE {where}) AS p,
    (SELECT sumIf(n_trades, joinGet('{database}.step_d_payouts', 'ok', condition_id) = 1) AS resolved
     FROM $db.step_d_worklist WHERE {where}) AS w,
    (SELECT sum(ifNull(realized_pnl_usd, 0)) AS pnl, countIf(is_resolved = 1) AS resolved
     FROM $db.trades_raw WHERE {where}{only}) AS t
"""


def trades_update_sql(database: str, strategy: str, has_cursor: bool) -> str:
    where = batch_range_where(has_cursor)
    if strategy == "lightweight":
        return f"UPDATE $db.trades_raw SET {pnl_assignments(database)} WHERE {where}"
    return f"ALTER TABLE $db.trades_raw UPDATE {pnl_assignments(database)} WHERE {where}"


# After the last batch: write the patch parts into the columns (reads then skip patch application).
APPLY_PATCHES = "ALTER TABLE $db.trades_raw APPLY PATCHES"


# The same P&L as one set-based statement over every trade: the yardstick Step D is measured against.
YARDSTICK_DROP = "DROP TABLE IF EXISTS $db.step_d_yardstick"


def one_statement_pnl_sql(database: str) -> str:
    pnl, resolved = pnl_expressions(database)
    return f"""
CREATE TABLE $db.step_d_yardstick ENGINE = MergeTree ORDER BY (wallet_address, condition_id, trade_id) AS
SELECT trade_id, wallet_address, condition_id, {pnl} AS realized_pnl_usd, {resolved} AS is_resolved
FROM $db.trades_raw
"""


# Incomplete Step D: trades of a validly resolved condition without P&L, or marked resolved
# without P&L.
STEP_D_MISSING = f"""
SELECT count() FROM $db.trades_raw
WHERE (realized_pnl_usd IS NULL OR is_resolved = 0)
  AND condition_id IN (SELECT condition_id FROM ({VALID_RESOLUTIONS}))
"""

# Order-free checksum of Step D's output (tests compare runs with it).
PNL_CHECKSUM = """
SELECT count(), sumWithOverflow(cityHash64(trade_id, ifNull(toString(realized_pnl_usd), 'NULL'), is_resolved))
FROM $db.trades_raw
"""

# =================================================================================================
# Step E: built aside, swapped in
# =================================================================================================
OUTCOMES_BUILD_TABLE = "wallet_resolution_outcomes_build"
OUTCOMES_DROP_BUILD = "DROP TABLE IF EXISTS $db.wallet_resolution_outcomes_build"
OUTCOMES_CREATE_BUILD = "CREATE TABLE $db.wallet_resolution_outcomes_build AS $db.wallet_resolution_outcomes"

# Positions per (wallet, condition) of validly resolved conditions; flat positions (|exposure| <
# 0.01) are not outcomes. exposure = net_yes − net_no, net = bought − sold shares of the outcome.
POSITIONS = f"""
SELECT
    t.wallet_address AS wallet_address,
    t.condition_id AS condition_id,
    any(t.market_id) AS market_id,
    any(r.resolved_outcome) AS resolved_outcome,
    any(r.payouts) AS payouts,
    any(r.resolved_at) AS resolved_at,
    anyIf(t.canonical_category, t.canonical_category != '') AS trade_category,
    count() AS num_trades,
    sum(if(t.side = 'BUY', 1, -1) * if(t.outcome_index = 0, 1, -1) * toDecimal128(t.shares, 6)) AS exposure,
    sum(t.realized_pnl_usd) AS pnl
FROM $db.trades_raw AS t
INNER JOIN ({VALID_RESOLUTIONS}) AS r ON r.condition_id = t.condition_id
GROUP BY t.wallet_address, t.condition_id
HAVING abs(exposure) >= 0.01
"""

OUTCOMES_FILL = f"""
INSERT INTO $db.wallet_resolution_outcomes_build
SELECT
    p.wallet_address, p.condition_id, p.market_id, p.resolved_outcome,
    if(p.exposure > 0, 'YES', 'NO') AS final_side,
    toUInt8(if(p.exposure > 0, p.payouts[1] > p.payouts[2], p.payouts[2] > p.payouts[1])) AS won,
    p.resolved_at,
    if(p.trade_category != '', p.trade_category, ifNull(d.canonical_category, '')) AS canonical_category,
    toUInt32(p.num_trades),
    toDecimal128(abs(p.exposure), 6) AS final_shares,
    toDecimal128(ifNull(p.pnl, 0), 12) AS realized_pnl_usd
FROM ({POSITIONS}) AS p
LEFT JOIN (SELECT market_id, canonical_category FROM $db.markets_dim FINAL) AS d ON d.market_id = p.market_id
SETTINGS join_use_nulls = 1
"""
OUTCOMES_COUNT_BUILD = "SELECT count(), uniqExact(wallet_address) FROM $db.wallet_resolution_outcomes_build"
OUTCOMES_EXCHANGE = "EXCHANGE TABLES $db.wallet_resolution_outcomes AND $db.wallet_resolution_outcomes_build"

# =================================================================================================
# Gates
# =================================================================================================
GATE_MARKETS_MISSING_DIM = """
SELECT uniqExact(market_id) FROM $db.trades_raw
WHERE market_id != '' AND market_id NOT IN (SELECT market_id FROM $db.markets_dim)
"""
# NULL P&L where there must be one: rows marked resolved, and rows of validly resolved conditions
# Step D has not reached (is_resolved still 0). The old gate only counted the first kind.
GATE_PNL_NULLS = f"""
SELECT countIf(realized_pnl_usd IS NULL AND (is_resolved = 1 OR condition_id IN (SELECT condition_id FROM ({VALID_RESOLUTIONS}))))
FROM $db.trades_raw
"""
GATE_WALLETS_ACTUAL = "SELECT uniqExact(wallet_address) FROM $db.wallet_resolution_outcomes"
# Expected from the data, independently of Step E's table: wallets with at least one non-flat
# position in a validly resolved condition.
GATE_WALLETS_EXPECTED = f"SELECT uniqExact(wallet_address) FROM ({POSITIONS})"
# Value conservation per resolved market: |Σ realized_pnl_usd + Σ fee_usd| > 0.01.
GATE_BAD_MARKETS = """
SELECT count(), groupArray(10)(market_id) FROM (
    SELECT market_id, sum(ifNull(realized_pnl_usd, 0)) + sum(fee_usd) AS imbalance
    FROM $db.trades_raw WHERE is_resolved = 1
    GROUP BY market_id
    HAVING abs(imbalance) > 0.01
)
"""
GATE_RESOLVED_MARKETS = "SELECT uniqExact(market_id) FROM $db.trades_raw WHERE is_resolved = 1"

# =================================================================================================
# Incremental Step D: per-pair bookkeeping (stepd_pair_state) and the affected work list
# =================================================================================================
AFFECTED_REASONS = ("new_trades", "newly_resolved", "corrected", "reset")


def pair_state_write_sql(database: str, has_cursor: bool) -> str:
    """Record what the pairs in (cursor, last] of the work list were computed from: their frozen
    trade count and hash, and the run's frozen payouts. Absolute values: re-running it after a crash
    writes the same row again (ReplacingMergeTree keeps one)."""
    ident(database)
    table = f"'{database}.step_d_payouts'"
    return f"""
INSERT INTO $db.stepd_pair_state (wallet_address, condition_id, n_trades, h, resolved, p_yes, p_no, version)
SELECT wallet_address, condition_id, n_trades, h,
       joinGet({table}, 'ok', condition_id), joinGet({table}, 'p_yes', condition_id),
       joinGet({table}, 'p_no', condition_id), {{version:UInt64}}
FROM $db.step_d_worklist
WHERE {batch_range_where(has_cursor)}
"""


PAIR_STATE_COUNT = "SELECT count() FROM $db.stepd_pair_state"
PAIRS_NOW_CLEAR = "TRUNCATE TABLE $db.step_d_pairs_now"
# A scratch table: recreated by every incremental run, so its shape is always this build's.
PAIRS_NOW_DROP = "DROP TABLE IF EXISTS $db.step_d_pairs_now"


def pairs_now_build_sql(database: str) -> str:
    """Every pair of trades_raw, classified against its bookkeeping (one scan of trades_raw, one
    join with stepd_pair_state), written as the affected pairs one row each and everything else
    folded into one row per reason: the rest of the run needs the affected pairs, the totals (the
    input fingerprint, the pairs per reason) and the pairs that vanished, never the unaffected pairs
    one by one. (Writing all of them, sorted, took half the classification's time at 10x seed.)

    In order: trades added, removed or edited since the pair was computed (or never computed by a
    build that keeps bookkeeping) -> new_trades; computed unresolved, resolved now -> newly_resolved;
    computed with other payouts, or its resolution is no longer valid -> corrected; bookkeeping
    matches but the P&L columns do not say so (a reset set them NULL / 0) -> reset; in the
    bookkeeping, without trades any more -> vanished (Step E drops its outcome rows); else ''."""
    ident(database)
    table = f"'{database}.step_d_payouts'"
    ok = f"joinGet({table}, 'ok', c.condition_id)"
    return f"""
INSERT INTO $db.step_d_pairs_now (wallet_address, condition_id, n_trades, h, a_yes, a_no, cost, reason, pairs)
SELECT if(reason = '', '', w) AS wallet_address, if(reason = '', '', cond) AS condition_id,
       sum(n) AS n_trades, sumWithOverflow(hash) AS h, sum(ay), sum(an), sum(ct), reason, count() AS pairs
FROM (
    SELECT ifNull(c.wallet_address, s.wallet_address) AS w, ifNull(c.condition_id, s.condition_id) AS cond,
           ifNull(c.n, 0) AS n, ifNull(c.h, 0) AS hash,
           ifNull(c.a_yes, 0) AS ay, ifNull(c.a_no, 0) AS an, ifNull(c.cost, 0) AS ct,
           multiIf(c.n IS NULL, 'vanished',
                   s.h IS NULL OR s.n_trades != c.n OR s.h != c.h, 'new_trades',
                   s.resolved = 0 AND {ok} = 1, 'newly_resolved',
                   s.resolved = 1 AND ({ok} = 0 OR s.p_yes != joinGet({table}, 'p_yes', c.condition_id)
                                       OR s.p_no != joinGet({table}, 'p_no', c.condition_id)), 'corrected',
                   ({ok} = 1 AND c.unpriced > 0) OR ({ok} = 0 AND c.priced > 0), 'reset',
                   '') AS reason
    FROM (
        SELECT wallet_address, condition_id, toUInt32(count()) AS n, sumWithOverflow({_TRADE_HASH}) AS h, {PAIR_SUMS},
               countIf(realized_pnl_usd IS NULL OR is_resolved = 0) AS unpriced,
               countIf(realized_pnl_usd IS NOT NULL OR is_resolved != 0) AS priced
        FROM $db.trades_raw
        GROUP BY wallet_address, condition_id
    ) AS c
    FULL OUTER JOIN (
        SELECT wallet_address, condition_id, n_trades, h, resolved, p_yes, p_no FROM $db.stepd_pair_state FINAL
    ) AS s ON s.wallet_address = c.wallet_address AND s.condition_id = c.condition_id
)
GROUP BY wallet_address, condition_id, reason
SETTINGS join_use_nulls = 1
"""


VANISHED = "vanished"
WORKLIST_FROM_AFFECTED = """
INSERT INTO $db.step_d_worklist (wallet_address, condition_id, n_trades, h, a_yes, a_no, cost)
SELECT wallet_address, condition_id, toUInt32(n_trades), h, a_yes, a_no, cost FROM $db.step_d_pairs_now
WHERE reason NOT IN ('', 'vanished')
ORDER BY wallet_address, condition_id
"""
# The same (count, hash) as FINGERPRINT_TRADES, from the classification's scan.
PAIRS_NOW_FINGERPRINT = "SELECT sum(n_trades) AS n, sumWithOverflow(h) AS h FROM $db.step_d_pairs_now"
PAIRS_NOW_REASONS = "SELECT reason, sum(pairs) FROM $db.step_d_pairs_now GROUP BY reason"


def incremental_trades_update_sql(database: str, strategy: str, has_cursor: bool) -> str:
    """Like `trades_update_sql`, but only the work list's pairs inside the key range: between two
    affected pairs lie unaffected ones, whose P&L stays as it is."""
    where = batch_range_where(has_cursor)
    only = f"(wallet_address, condition_id) IN (SELECT wallet_address, condition_id FROM $db.step_d_worklist WHERE {where})"
    verb = "UPDATE $db.trades_raw SET" if strategy == "lightweight" else "ALTER TABLE $db.trades_raw UPDATE"
    return f"{verb} {pnl_assignments(database)} WHERE {where} AND {only}"

# =================================================================================================
# Incremental Step E: rebuild only the wallets Step D touched (the rest is copied), then swap
# =================================================================================================
ALL_WALLETS = "*"
DIRTY_MARK_ALL = "INSERT INTO $db.step_e_dirty_wallets (wallet_address) VALUES ('*')"
# A position's outcome row depends on its pair's trades, and on its condition's resolution and
# categories (hashed per condition, DIRTY_MARK_RESOLUTIONS): so the marks are pairs, not wallets.
DIRTY_MARK_AFFECTED = """
INSERT INTO $db.step_e_dirty_wallets (wallet_address, condition_id)
SELECT wallet_address, condition_id FROM $db.step_d_worklist
"""
# Pairs that had P&L computed but whose trades are gone: their outcome rows must go too.
DIRTY_MARK_VANISHED = """
INSERT INTO $db.step_e_dirty_wallets (wallet_address, condition_id)
SELECT wallet_address, condition_id FROM $db.step_d_pairs_now WHERE reason = 'vanished'
"""
# (every position, wallets touched, pairs marked); a wallet marked without a condition counts whole.
DIRTY_SUMMARY = """
SELECT countIf(wallet_address = '*'), uniqExactIf(wallet_address, wallet_address != '*'),
       uniqExactIf((wallet_address, condition_id), wallet_address != '*' AND condition_id != '')
FROM $db.step_e_dirty_wallets
"""
DIRTY_CLEAR = "TRUNCATE TABLE $db.step_e_dirty_wallets"

# What a resolved condition's outcome rows read besides its trades' P&L and exposure: its valid
# resolution, and the categories of its markets, on its trades (Step B) and in markets_dim. One hash
# per condition: a condition resolved, corrected or withdrawn, or whose categories changed, since the
# last build makes its positions dirty. Unresolved conditions have no outcome rows, so a new market
# (every day brings some) changes nothing until it resolves.
_CONDITION_CATEGORIES = """
SELECT t.condition_id AS condition_id,
       sumWithOverflow(cityHash64(t.market_id, t.trade_category, ifNull(d.canonical_category, ''))) AS h
FROM (SELECT DISTINCT condition_id, market_id, canonical_category AS trade_category FROM $db.trades_raw) AS t
LEFT JOIN (SELECT market_id, canonical_category FROM $db.markets_dim FINAL) AS d ON d.market_id = t.market_id
GROUP BY t.condition_id
"""
_RESOLUTION_HASHES = f"""
SELECT r.condition_id AS condition_id,
       cityHash64(toString(r.payouts), toString(r.resolved_outcome), r.resolved_at, ifNull(c.h, 0)) AS h
FROM ({VALID_RESOLUTIONS}) AS r
LEFT JOIN ({_CONDITION_CATEGORIES}) AS c ON c.condition_id = r.condition_id
"""
# This build's hashes, taken once when it is planned (they scan trades_raw): compared with the last
# build's to mark dirty positions, then recorded as they were. Taken before the build, they can only
# be older than what it read, so a change meanwhile makes the next build redo work, never miss it.
STEP_E_NEXT_CLEAR = "TRUNCATE TABLE $db.step_e_resolutions_next"
STEP_E_NEXT_WRITE = f"INSERT INTO $db.step_e_resolutions_next (condition_id, h) {_RESOLUTION_HASHES}"
# Written before the build; cleared with the rest after it.
DIRTY_MARK_RESOLUTIONS = """
INSERT INTO $db.step_e_dirty_wallets (wallet_address, condition_id)
SELECT DISTINCT wallet_address, condition_id FROM $db.trades_raw
WHERE condition_id IN (
    SELECT condition_id FROM (
        SELECT condition_id, h FROM $db.step_e_resolutions_next
        UNION ALL SELECT condition_id, h FROM $db.step_e_resolutions
    ) GROUP BY condition_id HAVING count() != 2 OR min(h) != max(h)
)
"""
STEP_E_RESOLUTIONS_CLEAR = "TRUNCATE TABLE $db.step_e_resolutions"
STEP_E_RESOLUTIONS_WRITE = "INSERT INTO $db.step_e_resolutions (condition_id, h) SELECT condition_id, h FROM $db.step_e_resolutions_next"
STEP_E_META_READ = "SELECT fingerprint FROM $db.step_e_meta ORDER BY created_at DESC LIMIT 1"
STEP_E_META_CLEAR = "TRUNCATE TABLE $db.step_e_meta"
STEP_E_META_WRITE = "INSERT INTO $db.step_e_meta (fingerprint) VALUES ({fp:String})"
OUTCOMES_COUNT = "SELECT count() FROM $db.wallet_resolution_outcomes"

_DIRTY = ("(wallet_address IN (SELECT wallet_address FROM $db.step_e_dirty_wallets WHERE condition_id = '') OR "
          "(wallet_address, condition_id) IN (SELECT wallet_address, condition_id FROM $db.step_e_dirty_wallets "
          "WHERE condition_id != ''))")
OUTCOMES_COPY_CLEAN = f"""
INSERT INTO $db.wallet_resolution_outcomes_build
SELECT * FROM $db.wallet_resolution_outcomes WHERE NOT {_DIRTY}
"""


def outcomes_fill_dirty_sql() -> str:
    """OUTCOMES_FILL over the dirty positions' trades only (the same statement, its trades filtered)."""
    source = "FROM $db.trades_raw AS t"
    if OUTCOMES_FILL.count(source) != 1:  # the rewrite below relies on the positions' one trades scan
        raise RuntimeError("OUTCOMES_FILL no longer reads trades_raw exactly once; update outcomes_fill_dirty_sql")
    return OUTCOMES_FILL.replace(source, f"FROM (SELECT * FROM $db.trades_raw WHERE {_DIRTY}) AS t")
