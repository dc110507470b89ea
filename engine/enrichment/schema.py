"""ClickHouse DDL for enrichment, in one place. `ensure_schema(ch)` is idempotent.

Choices that the rest of the code relies on:

* Money is exact. `price`, payouts and `shares` are `Decimal(18, 6)`: on-chain USDC amounts and
  outcome-token amounts have 6 decimals, and Polymarket prices have at most 6. Every product of two
  of them (`usd_value`, a trade's P&L) has scale 12, so `usd_value`, `fee_usd` and
  `realized_pnl_usd` are `Decimal(38, 12)`: the products and their sums are held without rounding
  (26 integer digits), reruns give bit-identical values and value conservation is an exact 0.
  SQL that multiplies two Decimal(18, 6) must widen one side to Decimal128 first (`toDecimal128`):
  ClickHouse keeps the operand width, and Decimal64 at scale 12 would overflow past 10^6.
* `realized_pnl_usd` is Nullable: NULL means "not computed / unresolved", so gate `pnl_nulls` can
  actually fail (a non-Nullable column defaults to 0 and hides missing work).
* `trades_raw` is sorted by (wallet_address, condition_id, trade_id): Step D walks pairs in exactly
  that order and updates one contiguous key range per batch, which the primary index prunes.
* Tables that Step D or resets update carry `enable_block_number_column = 1,
  enable_block_offset_column = 1` so lightweight `UPDATE` (patch parts) works where supported.
* Dimension tables (`markets_dim`, `events_dim`, `market_resolutions`) are ReplacingMergeTree on
  their natural key with `updated_at` as version: re-fetching a market is an upsert. Readers that need
  one row per key use `FINAL` (or argMax). `trades_raw` is a plain MergeTree: loaders keep
  `trade_id` unique by inserting only ids not yet present.
"""

from __future__ import annotations

import re

from engine.stores.clickhouse import ClickHouse

# Column names in table order (tests seed rows with them; loaders stage their own column lists).
TRADES_COLUMNS = [
    "trade_id", "wallet_address", "market_id", "condition_id", "outcome_index", "side", "price",
    "shares", "usd_value", "fee_usd", "timestamp", "tx_hash", "canonical_category",
    "realized_pnl_usd", "is_resolved",
]
MARKETS_COLUMNS = [
    "market_id", "condition_id", "question", "slug", "event_id", "category", "canonical_category",
    "outcomes", "clob_token_ids", "closed", "end_date", "source", "updated_at",
]
RESOLUTION_COLUMNS = ["condition_id", "market_id", "payouts", "resolved_at", "source", "updated_at"]
OUTCOME_COLUMNS = [
    "wallet_address", "condition_id", "market_id", "resolved_outcome", "final_side", "won",
    "resolved_at", "canonical_category", "num_trades", "final_shares", "realized_pnl_usd",
]

# Tables mutated by our jobs: mutation waits and the pending_mutations gate look only at these.
MUTATED_TABLES = ("trades_raw", "wallet_resolution_outcomes", "markets_dim", "market_resolutions")

_PATCHABLE = "enable_block_number_column = 1, enable_block_offset_column = 1"

#: One trade's share of Step D's fingerprints: every column its P&L depends on, the decimals and the
#: side in their stored binary form. Stored with each row (`trade_hash`, computed on insert): the
#: incremental run's classification reads 8 bytes a trade instead of hashing its long ids again
#: (at 10x seed that scan was most of a daily run). Nothing rewrites these columns in place.
TRADE_HASH = "cityHash64(trade_id, wallet_address, condition_id, outcome_index, CAST(side, 'Int8'), price, shares, fee_usd)"

TRADES_RAW = f"""
CREATE TABLE IF NOT EXISTS $db.trades_raw (
    trade_id           String,
    wallet_address     String,
    market_id          String,
    condition_id       String,
    outcome_index      UInt8,                      -- 0 = YES, 1 = NO
    side               Enum8('BUY' = 1, 'SELL' = 2),
    price              Decimal(18, 6),             -- in [0, 1]
    shares             Decimal(18, 6),             -- > 0
    usd_value          Decimal(38, 12),            -- price * shares, exact
    fee_usd            Decimal(38, 12) DEFAULT 0,  -- >= 0, paid by this wallet
    timestamp          DateTime('UTC'),
    tx_hash            String,
    canonical_category LowCardinality(String) DEFAULT '',
    realized_pnl_usd   Nullable(Decimal(38, 12)),  -- NULL until Step D (or unresolved)
    is_resolved        UInt8 DEFAULT 0,
    trade_hash         UInt64 MATERIALIZED {TRADE_HASH}  -- never in SELECT *
) ENGINE = MergeTree
ORDER BY (wallet_address, condition_id, trade_id)
SETTINGS {_PATCHABLE}
"""

