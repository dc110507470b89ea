"""The fast path of `data load trades FILE.csv` on embedded chDB: ClickHouse reads and checks the file.

Python parsing and checking ran at ~25k rows/s; ClickHouse parses the same CSV in parallel at
millions of rows/s. So, for a CSV of trades on chDB (which reads local files itself):

1. `file()` reads every cell as text into a private raw table `<staging>_raw`, numbered in file
   order (`rowNumberInAllBlocks()` with the storage's single ordered stream), one extra column
   catching cells beyond the header;
2. one `INSERT … SELECT` moves every row of the common, unambiguous shape (plain decimals of the
   documented precision and range, `YYYY-MM-DD hh:mm:ss` or Unix-second timestamps, known sides
   and outcomes, ids that are no placeholder) into the staging table, converted;
3. every other row is read back in file order, in chunks, and judged by `validate_trade`, the
   one rule: it is staged if valid or listed with its reasons. The SQL only ever accepts a subset
   of what `validate_trade` accepts, with the same values, and never writes a message itself.

Line numbers are file lines (header = line 1) as long as no cell holds a line break; a file with
one is handed back to the Python reader, whose csv module counts physical lines. Everything after
staging (duplicates, conflicts, the atomic move) is shared with the Python path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.crashpoints import crash_point
from engine.enrichment.load_rules import COLUMN_TYPES, TYPE_LIMITS
from engine.enrichment.load_staging import Staging
from engine.enrichment.resolution_rule import PLACEHOLDER_IDS
from engine.stores.clickhouse import ChdbClickHouse, ClickHouse, ClickHouseError, ident

#: The same field bound as the Python reader (loaders.CSV_FIELD_LIMIT, Python's csv default).
CSV_FIELD_LIMIT = 131_072
#: Rows judged in Python per read-back (a bounded batch).
PYTHON_BATCH = 20_000
#: chDB's own memory for the read, so a hostile file cannot take the process's memory with it.
READ_SETTINGS = {
    "input_format_csv_skip_first_lines": 1,
    "input_format_csv_allow_variable_number_of_columns": 1,
    "format_csv_allow_single_quotes": 0,
    "parallelize_output_from_storages": 0,  # one ordered stream: row numbers follow the file
    # The stream is ordered and single anyway; parallel parsing and extra threads only added buffers.
    # Measured on a seed-scale file (2.45M rows): peak RSS 1,212 MiB with the defaults, 932 MiB
    # with these two, in about the same time (25.1 s against 24.3 s).
    "input_format_parallel_parsing": 0,
    "max_threads": 1,
    "max_memory_usage": 768 * 1024 * 1024,
    # Not mmap (file()'s default for local files): mapped pages count as our RSS, so a 5 GB file
    # would show as 5 GB of memory; pread reads through a bounded buffer.
    "storage_file_read_method": "pread",
    # Parts of ~128k rows: the default squashes inserts into 1M-row blocks, which for trades' long
    # hex ids is hundreds of MB in memory at once (the move merges the parts into one anyway).
    "max_insert_block_size": 131_072,
    "min_insert_block_size_rows": 131_072,
    "min_insert_block_size_bytes": 64 * 1024 * 1024,
}
# Python's str.strip() removes these from the ends of a cell; a cell that has any at its ends goes
# to Python, so both paths store the same text.
_EDGE_SPACE = r"[\s\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{1c}-\x{1f}]"


#: file() expands these as globs (`t{1,2}.csv`, `*`): such a name could read other files.
_GLOB = set("*?{}[]")


def usable(ch: ClickHouse, kind: str, fmt: str, path: Path | None = None) -> bool:
    if path is not None and _GLOB & set(str(path.resolve())):
        return False
    return kind == "trades" and fmt == "csv" and isinstance(ch, ChdbClickHouse)


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RawCells:
    """Column expressions over the raw table for the header's columns (NULL when absent)."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.index = {name: i for i, name in enumerate(header)}

    def cell(self, name: str) -> str:
        i = self.index.get(name)
        return "CAST(NULL AS Nullable(String))" if i is None else f"c{i}"

    def schema(self) -> str:
        return ", ".join(f"c{i} Nullable(String)" for i in range(len(self.header))) + ", extra Nullable(String)"


_EDGE = _lit(f"^{_EDGE_SPACE}|{_EDGE_SPACE}$")


