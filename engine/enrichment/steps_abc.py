"""Enrichment Steps A–C: market dimensions, categories on trades, resolutions.

* Step A — markets that trades reference but `markets_dim` lacks are fetched by condition id from
  Gamma (or an offline snapshot file), plus the runbook's FOCUS_FILE: a list of market (or condition)
  ids to (re)fetch even when present. Rows are keyed by the market id the TRADES use, so gate
  `markets_missing_dim` closes even when Gamma numbers markets differently.
* Step B — `canonical_category` is copied onto every trade by ONE statement driven by a Join-engine
  table filled from `markets_dim` (`joinGet`), not one mutation per market. A Join table rather than a
  DICTIONARY: a dictionary's CLICKHOUSE source would need server credentials in its DDL.
* Step C — resolutions for our closed markets are refreshed from Gamma. A closed market becomes a
  resolution only if its payouts are final, >= 0 and sum to 1; everything else is reported (Failure
  events, `resolution_rejects`) and never written.

When Gamma is unreachable and no snapshot is given, Steps A and C log the problem, emit a Failure and
return: the rest of the job (D, E, gates) can still run, and gate `markets_missing_dim` shows the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from engine.enrichment.gamma import GammaClient, GammaError, GammaMarket, MarketSource, SnapshotSource
from engine.enrichment.loaders import (
    FieldError, record_rejects, upsert_markets, upsert_resolutions, validate_market, validate_resolution,
)
from engine.enrichment.mutations import wait_for_mutations
from engine.enrichment.polymarket_load import is_placeholder, relabel_known, relabel_placeholders
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput
from engine.events import MutationStatus
from engine.runner import JobContext
from engine.stores.clickhouse import ClickHouse, ident

# --- SQL (Steps A–C) ----------------------------------------------------------------------------
MISSING_MARKETS = """
SELECT market_id, any(condition_id) AS condition_id
FROM $db.trades_raw
WHERE market_id != '' AND market_id NOT IN (SELECT market_id FROM $db.markets_dim)
GROUP BY market_id ORDER BY market_id
"""

FOCUS_LOOKUP = """
SELECT market_id, condition_id FROM (
    SELECT DISTINCT market_id, condition_id FROM $db.trades_raw
    WHERE market_id IN {ids:Array(String)} OR condition_id IN {ids:Array(String)}
    UNION DISTINCT
    SELECT market_id, condition_id FROM $db.markets_dim FINAL
    WHERE market_id IN {ids:Array(String)} OR condition_id IN {ids:Array(String)}
) ORDER BY market_id
"""

# Conditions we know about (trades or dims) that have no valid resolution yet; Step C asks Gamma.
UNRESOLVED_CONDITIONS = """
SELECT condition_id, groupUniqArray(market_id) AS markets FROM (
    SELECT DISTINCT condition_id, market_id FROM $db.trades_raw WHERE condition_id != ''
    UNION DISTINCT
    SELECT condition_id, market_id FROM $db.markets_dim FINAL WHERE condition_id != ''
)
WHERE {all:UInt8} = 1 OR condition_id NOT IN (SELECT condition_id FROM $db.market_resolutions)
GROUP BY condition_id ORDER BY condition_id
"""

CATEGORY_JOIN = "_step_b_category_join"
CATEGORY_JOIN_CREATE = f"""
CREATE TABLE $db.{CATEGORY_JOIN} (market_id String, canonical_category String)
ENGINE = Join(ANY, LEFT, market_id)
"""
CATEGORY_JOIN_FILL = f"""
INSERT INTO $db.{CATEGORY_JOIN}
SELECT market_id, argMax(canonical_category, updated_at) FROM $db.markets_dim
GROUP BY market_id
"""


def _category_expr(database: str) -> str:
    # joinGet takes the table as a constant 'db.table' string; the database name is a validated identifier.
    ident(database)
    return f"joinGet('{database}.{CATEGORY_JOIN}', 'canonical_category', market_id)"


async def _t(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


# --- sources ----------------------------------------------------------------------------------------
@dataclass
class SourceChoice:
    source: MarketSource | None
    reason: str = ""  # why there is no source


def choose_source(ctx: JobContext, *, snapshot: Path | str | None, offline: bool,
                  source: MarketSource | None = None) -> SourceChoice:
    if source is not None:
        return SourceChoice(source)
    if snapshot:
        return SourceChoice(SnapshotSource(Path(snapshot)))
    if offline:
        return SourceChoice(None, "offline and no Gamma snapshot given (--snapshot FILE)")
    return SourceChoice(GammaClient(ctx.settings.polymarket_base_url, max_attempts=4))


async def _close(source: MarketSource | None, owned: bool) -> None:
    if owned and source is not None and hasattr(source, "aclose"):
        await source.aclose()


def read_focus_file(path: Path | str) -> list[str]:
    """One market id (or condition id) per line; blank lines and `#` comments ignored."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"FOCUS_FILE {p} does not exist or is not a file")
    ids = []
    for line in p.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(text)
    if not ids:
        raise BadInput(f"FOCUS_FILE {p} lists no market ids")
    return list(dict.fromkeys(ids))


