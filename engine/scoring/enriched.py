"""Resolutions the enrichment already holds: `market_resolutions` (Step C, or `data load
resolutions`) is asked first, and only the markets it does not know go to Gamma or the snapshot.

Every row there passed the one validity rule (`resolution_rule`) when it was written; the read
applies the same predicate again, so a row written before a rule change cannot slip through.
The store is optional for scoring: when it does not exist, or the embedded chDB is held by a
running job, the job says so and asks Gamma for everything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone

from engine.enrichment.resolution_rule import valid_resolution_sql
from engine.errors import LockHeld, StoreUnavailable
from engine.scoring.resolution import Resolution
from engine.settings import Settings
from engine.stores.clickhouse import ChdbClickHouse, ClickHouseError, aopen_clickhouse

SOURCE = "enrichment"

_READ = f"""
SELECT market_id, toFloat64(payouts[1]) AS yes, toFloat64(payouts[2]) AS no, resolved_at
FROM $db.market_resolutions FINAL
WHERE {valid_resolution_sql()}
"""


@dataclass
class Enriched:
    by_market: dict[str, Resolution] = field(default_factory=dict)
    note: str = ""  # why nothing was read, when nothing was


async def enrichment_resolutions(settings: Settings, market_ids: Collection[str]) -> Enriched:
    if not market_ids:
        return Enriched()
    if settings.clickhouse_embedded and not settings.clickhouse_dir.exists():
        return Enriched(note="no enrichment store yet")
    # An embedded store opened only for this read is released right after it, so an enrichment job
    # started while the scores are computed is not refused.
    release = settings.clickhouse_embedded and not ChdbClickHouse.is_open(settings.clickhouse_dir)
    try:
        ch = await aopen_clickhouse(settings)
    except (LockHeld, StoreUnavailable) as exc:
        return Enriched(note=f"enrichment store not available: {exc}")
    try:
        rows = (await ch.aquery(_READ)).rows
    except ClickHouseError as exc:
        return Enriched(note=f"market_resolutions not readable: {exc}")
    finally:
        ch.close()
        if release:
            ChdbClickHouse.close_all()
    wanted = set(market_ids)
    found = {mid: Resolution(mid, yes, no, _utc(at), "", SOURCE) for mid, yes, no, at in rows if mid in wanted}
    return Enriched(found)


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at