def _plain_id(c: str) -> str:
    placeholders = ", ".join(_lit(p) for p in sorted(PLACEHOLDER_IDS))
    return f"({c} IS NOT NULL AND {c} != '' AND NOT match({c}, {_EDGE}) AND lower({c}) NOT IN ({placeholders}))"


def _plain_text(c: str) -> str:
    return f"({c} IS NULL OR NOT match({c}, {_EDGE}))"


def _plain_number(c: str, column: str) -> str:
    """Plain `123.456`: no sign, exponent or stray point; at most the type's decimals (as written)
    and fewer integer digits than the type's bound allows (so below it)."""
    places, bound = TYPE_LIMITS[COLUMN_TYPES[column]]
    int_digits = len(str(int(bound))) - 1  # below 10^k: at most k digits
    return f"match(ifNull({c}, ''), {_lit(f'^[0-9]{{1,{int_digits}}}([.][0-9]{{1,{places}}})?$')})"


def _decimal(c: str, column: str) -> str:
    """The text as its column's Decimal; never throws (a row it cannot convert is not plain)."""
    places, _ = TYPE_LIMITS[COLUMN_TYPES[column]]
    return f"toDecimal128OrNull({c}, {places})"


_ISO = _lit(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+]00:00)?$")
_MIN_TS, _MAX_TS = 946_684_800, 4_291_747_200  # 2000-01-01 .. 2106-01-01 (UTC), as _when bounds them


def _timestamp(c: str) -> tuple[str, str]:
    """(is plain, value): ISO `YYYY-MM-DD hh:mm:ss` (UTC, `T`/`Z`/`+00:00` allowed) or Unix
    seconds (up to 11 digits) or milliseconds (12-13 digits), within 2000..2105."""
    t = f"ifNull({c}, '')"
    iso = f"parseDateTimeOrNull(substring(replaceOne({t}, 'T', ' '), 1, 19), '%Y-%m-%d %H:%i:%s', 'UTC')"
    secs = (f"multiIf(match({t}, {_ISO}), toUInt64(toUnixTimestamp({iso})), "
            f"match({t}, {_lit('^[0-9]{1,11}$')}), toUInt64OrNull({t}), "
            f"match({t}, {_lit('^[0-9]{12,13}$')}), intDiv(toUInt64OrNull({t}), 1000), NULL)")
    ok = f"(ifNull({secs}, 0) >= {_MIN_TS} AND ifNull({secs}, 0) < {_MAX_TS})"
    return ok, f"toDateTime(assumeNotNull({secs}), 'UTC')"


def _select(cells: RawCells) -> tuple[str, str]:
    """(the predicate "plainly valid", the converted columns in TRADE_STAGE_COLUMNS order)."""
    g = cells.cell
    price, shares, fee, usd = g("price"), g("shares"), g("fee_usd"), g("usd_value")
    product = f"({_decimal(price, 'price')} * {_decimal(shares, 'shares')})"
    ts_ok, ts = _timestamp(g("timestamp"))
    ok = " AND ".join([
        "extra IS NULL",
        *(_plain_id(g(c)) for c in ("trade_id", "wallet_address", "market_id", "condition_id")),
        f"ifNull({g('outcome_index')} IN ('0', '1', '0.0', '1.0'), 0)",
        f"match(ifNull({g('side')}, ''), {_lit('^(?i:buy|sell)$')})",
        _plain_number(price, "price"), f"ifNull({_decimal(price, 'price')} <= 1, 0)",
        _plain_number(shares, "shares"), f"ifNull({_decimal(shares, 'shares')} > 0, 0)",
        f"({fee} IS NULL OR {_plain_number(fee, 'fee_usd')})",
        f"({usd} IS NULL OR ({_plain_number(usd, 'usd_value')} AND "
        f"ifNull(abs({_decimal(usd, 'usd_value')} - {product}) <= toDecimal128('0.01', 12), 0)))",
        ts_ok,
        _plain_text(g("tx_hash")), _plain_text(g("canonical_category")),
    ])
    values = ", ".join([
        *(f"assumeNotNull({g(c)})" for c in ("trade_id", "wallet_address", "market_id", "condition_id")),
        f"toUInt8(assumeNotNull({g('outcome_index')}) IN ('1', '1.0'))", f"upper(assumeNotNull({g('side')}))",
        f"assumeNotNull({_decimal(price, 'price')})", f"assumeNotNull({_decimal(shares, 'shares')})",
        f"assumeNotNull(if({usd} IS NULL, {product}, {_decimal(usd, 'usd_value')}))",
        f"assumeNotNull(if({fee} IS NULL, toDecimal128(0, 12), {_decimal(fee, 'fee_usd')}))",
        ts, f"ifNull({g('tx_hash')}, '')", f"ifNull({g('canonical_category')}, '')",
    ])
    return ok, values