# --- Step A -----------------------------------------------------------------------------------------
@dataclass
class StepAResult:
    missing: int = 0
    focus: int = 0
    requested: int = 0
    written: int = 0
    not_found: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    error: str = ""


def market_row(m: GammaMarket, market_id: str, source: str) -> tuple[Any, ...]:
    from engine.enrichment.categories import canonicalize_category

    record = {
        "market_id": market_id, "condition_id": m.condition_id, "question": m.question, "slug": m.slug,
        "event_id": m.event_id, "category": m.raw_category, "canonical_category": canonicalize_category(m.raw_category),
        "outcomes": m.outcomes or None, "clob_token_ids": m.clob_token_ids, "closed": m.closed,
        "end_date": m.end_date or None,
    }
    return validate_market(record, source)[1]


async def run_step_a(
    ctx: JobContext,
    ch: ClickHouse,
    *,
    snapshot: Path | str | None = None,
    focus_file: Path | str | None = None,
    offline: bool = False,
    source: MarketSource | None = None,
) -> StepAResult:
    """Fetch markets missing from markets_dim (and those in FOCUS_FILE) and upsert them."""
    result = StepAResult()
    await _t(ensure_schema, ch)
    if relabelled := await _t(relabel_known, ch):  # Polymarket trades loaded before their market (polymarket_load)
        ctx.log(f"{relabelled} condition(s): trades got the market id markets_dim holds", step="A")
    focus_file = focus_file or ctx.settings.focus_file  # --focus-file first, then FOCUS_FILE
    targets: dict[str, set[str]] = {}  # condition_id -> market ids used by our trades/dims
    for market_id, condition_id in (await ch.aquery(MISSING_MARKETS)).rows:
        targets.setdefault(condition_id, set()).add(market_id)
    result.missing = sum(len(v) for v in targets.values())
    if focus_file:
        ids = read_focus_file(focus_file)
        found = (await ch.aquery(FOCUS_LOOKUP, {"ids": ids})).rows
        known = {m for m, _ in found} | {c for _, c in found}
        for market_id, condition_id in found:
            targets.setdefault(condition_id, set()).add(market_id)
        result.focus = len(ids)
        for unknown in (i for i in ids if i not in known):
            ctx.failure(unknown, f"FOCUS_FILE entry {unknown!r} is neither a market id nor a condition id in "
                        "trades_raw/markets_dim", retriable=False, step="A")
        ctx.log(f"FOCUS_FILE {focus_file}: {len(ids)} id(s), {len(found)} market(s) to (re)fetch", step="A")
    result.requested = len(targets)
    ctx.progress("A", 0, len(targets), unit="markets")
    if not targets:
        ctx.log("no markets missing from markets_dim; nothing to fetch", step="A")
        return result

    owned = source is None
    choice = choose_source(ctx, snapshot=snapshot, offline=offline, source=source)
    if choice.source is None:
        result.error = choice.reason
        ctx.log(f"Step A skipped: {choice.reason}; {len(targets)} market(s) stay missing", level="WARNING", step="A")
        ctx.failure("step A", f"{len(targets)} market(s) not fetched: {choice.reason}", retriable=True, step="A")
        return result
    result.source = choice.source.description
    ctx.log(f"fetching {len(targets)} market(s) by condition id from {result.source}", step="A")
    try:
        report = await choice.source.markets_by_condition_ids(sorted(targets))
    except GammaError as exc:
        result.error = str(exc)
        ctx.log(f"Step A could not fetch markets: {exc}", level="ERROR", step="A")
        ctx.failure("gamma", f"{len(targets)} market(s) not fetched: {exc}", retriable=True, step="A")
        return result
    finally:
        await _close(choice.source, owned)

    for where, reason in report.malformed:
        result.rejected.append((where, reason))
        ctx.failure(where, f"malformed Gamma market: {reason}", retriable=False, step="A")
    kind = "snapshot" if isinstance(choice.source, SnapshotSource) else "gamma"
    rows: list[tuple[Any, ...]] = []
    got: set[str] = set()
    relabel: dict[str, str] = {}  # condition id -> Gamma market id, for trades loaded with a placeholder
    for m in report.markets:
        if m.condition_id not in targets:
            continue
        got.add(m.condition_id)
        for market_id in sorted(targets[m.condition_id]):
            if is_placeholder(market_id, m.condition_id) and m.id:
                market_id = relabel[m.condition_id] = m.id
            try:
                rows.append(market_row(m, market_id, kind))
            except FieldError as exc:
                result.rejected.append((market_id, str(exc)))
                ctx.failure(market_id, f"Gamma market unusable: {exc}", retriable=False, step="A")
    for condition_id in sorted(set(targets) - got):
        for market_id in sorted(targets[condition_id]):
            result.not_found.append(market_id)
            ctx.failure(market_id, f"condition {condition_id} not found in {result.source}", retriable=True, step="A")
    result.written = await _t(upsert_markets, ch, rows)
    if relabel:
        await _t(relabel_placeholders, ch, relabel)
        ctx.log(f"{len(relabel)} condition(s): trades loaded before their market now carry its market id", step="A")
    ctx.progress("A", len(got), len(targets), unit="markets", written=result.written, not_found=len(result.not_found))
    ctx.log(f"markets_dim: {result.written} row(s) new or changed, {len(result.not_found)} not found, "
            f"{len(result.rejected)} rejected", step="A")
    return result


