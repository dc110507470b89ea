"""Step T: trades from Polymarket's public data-api into `trades_raw`, resumable and incremental.

Scopes: the condition ids in `markets_dim` by default, or `--condition ID…`, or the markets of
`--event-slug S` (from Gamma), optionally narrowed to `--wallet W` (a wallet alone walks that
wallet's trades in every market).

Per scope, a *walk* pages `/trades` newest first (`takerOnly=false`: every side of every fill, which
value conservation needs) and ends at an empty page, at a page equal to the previous one (the API's
answer past its offset cap), at a 400 past the cap, or at the first page reaching trades older than
the scope's cursor. Every page goes through `polymarket_load` (the same conversion and loader as
`data load trades --format polymarket`): duplicates dropped, trade ids deterministic, ids already in
`trades_raw` skipped, malformed rows reported and skipped.

The checkpoint (`runtime/step-t.state.json`, replaced atomically after every page) says, per scope,
`newest_ts` (the newest trade of the last complete walk: a rerun loads only trades at or after it)
and the unfinished `walk` (offset reached, newest timestamp seen, fingerprint of the last page). It
is written after the page's rows are in trades_raw (and `walked_at`, when a complete walk started:
closed markets walked a day after their end are skipped), so it never claims more than is loaded; a crash
between the two re-fetches one page, whose rows are then already present and skipped. New trades
arriving during a walk only push rows to later offsets: a resumed walk may see a row twice (skipped),
never miss one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine.data_api import MAX_LIMIT, OFFSET_CAP, DataApiClient, DataApiError, OffsetCapReached
from engine.enrichment.polymarket_format import ADDRESS, HASH64
from engine.enrichment.polymarket_load import PolymarketReport, load_records
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput
from engine.files import atomic_write_json
from engine.runner import JobContext
from engine.stores.clickhouse import ClickHouse

STATE_FILE = "step-t.state.json"
STATE_VERSION = 1
SCOPES_IN_MARKETS_DIM = "SELECT DISTINCT condition_id FROM $db.markets_dim WHERE condition_id != '' ORDER BY condition_id"
# Closed markets and when they ended: once a complete walk ran a day after the end, no trade can be new.
CLOSED_MARKETS = """
SELECT condition_id, toUnixTimestamp(max(end_date)) FROM $db.markets_dim FINAL
WHERE closed = 1 AND end_date IS NOT NULL AND condition_id IN {ids:Array(String)}
GROUP BY condition_id
"""
SETTLED_AFTER_S = 86_400


@dataclass
class StepTResult:
    status: str = "done"  # done | stopped | failed
    scopes: int = 0
    scopes_done: int = 0
    pages: int = 0
    rows_fetched: int = 0
    rows_older_than_cursor: int = 0  # fetched on the page that reached known history, not loaded
    inserted: int = 0
    already_loaded: int = 0  # trade ids present before (resume overlap, the cursor's own second)
    duplicates: int = 0  # exact duplicates within a page
    activity: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    rounded: int = 0
    truncated: list[str] = field(default_factory=list)  # scopes whose history goes past the offset cap
    skipped_closed: int = 0  # closed markets walked completely a day or more after they ended
    requests: int = 0
    error: str = ""


@dataclass(frozen=True)
class Scope:
    market: str | None
    user: str | None

    @property
    def key(self) -> str:
        return "|".join(p for p in (f"market:{self.market}" if self.market else "", f"user:{self.user}" if self.user else "") if p)


def state_path(runtime: Path) -> Path:
    return runtime / STATE_FILE


def read_state(path: Path) -> dict[str, Any]:
    """The checkpoint, or an empty one; a damaged file is bad input naming it (never silently reset:
    that would refetch everything and hide the damage)."""
    if not path.exists():
        return {"version": STATE_VERSION, "scopes": {}}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc}); move it away to start Step T from scratch") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scopes"), dict):
        raise BadInput(f"{path}: must be a JSON object with a \"scopes\" object; move it away to start over")
    for key, st in doc["scopes"].items():
        if not isinstance(st, dict):
            raise BadInput(f"{path}: scope {key!r} must be an object")
        newest = st.get("newest_ts")
        walk = st.get("walk")
        if newest is not None and (not isinstance(newest, int) or newest < 0):
            raise BadInput(f"{path}: scope {key!r}: newest_ts must be a non-negative integer, got {newest!r}")
        if walk is not None and (not isinstance(walk, dict) or not isinstance(walk.get("offset"), int)
                                 or not 0 <= walk["offset"] <= OFFSET_CAP + MAX_LIMIT):
            raise BadInput(f"{path}: scope {key!r}: walk.offset must be an integer 0..{OFFSET_CAP + MAX_LIMIT}")
    return doc


def _ts(row: Any) -> int | None:
    if not isinstance(row, dict):
        return None
    try:
        v = float(row.get("timestamp"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(v / 1000) if v > 1e11 else int(v)


def _fingerprint(page: list[Any]) -> str:
    return hashlib.sha256(json.dumps(page, sort_keys=True, default=str).encode()).hexdigest()[:32]


async def resolve_scopes(ctx: JobContext, ch: ClickHouse, client: DataApiClient, *, conditions: list[str] | None,
                         event_slug: str | None, wallet: str | None) -> list[Scope]:
    user = wallet.strip().lower() if wallet else None
    conds: list[str] = [c.strip().lower() for c in conditions or [] if c.strip()]
    # Refused here, before any request: the data-api would answer a malformed id with a 400.
    if user is not None and not ADDRESS.match(user):
        raise BadInput(f"--wallet {wallet!r} is not a wallet address (0x + 40 hex digits)")
    for c in conds:
        if not HASH64.match(c):
            raise BadInput(f"--condition {c!r} is not a condition id (0x + 64 hex digits)")
    if event_slug:
        conds += await client.event_condition_ids(ctx.settings.polymarket_base_url, event_slug)
    if not conds and user is None:
        conds = [str(r[0]).lower() for r in (await ch.aquery(SCOPES_IN_MARKETS_DIM)).rows]
    conds = list(dict.fromkeys(conds))
    if not conds:
        return [Scope(None, user)] if user else []
    return [Scope(c, user) for c in conds]


async def run_step_t(
    ctx: JobContext,
    ch: ClickHouse,
    *,
    conditions: list[str] | None = None,
    event_slug: str | None = None,
    wallet: str | None = None,
    client: DataApiClient | None = None,
) -> StepTResult:
    result = StepTResult()
    owned = client is None
    api = client or DataApiClient(ctx.settings.data_api_base_url, on_retry=lambda msg: ctx.log(msg, "WARNING", "T"))
    path = state_path(ctx.settings.runtime)
    state = read_state(path)
    await anyio.to_thread.run_sync(ensure_schema, ch)
    activity: Counter[str] = Counter()
    try:
        try:
            scopes = await resolve_scopes(ctx, ch, api, conditions=conditions, event_slug=event_slug, wallet=wallet)
        except DataApiError as exc:
            result.status, result.error = "failed", str(exc)
            ctx.failure("data-api", f"Step T could not list its markets: {exc}", retriable=True, step="T")
            return result
        result.scopes = len(scopes)
        ctx.progress("T", 0, len(scopes), unit="markets")
        if not scopes:
            ctx.log("no markets to fetch trades for (markets_dim is empty; pass --condition, --event-slug or --wallet)",
                    level="WARNING", step="T")
            return result
        ctx.log(f"fetching trades of {len(scopes)} scope(s) from {api.description} (takerOnly=false: both sides "
                "of every fill)", step="T")
        closed = await _closed(ch, scopes)
        for scope in scopes:
            if _settled(state["scopes"].get(scope.key), closed.get(scope.market or "")):
                result.skipped_closed += 1
                result.scopes_done += 1
                continue
            stopped = await _walk(ctx, ch, api, scope, state, path, result, activity)
            if stopped:
                result.status = "stopped"
                ctx.log(f"Step T stopped; checkpoint {path} resumes at {scope.key}", step="T")
                return result
            result.scopes_done += 1
            ctx.progress("T", result.scopes_done, len(scopes), unit="markets", inserted=result.inserted)
    except DataApiError as exc:
        result.status, result.error = "failed", str(exc)
        ctx.log(f"Step T: {exc}", level="ERROR", step="T")
        ctx.failure("data-api", str(exc), retriable=True, step="T")
    finally:
        result.activity = dict(sorted(activity.items()))
        result.requests = api.requests
        if owned:
            await api.aclose()
    ctx.log(f"Step T: {result.inserted} new trade(s) from {result.pages} page(s) of {result.scopes_done}/{result.scopes} "
            f"scope(s); {result.already_loaded} already loaded, {result.duplicates} duplicate(s) dropped, "
            f"{result.invalid} malformed row(s) skipped, {result.rounded} rounded to 6 decimals, activity skipped "
            f"{result.activity or 'none'}" + (f"; {len(result.truncated)} scope(s) deeper than the API's offset cap"
                                              if result.truncated else ""), step="T")
    return result


async def _closed(ch: ClickHouse, scopes: list[Scope]) -> dict[str, int]:
    ids = sorted({s.market for s in scopes if s.market})
    if not ids:
        return {}
    return {str(c): int(t) for c, t in (await ch.aquery(CLOSED_MARKETS, {"ids": ids})).rows}


def _settled(st: dict[str, Any] | None, ended_at: int | None) -> bool:
    """A closed market whose last complete walk started a day after it ended has nothing new."""
    if not st or st.get("walk") is not None or ended_at is None:
        return False
    walked = st.get("walked_at")
    return isinstance(walked, int) and walked >= ended_at + SETTLED_AFTER_S


async def _walk(ctx: JobContext, ch: ClickHouse, api: DataApiClient, scope: Scope, state: dict[str, Any], path: Path,
                result: StepTResult, activity: Counter[str]) -> bool:
    """Page one scope to its end; True when the Control said stop (checkpoint saved)."""
    scopes: dict[str, Any] = state["scopes"]
    st = scopes.get(scope.key) or {}
    newest: int | None = st.get("newest_ts")
    walk: dict[str, Any] = st.get("walk") or {"offset": 0, "top_ts": newest, "last_page": "",
                                              "started_at": int(time.time())}
    truncated = False
    if walk["offset"]:
        ctx.log(f"{scope.key}: resuming at offset {walk['offset']}", step="T")
    while True:
        if not await ctx.control.boundary():
            return True
        offset = int(walk["offset"])
        if offset > OFFSET_CAP:
            truncated = True
            break
        try:
            page = await api.trades(market=[scope.market] if scope.market else (), user=scope.user, limit=MAX_LIMIT,
                                    offset=offset, taker_only=False)
        except OffsetCapReached:
            truncated = True
            break
        if not page:
            break
        fp = _fingerprint(page)
        if fp == walk.get("last_page"):  # past the offset cap the API repeats its last page
            truncated = True
            break
        result.pages += 1
        result.rows_fetched += len(page)
        stamps = [t for t in map(_ts, page) if t is not None]
        fresh = [(i, r) for i, r in enumerate(page) if newest is None or (_ts(r) or newest) >= newest]
        result.rows_older_than_cursor += len(page) - len(fresh)
        if fresh:
            report = await _load(ctx, ch, scope, offset, fresh)
            _count(result, report, activity)
        # Advance by the DISTINCT rows: a row the API sent twice took one place in its order, so
        # counting both would skip the next page's first row. Too small an advance only re-reads.
        distinct = len({json.dumps(r, sort_keys=True, default=str) for r in page})
        walk = {"offset": offset + distinct, "top_ts": max([walk.get("top_ts") or 0, *stamps]) or None,
                "last_page": fp, "started_at": walk.get("started_at")}
        scopes[scope.key] = {"newest_ts": newest, "walk": walk}
        await anyio.to_thread.run_sync(atomic_write_json, path, state)
        ctx.progress("T", result.scopes_done, result.scopes, unit="markets", scope=scope.key, offset=walk["offset"],
                     inserted=result.inserted)
        if newest is not None and any(t < newest for t in stamps):
            break  # this page reached trades the last complete walk already loaded
    if truncated:
        result.truncated.append(scope.key)
        ctx.log(f"{scope.key}: more trades than the data-api pages (offset cap {OFFSET_CAP:,}); older trades are "
                "not reachable through /trades", level="WARNING", step="T")
    top = walk.get("top_ts")
    scopes[scope.key] = {"newest_ts": max(t for t in (newest, top) if t is not None) if (newest or top) else None,
                         "walk": None, "walked_at": walk.get("started_at"), **({"truncated": True} if truncated else {})}
    await anyio.to_thread.run_sync(atomic_write_json, path, state)
    return False


async def _load(ctx: JobContext, ch: ClickHouse, scope: Scope, offset: int, rows: list[tuple[int, Any]]) -> PolymarketReport:
    def records() -> Any:
        for i, r in rows:
            where = f"{scope.key} offset {offset + i}"
            yield (where, r, "") if isinstance(r, dict) else (where, None, "not a JSON object")

    report = await anyio.to_thread.run_sync(
        lambda: load_records(ch, records(), runtime=ctx.settings.runtime, label=f"data-api {scope.key}",
                             skip_invalid=True, source="data-api"))
    for err in report.conversion.invalid:
        ctx.failure(err.where, f"malformed data-api row skipped: {err.reason}", retriable=False, step="T")
    return report


def _count(result: StepTResult, report: PolymarketReport, activity: Counter[str]) -> None:
    conv = report.conversion
    result.duplicates += conv.duplicates
    result.invalid += len(conv.invalid)
    result.rounded += conv.rounded
    activity.update(conv.activity)
    if report.load is not None:
        result.inserted += report.load.inserted
        result.already_loaded += report.load.unchanged