MARKETS_DIM = f"""
CREATE TABLE IF NOT EXISTS $db.markets_dim (
    market_id          String,
    condition_id       String,
    question           String DEFAULT '',
    slug               String DEFAULT '',
    event_id           String DEFAULT '',
    category           String DEFAULT '',              -- as the source gave it
    canonical_category LowCardinality(String) DEFAULT '',
    outcomes           Array(String) DEFAULT ['Yes', 'No'],
    clob_token_ids     Array(String) DEFAULT [],
    closed             UInt8 DEFAULT 0,
    end_date           Nullable(DateTime('UTC')),
    source             LowCardinality(String) DEFAULT '',  -- gamma | snapshot | file | demo
    updated_at         DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY market_id
SETTINGS {_PATCHABLE}
"""

EVENTS_DIM = f"""
CREATE TABLE IF NOT EXISTS $db.events_dim (
    event_id           String,
    title              String DEFAULT '',
    slug               String DEFAULT '',
    category           String DEFAULT '',
    canonical_category LowCardinality(String) DEFAULT '',
    updated_at         DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY event_id
SETTINGS {_PATCHABLE}
"""

# Only VALID resolutions live here (resolution_rule: a real, known condition id and payouts >= 0
# summing to exactly 1): loaders, Step C and the demo put rejected candidates in resolution_rejects
# with the reason. Readers (Step D, Step E, the gates) re-check the row-local clauses through
# sql.VALID_RESOLUTIONS: a row that breaks them, however it got here, is never used.
MARKET_RESOLUTIONS = f"""
CREATE TABLE IF NOT EXISTS $db.market_resolutions (
    condition_id       String,
    market_id          String,
    payouts            Array(Decimal(18, 6)),      -- [p_yes, p_no]
    resolved_outcome   LowCardinality(String) MATERIALIZED
                           multiIf(length(payouts) != 2, '', payouts[1] > payouts[2], 'YES',
                                   payouts[2] > payouts[1], 'NO', 'SPLIT'),
    resolved_at        DateTime('UTC'),
    source             LowCardinality(String) DEFAULT '',
    updated_at         DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY condition_id
SETTINGS {_PATCHABLE}
"""

RESOLUTION_REJECTS = """
CREATE TABLE IF NOT EXISTS $db.resolution_rejects (
    condition_id       String,
    market_id          String,
    reason             String,
    raw                String,                    -- the rejected record as received (JSON)
    source             LowCardinality(String) DEFAULT '',
    rejected_at        DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree
ORDER BY (condition_id, rejected_at)
"""

WALLET_RESOLUTION_OUTCOMES = f"""
CREATE TABLE IF NOT EXISTS $db.wallet_resolution_outcomes (
    wallet_address     String,
    condition_id       String,
    market_id          String,
    resolved_outcome   LowCardinality(String),     -- YES | NO | SPLIT
    final_side         LowCardinality(String),     -- YES | NO (sign of net_yes - net_no)
    won                UInt8,
    resolved_at        DateTime('UTC'),
    canonical_category LowCardinality(String),
    num_trades         UInt32,
    final_shares       Decimal(38, 6),             -- |net_yes - net_no|
    realized_pnl_usd   Decimal(38, 12)
) ENGINE = MergeTree
ORDER BY (wallet_address, condition_id)
SETTINGS {_PATCHABLE}
"""

# Per-wallet accuracy over the swapped-in outcomes; a view follows the table across EXCHANGE.
WALLET_ACCURACY = """
CREATE VIEW IF NOT EXISTS $db.wallet_accuracy AS
SELECT
    wallet_address,
    count()                       AS resolved_positions,
    sum(won)                      AS wins,
    round(sum(won) / count(), 6)  AS accuracy,
    sum(realized_pnl_usd)         AS realized_pnl_usd,
    max(resolved_at)              AS last_resolved_at
FROM $db.wallet_resolution_outcomes
GROUP BY wallet_address
"""