# --- Step B -----------------------------------------------------------------------------------------
@dataclass
class StepBResult:
    rows_to_update: int = 0
    statements: int = 0
    categories: int = 0


async def run_step_b(ctx: JobContext, ch: ClickHouse, *, mutation_timeout_s: float | None = None) -> StepBResult:
    """Denormalize markets_dim.canonical_category onto trades_raw with ONE UPDATE statement."""
    result = StepBResult()
    await _t(ensure_schema, ch)
    expr = _category_expr(ch.database)
    await ch.acommand(f"DROP TABLE IF EXISTS $db.{CATEGORY_JOIN}")
    await ch.acommand(CATEGORY_JOIN_CREATE)
    try:
        await ch.acommand(CATEGORY_JOIN_FILL)
        result.categories = int(await ch.ascalar(f"SELECT uniqExact(canonical_category) FROM $db.{CATEGORY_JOIN}") or 0)
        # Only rows whose category differs: a rerun with unchanged dims issues no mutation at all.
        where = f"canonical_category != {expr}"
        # joinGet reads a table that changes between runs: ClickHouse's query condition cache (keyed by
        # the filter text) would otherwise remember "no rows match" from the previous run.
        no_cache = {"use_query_condition_cache": 0}
        result.rows_to_update = int((await ch.aquery(f"SELECT count() FROM $db.trades_raw WHERE {where}",
                                                     settings=no_cache)).scalar() or 0)
        ctx.progress("B", 0, result.rows_to_update, unit="trades")
        if result.rows_to_update == 0:
            ctx.log("canonical_category already up to date on every trade", step="B")
            return result
        ctx.log(f"setting canonical_category on {result.rows_to_update:,} trade(s) in one statement", step="B")
        await ch.acommand(f"ALTER TABLE $db.trades_raw UPDATE canonical_category = {expr} WHERE {where}",
                          settings=no_cache)
        result.statements = 1

        def status(pending: list[Any]) -> None:
            ctx.emit(MutationStatus(job=ctx.name, pending=len(pending), details=tuple(pending)))

        # On a server the mutation runs in the background: wait (bounded, failing on its error text)
        # before dropping the Join table it reads.
        await wait_for_mutations(ch, tables=["trades_raw"], on_status=status,
                                 timeout_s=mutation_timeout_s or ctx.settings.mutation_wait_timeout_s, poll_s=0.5)
        ctx.progress("B", result.rows_to_update, result.rows_to_update, unit="trades")
    finally:
        await ch.acommand(f"DROP TABLE IF EXISTS $db.{CATEGORY_JOIN}")
    return result


# --- Step C -----------------------------------------------------------------------------------------
@dataclass
class StepCResult:
    candidates: int = 0
    closed: int = 0
    written: int = 0
    still_open: int = 0
    not_found: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    error: str = ""


FINAL_PAYOUTS = {Decimal(0), Decimal("0.5"), Decimal(1)}


