"""`opsconsole data load`: trades, markets and resolutions from CSV, JSON lines, JSON or Parquet.
The row checks and upserts here also serve Steps A and C (markets and resolutions from Gamma).

Rules:
* Every row is checked before anything reaches the real table. Trades and markets are
  all-or-nothing per file: one bad row refuses the file, naming line numbers and reasons
  (`skip_invalid` loads the good rows and reports the rest). Resolutions are the exception operators
  asked for: valid ones load, invalid ones are listed (and recorded in `resolution_rejects`).
* Rows stream through a private staging table in chunks (`insert_rows`, no giant SQL strings); the
  new rows are then built aside as one part and attached to the real table in one step
  (engine/enrichment/load_staging.py), so a reader or a crash sees the whole load or none of it.
  Staging tables are dropped on the way out, and a killed load's at the next start.
* Reloading is idempotent. Trades are immutable fills: only `trade_id`s not present yet are
  inserted. Markets and resolutions are ReplacingMergeTree upserts: a row identical to the current
  version is skipped, a changed one is inserted as the newer version (readers use FINAL).
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from engine.enrichment import load_sql
from engine.enrichment.categories import canonicalize_category
from engine.enrichment.load_rules import is_ascii_number, limits
from engine.enrichment.load_staging import Staging
from engine.enrichment.resolution_rule import NEGATIVE_PAYOUT, PAYOUTS_NOT_ONE, is_placeholder, payouts_problem
from engine.enrichment.schema import ensure_schema
from engine.crashpoints import crash_point
from engine.errors import BadInput
from engine.files import decode_utf8, open_input, read_bounded
from engine.stores.clickhouse import ClickHouse, ident

Kind = Literal["trades", "markets", "resolutions"]
KINDS: tuple[Kind, ...] = ("trades", "markets", "resolutions")
FORMATS = ("auto", "csv", "jsonl", "parquet", "json", "polymarket")

CHUNK_ROWS = 20_000
MAX_LISTED = 20  # invalid rows named in a message; the count is always given in full
MAX_KEPT = 1000  # invalid rows kept in a report (its JSON lists these); the count is exact

# Documented file formats: (column, required, description). `opsconsole data load --help` prints these.
COLUMNS: dict[Kind, list[tuple[str, bool, str]]] = {
    "trades": [
        ("trade_id", True, "unique fill id (natural key; a reload skips ids already present)"),
        ("wallet_address", True, "wallet that made this fill"),
        ("market_id", True, "market id"),
        ("condition_id", True, "CTF condition id of the market"),
        ("outcome_index", True, "0 = YES token, 1 = NO token"),
        ("side", True, "BUY or SELL"),
        ("price", True, "0..1, at most 6 decimals"),
        ("shares", True, "> 0, at most 6 decimals"),
        ("usd_value", False, "price x shares (within 0.01); computed when absent"),
        ("fee_usd", False, ">= 0, paid by this wallet (default 0)"),
        ("timestamp", True, "ISO 8601 (naive = UTC) or Unix seconds/milliseconds"),
        ("tx_hash", False, "transaction hash"),
        ("canonical_category", False, "normally filled by Step B"),
    ],
    "markets": [
        ("market_id", True, "market id (natural key)"),
        ("condition_id", True, "CTF condition id"),
        ("question", False, ""), ("slug", False, ""), ("event_id", False, ""),
        ("category", False, "source category"),
        ("canonical_category", False, "derived from category when absent"),
        ("outcomes", False, 'JSON list, default ["Yes","No"]; exactly 2'),
        ("clob_token_ids", False, "JSON list"),
        ("closed", False, "true/false"),
        ("end_date", False, "ISO 8601 or Unix time"),
    ],
    "resolutions": [
        ("condition_id", True, "CTF condition id (natural key); must be known from trades or markets"),
        ("market_id", True, "market id; must match the condition's market"),
        ("payout_yes", True, ">= 0; with payout_no sums to exactly 1 (or `payouts` = [yes, no])"),
        ("payout_no", True, ">= 0"),
        ("resolved_outcome", False, "YES | NO | SPLIT; must agree with the payouts; null = rejected"),
        ("resolved_at", True, "ISO 8601 or Unix time"),
    ],
}


def formats_help() -> str:
    lines = ["file formats (one record per row/line; CSV needs a header row):"]
    for kind, cols in COLUMNS.items():
        lines.append(f"  {kind}:")
        for name, required, desc in cols:
            lines.append(f"    {name:<19}{'required' if required else 'optional':<9} {desc}")
    lines.append('  resolutions also accept the old map format: a .json file {"resolutions": [{condition_id, '
                 'market_id, resolved_outcome: "YES"|"NO"|null, payout_yes, payout_no, resolved_at}, ...]}')
    lines.append("  formats: csv, jsonl (JSON lines), parquet, json (a JSON list, or the map format); "
                 "auto picks by extension (.csv, .jsonl/.ndjson, .parquet/.pq, .json)")
    lines.append("  polymarket: data-api /trades or /activity rows (CSV, JSON lines or JSON); picked automatically "
                 "from the header/keys (proxyWallet, conditionId, transactionHash); see the README")
    return "\n".join(lines)


# --- reports ---------------------------------------------------------------------------------------
@dataclass
class RowError:
    where: str  # "line 12", "row 5", "resolutions[3]"
    reason: str
    key: str = ""


@dataclass
class LoadReport:
    kind: str
    path: str
    format: str
    records: int = 0
    valid: int = 0
    inserted: int = 0
    unchanged: int = 0  # already present (trades) or identical to the current version (dims)
    conflicts: int = 0  # trades: ids already present with DIFFERENT values (kept as they were)
    invalid: list[RowError] = field(default_factory=list)  # the first MAX_KEPT (all, for resolutions)
    skipped_invalid: bool = False
    unknown_columns: list[str] = field(default_factory=list)  # ignored (refused with strict)

    invalid_total: int = 0  # every invalid record, however many are kept in `invalid`
    keep_all: bool = False  # resolutions: every reject is recorded in resolution_rejects

    @property
    def invalid_count(self) -> int:
        return max(self.invalid_total, len(self.invalid))

    def add_invalid(self, error: RowError) -> None:
        """Count every invalid record, keep the first MAX_KEPT: a file of millions of bad rows must
        not hold millions of messages in memory."""
        self.invalid_total = self.invalid_count + 1
        if self.keep_all or len(self.invalid) < MAX_KEPT:
            self.invalid.append(error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": self.path, "format": self.format, "records": self.records,
            "valid": self.valid, "inserted": self.inserted, "unchanged": self.unchanged,
            "invalid": self.invalid_count, "conflicts": self.conflicts,
            "unknown_columns": self.unknown_columns,
            "invalid_rows": [{"where": e.where, "reason": e.reason, "key": e.key} for e in self.invalid[:1000]],
        }


def list_errors(errors: list[RowError], limit: int = MAX_LISTED, total: int | None = None) -> str:
    """The first `limit` errors, then how many more (of `total`, when only some were kept)."""
    total = len(errors) if total is None else max(total, len(errors))
    shown = [f"  {e.where}: {e.reason}" for e in errors[:limit]]
    if total > limit:
        shown.append(f"  … and {total - limit} more")
    return "\n".join(shown)


# --- reading -----------------------------------------------------------------------------------------
@dataclass
class Record:
    where: str
    data: dict[str, Any] | None
    error: str = ""


def detect_format(path: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".json":
        return "json"
    named = "|".join(f for f in FORMATS if f != "auto")
    raise BadInput(f"cannot tell the format of {path.name} from its extension; pass --format {named}")


def _blank_to_none(row: dict[str, Any]) -> dict[str, Any]:
    return {(k or "").strip(): (None if isinstance(v, str) and v.strip() == "" else v) for k, v in row.items()}


#: Bounds on what one read holds in memory. A line (a JSON line, or one physical line of a CSV
#: record) beyond MAX_LINE_BYTES is refused instead of read whole (a 3 GB single-line file);
#: a CSV field beyond CSV_FIELD_LIMIT characters too (Python's csv default, named here).
MAX_LINE_BYTES = 16 * 1024 * 1024
CSV_FIELD_LIMIT = 131_072
#: A `json` file (one document) is parsed whole, and Python objects take several times the text;
#: bigger ones must be JSON lines, which stream.
MAX_JSON_BYTES = 64 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, strictly UTF-8, each bounded; a fault is a BadInput naming the line."""
    with open_input(path, "data file") as fh:
        if fh.peek(2)[:2] == GZIP_MAGIC:
            raise BadInput(f"{path}: is gzip-compressed; decompress it first (gunzip -k {path.name})")
        n = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                raise BadInput(f"{path}: line {n} is longer than {MAX_LINE_BYTES:,} bytes; nothing was loaded")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(f"{path}: line {n} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                               f"{exc.start + 1}); nothing was loaded") from None
            yield text.removeprefix("\ufeff") if n == 1 else text


