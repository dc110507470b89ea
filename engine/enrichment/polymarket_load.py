"""`data load trades --format polymarket` and Step T's pages: data-api records → a canonical spool
file → `loaders.load_file`, so Polymarket trades take the one loading path every trades file takes.

* Reading streams (CSV rows, JSON lines, or a JSON array decoded item by item), and rows are
  converted in chunks: memory holds one chunk plus the duplicate filter (one 64-bit int per
  distinct fill, about 70 bytes each in a Python set).
* Each chunk's condition ids are looked up in `markets_dim`. A trade whose market is not known yet
  is loaded with `market_id` = its condition id (a placeholder Step A recognises: it fetches the
  market by condition id and rewrites those trades to the real market id, `relabel_placeholders`).
* Exact duplicate fills (same trade_id: the API repeats its last page past the offset cap) are
  dropped and counted; non-trade activity is counted per type and skipped; rows whose price or size
  the 6-decimal rounding changed are counted.
* Bad rows are named by their line in the INPUT file. Like every trades file the input is
  all-or-nothing unless `skip_invalid`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from engine.enrichment.loaders import LoadReport, RowError, list_errors, load_file
from engine.enrichment.polymarket_format import (
    CANONICAL_COLUMNS,
    Activity,
    CanonicalTrade,
    RowRefused,
    classify,
    looks_like_polymarket,
)
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput
from engine.files import ensure_private_dir, open_regular
from engine.processes import pid_exists
from engine.stores.clickhouse import ClickHouse

CHUNK = 5_000
MARKET_CACHE = 200_000  # condition id → market id entries kept between chunks
JSON_READ = 1 << 20

Resolver = Callable[[list[str]], dict[str, str]]  # condition ids → {condition id: market id} (known ones)


@dataclass
class Conversion:
    """What happened to the input's records before the loader saw them."""

    records: int = 0
    trades: int = 0
    duplicates: int = 0
    rounded: int = 0
    placeholders: int = 0  # trades whose market is not in markets_dim yet
    activity: Counter[str] = field(default_factory=Counter)
    activity_usdc: dict[str, Decimal] = field(default_factory=dict)
    invalid: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records, "trades": self.trades, "duplicates_dropped": self.duplicates,
            "rounded_to_6_decimals": self.rounded, "market_not_known_yet": self.placeholders,
            "activity_skipped": dict(sorted(self.activity.items())),
            "activity_usdc": {k: str(v) for k, v in sorted(self.activity_usdc.items())},
            "invalid": len(self.invalid),
        }

    def line(self) -> str:
        acts = ", ".join(f"{k} {v}" for k, v in sorted(self.activity.items())) or "none"
        return (f"polymarket: {self.records} record(s): {self.trades} trade(s), {self.duplicates} exact duplicate(s) "
                f"dropped, {self.rounded} price/size rounded to 6 decimals, {self.placeholders} trade(s) whose market "
                f"is not in markets_dim yet (Step A fills it), non-trade activity skipped: {acts}")


@dataclass
class PolymarketReport:
    conversion: Conversion
    load: LoadReport | None  # None when no trade was left to load

    def as_dict(self) -> dict[str, Any]:
        return {"polymarket": self.conversion.as_dict(), "load": self.load.as_dict() if self.load else None}


# --- detection and reading -----------------------------------------------------------------------
def _kind_of(path: Path, fmt: str) -> str:
    """csv | jsonl | json for a polymarket file (by extension, then by its first character)."""
    if fmt in ("csv", "jsonl", "json"):
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "json" if suffix == ".json" else "jsonl"
    return "csv"


def first_keys(path: Path, fmt: str = "auto") -> list[str]:
    """The header of a CSV, or the keys of the first JSON object: what auto-detection looks at."""
    kind = _kind_of(path, fmt)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    for _where, obj in _json_records(path, kind):
        return list(obj) if isinstance(obj, dict) else []
    return []


def is_polymarket_file(path: Path | str, fmt: str = "auto") -> bool:
    p = Path(path)
    if fmt == "polymarket":
        return True
    if fmt not in ("auto", "csv", "jsonl", "json") or not p.is_file() or p.suffix.lower() in (".parquet", ".pq"):
        return False
    try:
        return looks_like_polymarket(first_keys(p, fmt))
    except (OSError, UnicodeDecodeError, BadInput):
        return False  # the ordinary loader will say what is wrong with the file


def read_polymarket(path: Path, fmt: str = "auto") -> Iterator[tuple[str, dict[str, Any] | None, str]]:
    """(where, record or None, error) per record, streaming."""
    kind = _kind_of(path, fmt)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None:
                return
            reader.fieldnames = [(k or "").strip() for k in reader.fieldnames]  # once, not per row
            start = 2  # a record spanning lines (a bio with newlines) is named by its first line
            for row in reader:
                where = f"line {start}"
                start = reader.line_num + 1
                if None in row:
                    yield where, None, f"{len(row[None])} more cells than the header has"
                    continue
                yield where, row, ""
        return
    for where, obj in _json_records(path, kind):
        if isinstance(obj, str):
            yield where, None, obj  # a decode error
        elif not isinstance(obj, dict):
            yield where, None, "not a JSON object"
        else:
            yield where, obj, ""