def resolution_from_market(m: GammaMarket, market_id: str, source: str) -> tuple[Any, ...]:
    """Turn a closed Gamma market into a resolution row, or raise FieldError saying why not."""
    if len(m.outcomes) != 2 or len(m.outcome_prices) != 2:
        raise FieldError(f"not a binary market (outcomes {m.outcomes}, outcomePrices {[str(p) for p in m.outcome_prices]})")
    if m.uma_resolution_status and m.uma_resolution_status.lower() not in ("resolved", "settled"):
        raise FieldError(f"closed but not resolved yet (umaResolutionStatus {m.uma_resolution_status!r})")
    yes, no = m.outcome_prices
    if yes not in FINAL_PAYOUTS or no not in FINAL_PAYOUTS:
        raise FieldError(f"outcomePrices {[str(yes), str(no)]} are not final payouts (0, 0.5 or 1)")
    resolved_at = m.closed_time or m.end_date or None
    record = {"condition_id": m.condition_id, "market_id": market_id, "payout_yes": yes, "payout_no": no,
              "resolved_at": _gamma_time(resolved_at)}
    return validate_resolution(record, source)[1]


def _gamma_time(text: str | None) -> str | None:
    # Gamma writes closedTime as "2025-02-01 00:00:00+00"; Python wants "+00:00".
    if not text:
        return None
    t = text.strip()
    if len(t) >= 3 and t[-3] in "+-" and t[-2:].isdigit():
        t += ":00"
    return t


async def run_step_c(
    ctx: JobContext,
    ch: ClickHouse,
    *,
    snapshot: Path | str | None = None,
    offline: bool = False,
    refresh_all: bool = False,
    source: MarketSource | None = None,
) -> StepCResult:
    """Refresh resolutions of our closed markets from Gamma; reject and report the invalid ones."""
    result = StepCResult()
    await _t(ensure_schema, ch)
    rows = (await ch.aquery(UNRESOLVED_CONDITIONS, {"all": int(refresh_all)})).rows
    targets = {str(c): sorted(str(m) for m in markets) for c, markets in rows}
    result.candidates = len(targets)
    ctx.progress("C", 0, len(targets), unit="conditions")
    if not targets:
        ctx.log("every known condition already has a resolution; nothing to refresh", step="C")
        return result
    owned = source is None
    choice = choose_source(ctx, snapshot=snapshot, offline=offline, source=source)
    if choice.source is None:
        result.error = choice.reason
        ctx.log(f"Step C skipped: {choice.reason}; {len(targets)} condition(s) not refreshed", level="WARNING", step="C")
        ctx.failure("step C", f"{len(targets)} resolution(s) not refreshed: {choice.reason}", retriable=True, step="C")
        return result
    result.source = choice.source.description
    ctx.log(f"asking {result.source} for {len(targets)} condition(s) without a resolution", step="C")
    try:
        report = await choice.source.markets_by_condition_ids(sorted(targets))
    except GammaError as exc:
        result.error = str(exc)
        ctx.log(f"Step C could not fetch resolutions: {exc}", level="ERROR", step="C")
        ctx.failure("gamma", f"{len(targets)} resolution(s) not refreshed: {exc}", retriable=True, step="C")
        return result
    finally:
        await _close(choice.source, owned)

    kind = "snapshot" if isinstance(choice.source, SnapshotSource) else "gamma"
    good: list[tuple[Any, ...]] = []
    rejects: list[tuple[str, str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for where, reason in report.malformed:
        result.rejected.append((where, reason))
        ctx.failure(where, f"malformed Gamma market: {reason}", retriable=False, step="C")
        rejects.append((where if where.startswith("0x") else "", "", f"malformed Gamma market: {reason}", {"where": where}))
    for m in report.markets:
        if m.condition_id not in targets or m.condition_id in seen:
            continue
        seen.add(m.condition_id)
        if not m.closed:
            result.still_open += 1
            continue
        result.closed += 1
        for market_id in targets[m.condition_id]:
            try:
                good.append(resolution_from_market(m, market_id, kind))
                break  # one resolution per condition; every market id of it shares the payouts
            except FieldError as exc:
                reason = str(exc)
                result.rejected.append((m.condition_id, reason))
                ctx.failure(m.condition_id, f"resolution rejected: {reason}", retriable="not final" in reason
                            or "not resolved yet" in reason, step="C")
                rejects.append((m.condition_id, market_id, reason, m.model_dump(mode="json", by_alias=True)))
                break
    result.not_found = len(set(targets) - seen)
    result.written = await _t(upsert_resolutions, ch, good)
    await _t(record_rejects, ch, rejects, kind)
    ctx.progress("C", len(seen), len(targets), unit="conditions", written=result.written, rejected=len(result.rejected))
    ctx.log(f"market_resolutions: {result.written} new or changed; {len(result.rejected)} rejected; "
            f"{result.still_open} still open; {result.not_found} not found", step="C")
    return result