def stage_csv(
    ch: ClickHouse,
    staging: Staging,
    path: Path,
    header: list[str],
    judge: Callable[[int, dict[str, Any] | None, str], None],
    delimiter: str = ",",
) -> tuple[int, int] | None:
    """Stage a trades CSV through ClickHouse (module doc). `judge(line, cells, error)` gets each
    row the SQL did not accept, in file order, and stages or lists it. Returns (records, rows the
    SQL staged), or None when the file must go through the Python reader instead (nothing staged)."""
    cells = RawCells(header)
    settings = {**READ_SETTINGS, "format_csv_delimiter": delimiter}
    # Numbered before any filter: rowNumberInAllBlocks is stateful, so no predicate is pushed below it.
    # Absolute: file() resolves a relative path against chDB's user_files directory, not our cwd.
    source = (f"(SELECT rowNumberInAllBlocks() AS rn, * FROM file({_lit(str(path.resolve()))}, 'CSV', "
              f"{_lit(cells.schema())}))")
    all_cells = [f"c{i}" for i in range(len(header))] + ["extra"]
    blank = " AND ".join(f"{c} IS NULL" for c in all_cells)
    joined = "concat(" + ", ".join(f"ifNull({c}, '')" for c in all_cells) + ")"
    longest = "greatest(" + ", ".join(f"length(ifNull({c}, ''))" for c in all_cells) + ")"
    odd = f"(match({joined}, {_lit(chr(91) + chr(13) + chr(10) + chr(93))}) OR NOT isValidUTF8({joined}) OR {longest} > {CSV_FIELD_LIMIT})"
    ok, values = _select(cells)
    try:  # pass 1: what the file holds
        records, odd_rows, rest = ch.query(
            f"SELECT countIf(NOT ({blank})), countIf({odd}), countIf(NOT ({ok}) AND NOT ({blank})) FROM {source}",
            settings=settings).rows[0]
    except ClickHouseError:
        return None  # ClickHouse's CSV dialect refused it: the csv module reads it and names the line
    crash_point("load_reading")
    if int(odd_rows):
        # A line break in a cell (physical lines differ from records), invalid UTF-8 or an
        # oversized field: the Python reader counts lines exactly and refuses the file clearly.
        return None
    # pass 2: every plain row, converted, straight from the file into the staging table
    columns = ", ".join([*staging.columns, "_line"])
    ch.command(f"INSERT INTO {staging.ref} ({columns}) SELECT {values}, rn + 2 FROM {source} WHERE {ok}",
               settings=settings)
    plain = int(ch.scalar(f"SELECT count() FROM {staging.ref}") or 0)
    staging.rows += plain
    crash_point("load_staged_chunk")
    if not int(rest):
        return int(records), plain
    # pass 3, only when some rows are not plain: those rows' cells, judged in file order by Python
    raw = f"$db.{ident(staging.name + '_raw')}"
    ch.command(f"CREATE TABLE {raw} (rn UInt64, {cells.schema()}) ENGINE = MergeTree ORDER BY rn")
    try:
        ch.command(f"INSERT INTO {raw} SELECT rn, {', '.join(all_cells)} FROM {source} "
                   f"WHERE NOT ({ok}) AND NOT ({blank})", settings=settings)
        last = -1
        while True:
            staging.check_stop()
            rows = ch.query(f"SELECT rn, {', '.join(all_cells)} FROM {raw} WHERE rn > {last} "
                            f"ORDER BY rn LIMIT {PYTHON_BATCH}").rows
            if not rows:
                break
            for rn, *values_ in rows:
                line = int(rn) + 2
                if values_[-1] is not None:
                    judge(line, None, f"more cells than the header's {len(header)} columns")
                    continue
                row = {name: (None if v is None or str(v).strip() == "" else v)
                       for name, v in zip(header, values_, strict=False)}
                judge(line, row, "")
            last = int(rows[-1][0])
        return int(records), plain
    finally:
        ch.command(f"DROP TABLE IF EXISTS {raw}")