def more_cells(columns: int) -> str:
    return f"more cells than the header's {columns} columns"


def _csv_delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _check_header(path: Path, header: list[str], where: str) -> list[str]:
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInput(f"{path}: {where}: column(s) {', '.join(repeated)} appear more than once in the header; "
                       "nothing was loaded", hint="which of the copies is meant is not for the loader to guess")
    return names


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    if fmt == "csv":
        csv.field_size_limit(CSV_FIELD_LIMIT)
        reader = csv.reader(_text_lines(path), delimiter=_csv_delimiter(path))
        try:
            header = next(reader, None)
            if header is None:
                return
            names = _check_header(path, header, "line 1")
            for cells in reader:
                if not cells:
                    continue  # a blank line (csv.DictReader skipped these too)
                where = f"line {reader.line_num}"
                if len(cells) > len(names):
                    yield Record(where, None, more_cells(len(names)))
                    continue
                row: dict[str, Any] = dict(zip(names, cells, strict=False))
                for name in names[len(cells):]:
                    row[name] = None  # fewer cells: the missing ones are absent
                yield Record(where, _blank_to_none(row))
        except csv.Error as exc:
            reason = (f"a field is longer than {CSV_FIELD_LIMIT:,} characters" if "field limit" in str(exc)
                      else f"not valid CSV ({exc})")
            raise BadInput(f"{path}: line {reader.line_num}: {reason}; nothing was loaded") from None
    elif fmt == "jsonl":
        for n, line in enumerate(_text_lines(path), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Record(f"line {n}", None, f"not valid JSON ({exc.msg})")
                continue
            except RecursionError:
                yield Record(f"line {n}", None, "JSON nested too deeply")
                continue
            except ValueError as exc:  # an integer of thousands of digits
                yield Record(f"line {n}", None, f"not usable JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                yield Record(f"line {n}", None, "not a JSON object")
                continue
            yield Record(f"line {n}", obj)
    elif fmt == "json":
        data = read_bounded(path, "data file", MAX_JSON_BYTES)
        if data[:2] == GZIP_MAGIC:
            raise BadInput(f"{path}: is gzip-compressed; decompress it first (gunzip -k {path.name})")
        text = decode_utf8(data, path)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            del data, text
            # a .json file holding JSON lines
            yield from read_records(path, "jsonl")
            return
        except RecursionError:
            raise BadInput(f"{path}: JSON nested too deeply; nothing was loaded") from None
        except ValueError as exc:
            raise BadInput(f"{path}: not usable JSON ({exc}); nothing was loaded") from None
        name = "item"
        if isinstance(doc, dict):
            for key in ("resolutions", "markets", "trades"):
                if isinstance(doc.get(key), list):
                    name, doc = key, doc[key]
                    break
            else:
                raise BadInput(f"{path}: a JSON object must hold a list under \"resolutions\", \"markets\" or \"trades\"")
        if not isinstance(doc, list):
            raise BadInput(f"{path}: expected a JSON list of records")
        for i, obj in enumerate(doc):
            if not isinstance(obj, dict):
                yield Record(f"{name}[{i}]", None, "not a JSON object")
            else:
                yield Record(f"{name}[{i}]", obj)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None
        n = 0
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
            for obj in batch.to_pylist():
                n += 1
                yield Record(f"row {n}", obj)
    else:  # pragma: no cover - detect_format guards this
        raise BadInput(f"unknown format {fmt}")


def file_columns(path: Path, fmt: str) -> list[str] | None:
    """Header columns when the format has a header (CSV, Parquet); None otherwise. A repeated column
    refuses the file."""
    if fmt == "csv":
        csv.field_size_limit(CSV_FIELD_LIMIT)
        reader = csv.reader(_text_lines(path), delimiter=_csv_delimiter(path))
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise BadInput(f"{path}: line 1: not a valid CSV header ({exc})") from None
        return _check_header(path, header, "line 1") if header else []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:
            raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None
        return _check_header(path, names, "schema")
    return None


# --- field checks (explicit, so every message names the field and the value) --------------------
class FieldError(ValueError):
    pass


def _text(row: dict[str, Any], name: str, *, required: bool, ident_like: bool = False) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if required:
            raise FieldError(f"{name} is missing")
        return ""
    text = str(value).strip()
    if ident_like and is_placeholder(text):
        raise FieldError(f"{name} is a placeholder ({text!r})")
    if required and not text:
        raise FieldError(f"{name} is empty")
    return text


def _decimal(row: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
    """A number with at most the decimals its column type holds, below that type's bound
    (load_rules: one bound per type); text must be ASCII digits."""
    value = row.get(name)
    if value is None:
        if required:
            raise FieldError(f"{name} is missing")
        return None
    if isinstance(value, bool):
        raise FieldError(f"{name} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FieldError(f"{name} is not finite ({value!r})")
        d = Decimal(str(value))
    else:
        text = str(value).strip()
        if not is_ascii_number(text):
            raise FieldError(f"{name} is not a number ({_short(value)}): use ASCII digits, '.' and an optional exponent")
        d = Decimal(text)
    if not d.is_finite():
        raise FieldError(f"{name} is not finite ({value!r})")
    places, bound = limits(name)
    if abs(d) >= bound:
        raise FieldError(f"{name} {_short(value)} is out of range: it must be below {bound:.0E} in magnitude")
    if _decimals(d) > places:
        raise FieldError(f"{name} has more than {places} decimals ({_short(value)}); it would be rounded")
    return d


def _decimals(d: Decimal) -> int:
    """Decimal places that matter (trailing zeros do not), without Decimal's context: `normalize()`
    would round 1e-9999999 to 0 and let it pass."""
    sign, digits, exp = d.as_tuple()
    if not isinstance(exp, int) or exp >= 0:
        return 0
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exp - zeros)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


_UNIX_TIME = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _when(row: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    value = row.get(name)
    if value is None:
        if required:
            raise FieldError(f"{name} is missing")
        return None
    try:
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, date):
            dt = datetime(value.year, value.month, value.day)
        elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            secs = float(value)
            dt = datetime.fromtimestamp(secs / 1000 if secs > 1e11 else secs, tz=timezone.utc)
        else:
            text = str(value).strip()
            if not text.isascii():
                raise ValueError("not ASCII")  # fromisoformat and float() take other scripts' digits
            if _UNIX_TIME.fullmatch(text):
                secs = float(text)
                dt = datetime.fromtimestamp(secs / 1000 if secs > 1e11 else secs, tz=timezone.utc)
            else:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise FieldError(f"{name} is not a timestamp ({value!r}): use ISO 8601 or Unix seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)  # naive = UTC, as documented
    dt = dt.astimezone(timezone.utc)
    if not (2000 <= dt.year < 2106):
        raise FieldError(f"{name} {value!r} is outside 2000..2105")
    return dt.replace(microsecond=0)


def _json_list(row: dict[str, Any], name: str) -> list[str] | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise FieldError(f"{name} is not a JSON list ({value[:40]!r})") from None
    if not isinstance(value, (list, tuple)):
        raise FieldError(f"{name} must be a list")
    return [str(x) for x in value]


def _bool(row: dict[str, Any], name: str) -> int:
    value = row.get(name)
    if value is None:
        return 0
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y"):
        return 1
    if text in ("0", "false", "f", "no", "n"):
        return 0
    raise FieldError(f"{name} must be true or false ({value!r})")


def _collect(checks: list[Callable[[], Any]]) -> tuple[list[Any], list[str]]:
    """Run every field check and keep every problem, so one pass names all of a row's faults."""
    values, problems = [], []
    for check in checks:
        try:
            values.append(check())
        except FieldError as exc:
            values.append(None)
            problems.append(str(exc))
    return values, problems


# --- per-kind row validation: returns (key, row tuple) or raises FieldError --------------------------
TRADE_STAGE_COLUMNS = [
    "trade_id", "wallet_address", "market_id", "condition_id", "outcome_index", "side", "price",
    "shares", "usd_value", "fee_usd", "timestamp", "tx_hash", "canonical_category",
]
USD_TOLERANCE = Decimal("0.01")


def validate_trade(row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    def outcome() -> int:
        v = row.get("outcome_index")
        if v is None:
            raise FieldError("outcome_index is missing")
        text = str(v).strip()
        if text not in ("0", "1", "0.0", "1.0"):
            raise FieldError(f"outcome_index must be 0 (YES) or 1 (NO), got {v!r}")
        return int(float(text))

    def side() -> str:
        v = _text(row, "side", required=True).upper()
        if v not in ("BUY", "SELL"):
            raise FieldError(f"side must be BUY or SELL, got {row.get('side')!r}")
        return v

    def price() -> Decimal:
        p = _decimal(row, "price", required=True)
        assert p is not None
        if not (0 <= p <= 1):
            raise FieldError(f"price {p} is outside [0, 1]")
        return p

    def shares() -> Decimal:
        s = _decimal(row, "shares", required=True)
        assert s is not None
        if s <= 0:
            raise FieldError(f"shares must be > 0, got {s}")
        return s

    def fee() -> Decimal:
        f = _decimal(row, "fee_usd", required=False)
        if f is None:
            return Decimal(0)
        if f < 0:
            raise FieldError(f"fee_usd must be >= 0, got {f}")
        return f

    (tid, wallet, market, cond, oi, sd, p, s, fee_v, ts, tx, cat), problems = _collect([
        lambda: _text(row, "trade_id", required=True, ident_like=True),
        lambda: _text(row, "wallet_address", required=True, ident_like=True),
        lambda: _text(row, "market_id", required=True, ident_like=True),
        lambda: _text(row, "condition_id", required=True, ident_like=True),
        outcome, side, price, shares, fee,
        lambda: _when(row, "timestamp", required=True),
        lambda: _text(row, "tx_hash", required=False),
        lambda: _text(row, "canonical_category", required=False),
    ])
    usd = None
    try:
        usd = _decimal(row, "usd_value", required=False)
        if usd is not None and usd < 0:
            raise FieldError(f"usd_value must be >= 0, got {usd}")
    except FieldError as exc:
        problems.append(str(exc))
    if p is not None and s is not None:
        product = p * s
        if usd is None:
            usd = product
        elif abs(usd - product) > USD_TOLERANCE:
            problems.append(f"usd_value {usd} is not price x shares ({product})")
    if problems:
        raise FieldError("; ".join(problems))
    return tid, (tid, wallet, market, cond, oi, sd, p, s, usd, fee_v, ts, tx, cat)


MARKET_STAGE_COLUMNS = [
    "market_id", "condition_id", "question", "slug", "event_id", "category", "canonical_category",
    "outcomes", "clob_token_ids", "closed", "end_date", "source",
]


def validate_market(row: dict[str, Any], source: str = "file") -> tuple[str, tuple[Any, ...]]:
    def outcomes() -> list[str]:
        o = _json_list(row, "outcomes")
        if o is None:
            return ["Yes", "No"]
        if len(o) != 2:
            raise FieldError(f"outcomes must list exactly 2 outcomes (binary market), got {len(o)}")
        return o

    (mid, cond, question, slug, event_id, category, canonical, outs, tokens, closed, end), problems = _collect([
        lambda: _text(row, "market_id", required=True, ident_like=True),
        lambda: _text(row, "condition_id", required=True, ident_like=True),
        lambda: _text(row, "question", required=False),
        lambda: _text(row, "slug", required=False),
        lambda: _text(row, "event_id", required=False),
        lambda: _text(row, "category", required=False),
        lambda: _text(row, "canonical_category", required=False),
        outcomes,
        lambda: _json_list(row, "clob_token_ids") or [],
        lambda: _bool(row, "closed"),
        lambda: _when(row, "end_date", required=False),
    ])
    if problems:
        raise FieldError("; ".join(problems))
    canonical = canonical or canonicalize_category(category)
    return mid, (mid, cond, question, slug, event_id, category, canonical, outs, tokens, closed, end, source)


RESOLUTION_STAGE_COLUMNS = ["condition_id", "market_id", "payouts", "resolved_at", "source"]
_OUTCOMES = {"YES": "YES", "NO": "NO", "SPLIT": "SPLIT", "Y": "YES", "N": "NO", "0": "YES", "1": "NO"}


def validate_resolution(row: dict[str, Any], source: str = "file") -> tuple[str, tuple[Any, ...]]:
    """A resolution is valid when its ids are real, its payouts are >= 0 and sum to exactly 1 (the
    clauses of resolution_rule), and a stated outcome agrees with the payouts. A null/unknown outcome
    is rejected, never guessed. Whether the condition is known needs the store: `load_file` checks it
    after staging; Step C only asks about conditions it already knows."""
    problems: list[str] = []
    (cond, market, resolved_at), problems = _collect([
        lambda: _text(row, "condition_id", required=True, ident_like=True),
        lambda: _text(row, "market_id", required=True, ident_like=True),
        lambda: _when(row, "resolved_at", required=True),
    ])
    outcome: str | None = None
    if "resolved_outcome" in row:
        raw = row["resolved_outcome"]
        if raw is None or str(raw).strip() == "":
            problems.append("resolved_outcome is null (unknown outcome)")
        else:
            outcome = _OUTCOMES.get(str(raw).strip().upper())
            if outcome is None:
                problems.append(f"resolved_outcome {raw!r} is not YES, NO or SPLIT")
    payouts: list[Decimal] | None = None
    try:
        if row.get("payouts") is not None:
            items = row["payouts"]
            if isinstance(items, str):
                items = json.loads(items) if len(items) < 1000 else None  # two numbers are short
            if not isinstance(items, (list, tuple)) or len(items) != 2:
                raise FieldError("payouts must be a list [payout_yes, payout_no]")
            payouts = [_decimal({"payout": x}, "payout", required=True) for x in items]  # type: ignore[misc]
            if row.get("payout_yes") is not None or row.get("payout_no") is not None:
                # Both forms given: they must say the same, never one silently winning.
                stated = [_decimal(row, "payout_yes", required=False), _decimal(row, "payout_no", required=False)]
                if any(v is not None and v != p for v, p in zip(stated, payouts, strict=True)):
                    raise FieldError(f"payouts {[str(p) for p in payouts]} contradicts payout_yes/payout_no "
                                     f"{[None if v is None else str(v) for v in stated]}")
        else:
            y = _decimal(row, "payout_yes", required=True)
            n = _decimal(row, "payout_no", required=True)
            payouts = [y, n]  # type: ignore[list-item]
    except (FieldError, json.JSONDecodeError) as exc:
        problems.append(str(exc) if isinstance(exc, FieldError) else "payouts is not a JSON list")
    if payouts is not None:
        problem = payouts_problem(payouts)
        if problem == NEGATIVE_PAYOUT:
            problems.append(f"payouts must be >= 0, got {[str(p) for p in payouts]}")
        elif problem == PAYOUTS_NOT_ONE:
            problems.append(f"payouts must sum to 1, got {' + '.join(str(p) for p in payouts)} = {sum(payouts)}")
        elif problem is not None:
            problems.append(problem)
        elif outcome is not None:
            implied = "YES" if payouts[0] > payouts[1] else "NO" if payouts[1] > payouts[0] else "SPLIT"
            if implied != outcome:
                problems.append(f"resolved_outcome {outcome} contradicts payouts {[str(p) for p in payouts]}")
    if problems:
        raise FieldError("; ".join(problems))
    return cond, (cond, market, payouts, resolved_at, source)


@dataclass(frozen=True)
class KindSpec:
    table: str
    key: str
    stage_columns: list[str]
    validate: Callable[..., tuple[str, tuple[Any, ...]]]
    compare_columns: list[str]  # content compared for dimension upserts


SPECS: dict[str, KindSpec] = {
    "trades": KindSpec("trades_raw", "trade_id", TRADE_STAGE_COLUMNS, validate_trade, []),
    "markets": KindSpec("markets_dim", "market_id", MARKET_STAGE_COLUMNS, validate_market,
                        [c for c in MARKET_STAGE_COLUMNS if c != "source"]),
    "resolutions": KindSpec("market_resolutions", "condition_id", RESOLUTION_STAGE_COLUMNS, validate_resolution,
                            ["condition_id", "market_id", "payouts", "resolved_at"]),
}


# --- staging and the atomic move (engine/enrichment/load_staging.py) -------------------------------
def staging_for(ch: ClickHouse, spec: KindSpec, should_stop: Callable[[], bool] | None = None) -> Staging:
    return Staging(ch, spec.table, spec.key, spec.stage_columns, spec.compare_columns, should_stop)


def known_columns(kind: str) -> set[str]:
    return {c for c, _, _ in COLUMNS[kind]} | ({"payouts"} if kind == "resolutions" else set())  # type: ignore[index]


def unknown_columns_text(kind: str, unknown: list[str]) -> str:
    """`fee (did you mean fee_usd?), x`: each unknown column, with the documented one it resembles."""
    known = sorted(known_columns(kind))
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return ", ".join(parts)


def _refuse_unknown(path: Path, kind: str, unknown: list[str]) -> None:
    raise BadInput(f"{path}: unknown column(s) {unknown_columns_text(kind, unknown)}; refused by --strict, "
                   "nothing was loaded", hint="rename them to the documented columns (`opsconsole data load --help`)")


def _require_columns(path: Path, fmt: str, kind: str, strict: bool) -> tuple[list[str] | None, list[str]]:
    """Refuse a header missing a required column (or, with strict, naming an unknown one); returns
    the header and its unknown columns for a header format (CSV, Parquet)."""
    header = file_columns(path, fmt)
    if header is None:
        return None, []
    present = set(header)
    required = [c for c, req, _ in COLUMNS[kind] if req]  # type: ignore[index]
    if kind == "resolutions" and "payouts" in present:
        required = [c for c in required if c not in ("payout_yes", "payout_no")]
    missing = [c for c in required if c not in present]
    if missing:
        raise BadInput(
            f"{path}: missing required column(s) {', '.join(missing)}; nothing was loaded",
            hint="see `opsconsole data load --help` for the documented columns",
        )
    unknown = [c for c in header if c not in known_columns(kind)]
    if unknown and strict:
        _refuse_unknown(path, kind, unknown)
    return header, unknown


#: Unknown keys of JSON records remembered for the warning (a file of random keys stays bounded).
MAX_UNKNOWN = 50


def load_file(
    ch: ClickHouse,
    kind: str,
    path: Path | str,
    *,
    fmt: str = "auto",
    skip_invalid: bool = False,
    source: str = "file",
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    strict: bool = False,
) -> LoadReport:
    """Validate and load one file. Raises BadInput (nothing written) when the file is refused, and
    LoadStopped (nothing written) when `should_stop()` turned true before the move."""
    if kind not in SPECS:
        raise BadInput(f"unknown data kind {kind!r}: use trades, markets or resolutions")
    path = Path(path)
    open_input(path, "file").close()  # a directory, FIFO or device is named as such, never opened
    fmt = detect_format(path, fmt)
    header, header_unknown = _require_columns(path, fmt, kind, strict)
    ensure_schema(ch)
    spec = SPECS[kind]
    report = LoadReport(kind, str(path), fmt)
    report.keep_all = kind == "resolutions"
    known = known_columns(kind)
    unknown: dict[str, None] = dict.fromkeys(header_unknown)  # ordered set
    all_or_nothing = kind != "resolutions" and not skip_invalid
    pending: list[tuple[Any, ...]] = []
    lines: list[int] = []
    template = ""  # "line {}", "row {}", "resolutions[{}]": how this file's records are named
    wheres: dict[str, tuple[str, dict[str, Any]]] = {}  # resolutions only: key -> (where, raw record)

    with staging_for(ch, spec, should_stop) as staging:

        def judge(rec: Record) -> None:
            """One record: listed with its reasons, or staged (in chunks)."""
            nonlocal pending, lines, template
            if rec.data is None:
                report.add_invalid(RowError(rec.where, rec.error))
                return
            if not header_unknown and len(unknown) < MAX_UNKNOWN:
                for name in rec.data.keys() - known:
                    unknown.setdefault(str(name))
            try:
                if kind == "trades":
                    key, row = validate_trade(rec.data)
                else:
                    key, row = spec.validate(rec.data, source)
            except FieldError as exc:
                report.add_invalid(RowError(rec.where, str(exc), str(rec.data.get(spec.key) or "")))
                return
            if kind == "resolutions":
                if key in wheres:  # a small file: duplicates are found here, in order
                    report.add_invalid(RowError(rec.where, f"duplicate {spec.key} {key!r} (first at {wheres[key][0]})", key))
                    return
                wheres[key] = (rec.where, rec.data)
            template = template or _WHERE_NUMBER.sub("{}", rec.where, count=1)
            report.valid += 1
            # Staged even when the file is refused already: ClickHouse finds the duplicates (and
            # names them) from the staged keys and their lines.
            pending.append(row)
            lines.append(_where_number(rec.where))
            if len(pending) >= CHUNK_ROWS:
                staging.check_stop()
                staging.add(pending, lines)
                pending, lines = [], []
                if progress:
                    progress(report.records)

        fast = None
        if load_sql.usable(ch, kind, fmt, path) and header is not None:
            fast = load_sql.stage_csv(ch, staging, path, header,
                                         lambda line, data, error: judge(Record(f"line {line}", data, error)),
                                         _csv_delimiter(path))
        if fast is not None:  # ClickHouse read the file and staged its plain rows
            report.records, plain = fast
            report.valid += plain
            template = "line {}"
        else:
            for rec in read_records(path, fmt):
                report.records += 1
                if report.records == 1:
                    crash_point("load_reading")
                judge(rec)
        if report.records == 0:
            raise BadInput(f"{path}: no records found; nothing was loaded")
        staging.check_stop()
        staging.add(pending, lines)
        pending, lines = [], []
        if kind != "resolutions":
            _add_duplicates(staging, report, template)
        if report.invalid and all_or_nothing:
            raise BadInput(
                f"{path}: {report.invalid_count} invalid row(s) of {report.records}; the file was refused "
                f"as a whole and nothing was loaded:\n{list_errors(report.invalid, total=report.invalid_count)}",
                hint="fix the rows, or load the valid ones with --skip-invalid",
            )
        report.unknown_columns = list(unknown)
        if strict and unknown:
            _refuse_unknown(path, kind, report.unknown_columns)
        crash_point("load_validated")
        if kind == "resolutions":
            _reject_unknown_conditions(ch, staging, report, wheres)
            _record_rejects(ch, report, wheres, source)
            if report.valid == 0:
                raise BadInput(
                    f"{path}: none of the {report.records} resolution(s) is valid; nothing was loaded:\n"
                    f"{list_errors(report.invalid)}"
                )
        report.skipped_invalid = bool(report.invalid)
        if kind == "trades":
            report.conflicts = staging.conflicts()
        report.inserted = staging.move_new()
        report.unchanged = report.valid - report.inserted
    return report


_WHERE_NUMBER = re.compile(r"[0-9]+")


def _where_number(where: str) -> int:
    m = _WHERE_NUMBER.search(where)
    return int(m.group()) if m else 0


def _add_duplicates(staging: Staging, report: LoadReport, template: str) -> None:
    """Later copies of a key already in the file are invalid (the first stays valid), found by
    ClickHouse over the staged keys; the report keeps its errors in file order."""
    total, rows = staging.duplicates(MAX_KEPT)
    if not total:
        return
    prior = report.invalid_count
    for key, line, first in rows:
        report.invalid.append(RowError(template.format(line), f"duplicate {staging.key} {key!r} "
                                       f"(first at {template.format(first)})", key))
    report.invalid_total = prior + total
    report.invalid.sort(key=lambda e: _where_order(e.where))
    del report.invalid[MAX_KEPT:]
    report.valid -= total


def _reject_unknown_conditions(ch: ClickHouse, staging: Staging, report: LoadReport,
                               wheres: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """A resolution must name a condition we know (trades or markets) and that condition's market."""
    stage = f"$db.{ident(staging.name)}"
    rows = ch.query(
        f"""
        SELECT s.condition_id, s.market_id, k.markets
        FROM {stage} AS s
        LEFT JOIN (
            SELECT condition_id, groupUniqArray(market_id) AS markets FROM (
                SELECT DISTINCT condition_id, market_id FROM $db.trades_raw
                WHERE condition_id IN (SELECT condition_id FROM {stage})
                UNION ALL
                SELECT DISTINCT condition_id, market_id FROM $db.markets_dim FINAL
                WHERE condition_id IN (SELECT condition_id FROM {stage})
            ) GROUP BY condition_id
        ) AS k ON k.condition_id = s.condition_id
        WHERE empty(k.markets) OR NOT has(k.markets, s.market_id)
        """
    ).rows
    bad: list[str] = []
    for cond, market, markets in rows:
        where = wheres.get(cond, ("?", {}))[0]
        if not markets:
            reason = f"unknown condition {cond!r} (not in trades_raw or markets_dim)"
        else:
            reason = f"market_id {market!r} does not match the condition's market {', '.join(sorted(markets))}"
        report.add_invalid(RowError(where, reason, cond))
        bad.append(cond)
    if bad:
        ch.command(f"ALTER TABLE {stage} DELETE WHERE condition_id IN {{bad:Array(String)}}",
                   {"bad": bad}, {"mutations_sync": 2})
        report.valid -= len(bad)
    report.invalid.sort(key=lambda e: _where_order(e.where))


def _where_order(where: str) -> tuple[int, str]:
    digits = "".join(ch for ch in where if ch.isdigit())
    return (int(digits) if digits else 0, where)


def _record_rejects(ch: ClickHouse, report: LoadReport, wheres: dict[str, tuple[str, dict[str, Any]]], source: str) -> None:
    record_rejects(ch, [(e.key, _market_of(e, wheres), e.reason, wheres.get(e.key, ("", {}))[1] or {"where": e.where})
                        for e in report.invalid], source)


def _market_of(e: RowError, wheres: dict[str, tuple[str, dict[str, Any]]]) -> str:
    raw = wheres.get(e.key, ("", {}))[1]
    return str(raw.get("market_id") or "") if raw else ""


def record_rejects(ch: ClickHouse, rejects: list[tuple[str, str, str, dict[str, Any]]], source: str) -> int:
    """Append rejected resolutions (condition, market, reason, raw) unless the same reject is recorded."""
    if not rejects:
        return 0
    rows = [(c or "", m or "", reason, json.dumps(raw, default=str, sort_keys=True), source) for c, m, reason, raw in rejects]
    existing = {
        (r[0], r[1], r[2], r[3])
        for r in ch.query(
            "SELECT condition_id, market_id, reason, raw FROM $db.resolution_rejects "
            "WHERE source = {src:String} AND condition_id IN {ids:Array(String)}",
            {"src": source, "ids": sorted({r[0] for r in rows})},
        ).rows
    }
    new = [r for r in rows if (r[0], r[1], r[2], r[3]) not in existing]
    ch.insert_rows("resolution_rejects", ["condition_id", "market_id", "reason", "raw", "source"], new)
    return len(new)


def upsert_markets(ch: ClickHouse, rows: list[tuple[Any, ...]]) -> int:
    """Upsert validated market rows (MARKET_STAGE_COLUMNS order); returns rows new or changed."""
    if not rows:
        return 0
    with staging_for(ch, SPECS["markets"]) as staging:
        staging.add(rows)
        return staging.move_new()


def upsert_resolutions(ch: ClickHouse, rows: list[tuple[Any, ...]]) -> int:
    """Upsert validated resolution rows (RESOLUTION_STAGE_COLUMNS order); returns rows new or changed."""
    if not rows:
        return 0
    with staging_for(ch, SPECS["resolutions"]) as staging:
        staging.add(rows)
        return staging.move_new()