# Step D's frozen work list: every (wallet, condition) pair of trades_raw, in key order, with the
# sums its P&L needs. A pair's P&L is Σ s·shares·(p[outcome] − price) − fee over its trades, which
# is exactly p_yes·a_yes + p_no·a_no − cost (Decimal arithmetic: the sums lose nothing), so a batch
# computes its pairs' P&L from these rows without reading trades_raw.
STEP_D_WORKLIST = """
CREATE TABLE IF NOT EXISTS $db.step_d_worklist (
    wallet_address String,
    condition_id   String,
    n_trades       UInt32,          -- rows of trades_raw in the pair: progress shows rows written
    h              UInt64,          -- the pair's share of the trades fingerprint (see sql.py)
    a_yes          Decimal(38, 6),  -- Σ s·shares over its outcome-0 trades (s = +1 BUY, −1 SELL)
    a_no           Decimal(38, 6),  -- the same over its other trades
    cost           Decimal(38, 12)  -- Σ s·shares·price + fee_usd
) ENGINE = MergeTree
ORDER BY (wallet_address, condition_id)
"""

# Which inputs the work list was frozen from (one row; replaced when a fresh run starts). `layout`
# 2: the work list carries the P&L sums (a list frozen by an older build is frozen again).
STEP_D_META = """
CREATE TABLE IF NOT EXISTS $db.step_d_meta (
    fingerprint String,
    pairs_total UInt64,
    created_at  DateTime64(3, 'UTC') DEFAULT now64(3),
    layout      UInt8 DEFAULT 1
) ENGINE = MergeTree
ORDER BY tuple()
"""

# Step D's batches: each pair's P&L as the run computed it, one row per pair of the work list done
# so far (a batch re-run after a crash writes the same rows again: the engine keeps one). Emptied
# when a work list is frozen. The trades' own P&L is written from the same inputs in one statement
# once every batch is done, and checked against these sums.
STEP_D_PAIR_PNL = """
CREATE TABLE IF NOT EXISTS $db.step_d_pair_pnl (
    wallet_address   String,
    condition_id     String,
    realized_pnl_usd Nullable(Decimal(38, 12)),
    is_resolved      UInt8
) ENGINE = ReplacingMergeTree
ORDER BY (wallet_address, condition_id)
"""

DDL = [
    TRADES_RAW, MARKETS_DIM, EVENTS_DIM, MARKET_RESOLUTIONS, RESOLUTION_REJECTS,
    WALLET_RESOLUTION_OUTCOMES, WALLET_ACCURACY, STEP_D_WORKLIST, STEP_D_META, STEP_D_PAIR_PNL,
]

ALL_TABLES = (
    "trades_raw", "markets_dim", "events_dim", "market_resolutions", "resolution_rejects",
    "wallet_resolution_outcomes", "step_d_worklist", "step_d_meta", "step_d_pair_pnl",
)


# Columns added after a table first shipped: existing runtime data gets them on the next start.
UPGRADES = [
    ("step_d_worklist", "n_trades", "UInt32"),
    ("step_d_worklist", "h", "UInt64"),
    ("step_d_worklist", "a_yes", "Decimal(38, 6)"),
    ("step_d_worklist", "a_no", "Decimal(38, 6)"),
    ("step_d_worklist", "cost", "Decimal(38, 12)"),
    ("step_d_meta", "layout", "UInt8 DEFAULT 1"),
    # Older parts compute it when read (the same value) until a merge writes it.
    ("trades_raw", "trade_hash", f"UInt64 MATERIALIZED {TRADE_HASH}"),
    # '' = every pair of the wallet (how an older build marked it).
    ("step_e_dirty_wallets", "condition_id", "String DEFAULT ''"),
]