def _json_records(path: Path, kind: str) -> Iterator[tuple[str, Any]]:
    """JSON lines, or the items of a JSON array (or of a {"data"|"trades"|"activity": [...]} envelope)
    decoded one at a time. A str item is a decode error's message."""
    if kind == "jsonl":
        with path.open(encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {n}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"line {n}", f"not valid JSON ({exc.msg})"
        return
    yield from _json_array(path)


def _json_array(path: Path) -> Iterator[tuple[str, Any]]:
    decoder = json.JSONDecoder()
    with path.open(encoding="utf-8-sig") as fh:
        buf = fh.read(JSON_READ)
        pos = len(buf) - len(buf.lstrip())
        if buf[pos:pos + 1] == "{":  # an envelope: API pages are small, read it whole
            rest = buf + fh.read()
            try:
                doc = json.loads(rest)
            except json.JSONDecodeError:
                del rest
                yield from _json_records(path, "jsonl")  # a .json file holding JSON lines
                return
            items = next((doc[k] for k in ("data", "trades", "activity") if isinstance(doc.get(k), list)), None)
            if items is None:
                raise BadInput(f'{path}: a JSON object must hold a list under "data", "trades" or "activity"')
            for i, obj in enumerate(items):
                yield f"item[{i}]", obj
            return
        if buf[pos:pos + 1] != "[":
            raise BadInput(f"{path}: expected a JSON list of data-api records")
        pos += 1
        i = 0
        eof = False
        while True:
            while True:  # skip whitespace and the comma between items
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buf) or eof:
                    break
                buf, pos = fh.read(JSON_READ), 0
                eof = not buf
            if pos >= len(buf):
                raise BadInput(f"{path}: the JSON list is not closed (cut short after item {i})")
            if buf[pos] == "]":
                return
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                more = "" if eof else fh.read(JSON_READ)
                if more:
                    buf, pos = buf[pos:] + more, 0  # the item continues in the next block
                    continue
                eof = True
                raise BadInput(f"{path}: item[{i}] is not valid JSON ({exc.msg}); nothing was loaded") from None
            if end == len(buf) and not eof:  # a number may continue in the next block
                more = fh.read(JSON_READ)
                if more:
                    buf, pos = buf[pos:] + more, 0
                    continue
                eof = True
            yield f"item[{i}]", obj
            i += 1
            pos = end
            if pos > JSON_READ:
                buf, pos = buf[pos:], 0


# --- converting ----------------------------------------------------------------------------------
class Converter:
    """Turns records into canonical rows written to `out`, counting as it goes (see module doc)."""

    def __init__(self, out: TextIO, resolver: Resolver) -> None:
        self.stats = Conversion()
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(CANONICAL_COLUMNS)
        self.resolver = resolver
        self.seen: set[int] = set()
        self.markets: OrderedDict[str, str | None] = OrderedDict()
        self.pending: list[CanonicalTrade] = []

    def add(self, where: str, record: dict[str, Any] | None, error: str = "") -> None:
        self.stats.records += 1
        if record is None:
            self.stats.invalid.append(RowError(where, error))
            return
        try:
            item = classify(record)
        except RowRefused as exc:
            self.stats.invalid.append(RowError(where, str(exc), str(record.get("transactionHash") or "")))
            return
        if isinstance(item, Activity):
            self.stats.activity[item.type] += 1
            self.stats.activity_usdc[item.type] = self.stats.activity_usdc.get(item.type, Decimal(0)) + item.usdc
            return
        key = int(item.trade_id[3:19], 16)
        if key in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(key)
        self.stats.trades += 1
        self.stats.rounded += item.rounded
        self.pending.append(item)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        unknown = sorted({t.condition_id for t in self.pending if t.condition_id not in self.markets})
        if unknown:
            found = self.resolver(unknown)
            for cond in unknown:
                self.markets[cond] = found.get(cond)
            while len(self.markets) > MARKET_CACHE:
                self.markets.popitem(last=False)
        for t in self.pending:
            market = self.markets.get(t.condition_id)
            if market is None:
                self.stats.placeholders += 1
            self.writer.writerow(t.values(market or t.condition_id))
        self.pending = []


def markets_resolver(ch: ClickHouse) -> Resolver:
    def resolve(conditions: list[str]) -> dict[str, str]:
        rows = ch.query(
            "SELECT condition_id, argMax(market_id, updated_at) FROM $db.markets_dim "
            "WHERE condition_id IN {ids:Array(String)} GROUP BY condition_id", {"ids": conditions}).rows
        return {str(c): str(m) for c, m in rows}
    return resolve


def spool_dir(runtime: Path) -> Path:
    return ensure_private_dir(runtime / "spool")