_DDL_NAME = re.compile(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS \$db\.(\w+)")


def ensure_schema(ch: ClickHouse) -> None:
    """Create every enrichment table and view that is missing, add missing columns. Safe to call at
    every start. What exists is read first (two catalogue queries): the idempotent DDL itself costs
    tens of milliseconds per statement even when there is nothing to do, and every step starts here.
    The statements keep IF NOT EXISTS, so two processes racing here still agree. On a cluster every
    statement runs (ON CLUSTER): this node's catalogue says nothing about the other replicas."""
    params = {"db": ch.database}
    present: set[str] = set()
    if not ch.cluster:
        present = {str(r[0]) for r in ch.query("SELECT name FROM system.tables WHERE database = {db:String}", params).rows}
    for statement in DDL:
        match = _DDL_NAME.search(statement)
        if match is None or match[1] not in present:
            ch.command(statement)
    tables = sorted({t for t, _, _ in UPGRADES})
    columns: set[tuple[str, str]] = set()
    if not ch.cluster:
        columns = {(str(r[0]), str(r[1])) for r in ch.query(
            "SELECT table, name FROM system.columns WHERE database = {db:String} AND table IN {t:Array(String)}",
            {**params, "t": tables}).rows}
    for table, column, kind in UPGRADES:
        if (table, column) not in columns:
            ch.command(f"ALTER TABLE $db.{table} ADD COLUMN IF NOT EXISTS {column} {kind}")


async def aensure_schema(ch: ClickHouse) -> None:
    import anyio

    await anyio.to_thread.run_sync(ensure_schema, ch)


# --- incremental Step D -------------------------------------------------------------------------
# What each (wallet, condition) pair's P&L was last computed from: its trades (count and the wrapping
# sum of its trade hashes, as in step_d_worklist) and the payouts it used (`resolved` = 0: none, the
# P&L is NULL). Written by Step D only after the pair's P&L write has landed; the latest version wins.
STEPD_PAIR_STATE = """
CREATE TABLE IF NOT EXISTS $db.stepd_pair_state (
    wallet_address String,
    condition_id   String,
    n_trades       UInt32,
    h              UInt64,
    resolved       UInt8,
    p_yes          Decimal(18, 6),
    p_no           Decimal(18, 6),
    version        UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (wallet_address, condition_id)
"""

# The pairs of trades_raw at the start of an incremental run, classified: each affected (or
# vanished) pair on its own row with why, the unaffected ones folded into one row ('' reason,
# `pairs` of them, their trades and hash summed); the affected ones become the run's work list.
STEP_D_PAIRS_NOW = """
CREATE TABLE IF NOT EXISTS $db.step_d_pairs_now (
    wallet_address String,
    condition_id   String,
    n_trades       UInt64,
    h              UInt64,
    a_yes          Decimal(38, 6),  -- the P&L sums, as in step_d_worklist
    a_no           Decimal(38, 6),
    cost           Decimal(38, 12),
    reason         LowCardinality(String),
    pairs          UInt64
) ENGINE = MergeTree
ORDER BY (wallet_address, condition_id)
"""

DDL += [STEPD_PAIR_STATE, STEP_D_PAIRS_NOW]
INCREMENTAL_TABLES = ("stepd_pair_state", "step_d_pairs_now")

# --- incremental Step E -------------------------------------------------------------------------
# Positions whose outcomes may have changed since the last Step E: Step D adds its affected pairs
# when it freezes its work list (before writing anything), or wallet '*' (everything) for a full run;
# condition '' marks every position of the wallet. Step E empties it after its swap.
STEP_E_DIRTY_WALLETS = """
CREATE TABLE IF NOT EXISTS $db.step_e_dirty_wallets (
    wallet_address String,
    marked_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    condition_id   String DEFAULT ''
) ENGINE = MergeTree
ORDER BY wallet_address
"""
# How the last Step E build recorded its inputs (stepe.INPUTS_VERSION); one row.
STEP_E_META = """
CREATE TABLE IF NOT EXISTS $db.step_e_meta (
    fingerprint String,
    created_at  DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree
ORDER BY tuple()
"""

def _condition_hashes(table: str) -> str:
    """One hash per resolved condition: its valid resolution and its markets' categories."""
    return f"""
CREATE TABLE IF NOT EXISTS $db.{table} (
    condition_id String,
    h            UInt64
) ENGINE = MergeTree
ORDER BY condition_id
"""


# What the last Step E build read per resolved condition: a condition resolved, corrected,
# withdrawn or recategorised since makes its positions dirty.
STEP_E_RESOLUTIONS = _condition_hashes("step_e_resolutions")
# The same hashes as the inputs are now, computed once per build when it is planned: compared with
# step_e_resolutions to mark the dirty positions, then recorded in its place after the swap.
STEP_E_RESOLUTIONS_NEXT = _condition_hashes("step_e_resolutions_next")

DDL += [STEP_E_DIRTY_WALLETS, STEP_E_META, STEP_E_RESOLUTIONS, STEP_E_RESOLUTIONS_NEXT]