# polymarket-p<pid>-<hex>.csv; an older version wrote polymarket-<hex>.csv, without the pid.
_SPOOL_NAME = re.compile(r"^polymarket-(?:p(?P<pid>\d+)-)?[0-9a-f]{12}\.csv$")
SPOOL_MAX_AGE_S = 24 * 3600  # past this a spool file is stale whatever its pid (a pid can be reused)
OWNERLESS_SPOOL_AGE_S = 3600  # an older version's spool file (no pid): abandoned after this long untouched


def sweep_spool(runtime: Path) -> list[str]:
    """Delete the spool files of loads that died (a SIGKILLed load cannot delete its own; every
    other ending does). Spool files live in this machine's runtime, so a dead owner pid is proof."""
    removed = []
    with os.scandir(spool_dir(runtime)) as entries:
        for entry in entries:
            m = _SPOOL_NAME.match(entry.name)
            if m is None or not entry.is_file(follow_symlinks=False):
                continue
            try:
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue  # gone meanwhile
            if m["pid"] is None:  # no owner on record: only a long quiet says it is abandoned
                stale = age > OWNERLESS_SPOOL_AGE_S
            else:
                pid = int(m["pid"])
                stale = (pid != os.getpid() and not pid_exists(pid)) or age > SPOOL_MAX_AGE_S
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def _open_spool(runtime: Path) -> tuple[Path, TextIO]:
    sweep_spool(runtime)
    path = spool_dir(runtime) / f"polymarket-p{os.getpid()}-{uuid.uuid4().hex[:12]}.csv"
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return path, os.fdopen(fd, "w", encoding="utf-8", newline="")


def load_records(
    ch: ClickHouse,
    records: Iterator[tuple[str, dict[str, Any] | None, str]],
    *,
    runtime: Path,
    label: str,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    source: str = "polymarket",
) -> PolymarketReport:
    """Convert `records` to a spool file in `runtime/spool/` and load it with `loaders.load_file`."""
    ensure_schema(ch)
    spool, fh = _open_spool(runtime)
    try:
        with fh:
            conv = Converter(fh, markets_resolver(ch))
            for where, record, error in records:
                conv.add(where, record, error)
                if progress and conv.stats.records % 20_000 == 0:
                    progress(conv.stats.records)
            conv.flush()
        stats = conv.stats
        if stats.records == 0:
            raise BadInput(f"{label}: no records found; nothing was loaded")
        if stats.invalid and not skip_invalid:
            raise BadInput(
                f"{label}: {len(stats.invalid)} invalid row(s) of {stats.records}; the file was refused as a whole "
                f"and nothing was loaded:\n{list_errors(stats.invalid)}",
                hint="fix the rows, or load the valid ones with --skip-invalid",
            )
        if stats.trades == 0:
            return PolymarketReport(stats, None)
        report = load_file(ch, "trades", spool, fmt="csv", skip_invalid=skip_invalid, source=source)
        report.path, report.format = label, "polymarket"
        report.records = stats.records
        report.invalid = stats.invalid + report.invalid
        report.skipped_invalid = bool(report.invalid)
        return PolymarketReport(stats, report)
    finally:
        spool.unlink(missing_ok=True)


def load_polymarket_file(
    ch: ClickHouse, path: Path | str, *, runtime: Path, fmt: str = "auto", skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PolymarketReport:
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such file")
    inner = "auto" if fmt == "polymarket" else fmt
    return load_records(ch, read_polymarket(p, inner), runtime=runtime, label=str(p), skip_invalid=skip_invalid,
                        progress=progress)


# --- Step A: placeholders become real market ids ---------------------------------------------------
def is_placeholder(market_id: str, condition_id: str) -> bool:
    """A trade loaded before its market was known carries its condition id as market id."""
    return market_id == condition_id


RELABEL = """
ALTER TABLE $db.trades_raw
UPDATE market_id = transform(condition_id, {conds:Array(String)}, {ids:Array(String)}, market_id)
WHERE market_id = condition_id AND condition_id IN {conds:Array(String)}
"""


def relabel_placeholders(ch: ClickHouse, mapping: dict[str, str]) -> int:
    """Rewrite placeholder market ids to the real ones Step A fetched (one mutation). Returns the
    number of conditions relabelled. Idempotent: a rerun finds no placeholder left."""
    mapping = {c: m for c, m in mapping.items() if m and m != c}
    if not mapping:
        return 0
    conds = sorted(mapping)
    ch.command(RELABEL, {"conds": conds, "ids": [mapping[c] for c in conds]}, {"mutations_sync": 2})
    return len(conds)


def describe_failure(report: PolymarketReport) -> str:
    return list_errors(report.conversion.invalid)


PLACEHOLDERS_KNOWN = """
SELECT condition_id, argMax(market_id, updated_at) FROM $db.markets_dim
WHERE condition_id IN (SELECT DISTINCT condition_id FROM $db.trades_raw WHERE market_id = condition_id)
  AND market_id != condition_id
GROUP BY condition_id
"""


def relabel_known(ch: ClickHouse) -> int:
    """Placeholders whose market markets_dim already holds (loaded after the trades): no fetch needed."""
    return relabel_placeholders(ch, {str(c): str(m) for c, m in ch.query(PLACEHOLDERS_KNOWN).rows})
