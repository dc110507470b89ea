"""Ingestion for one run: fetch (Gamma or a snapshot) -> normalize -> group by event.

Used by the single runner, and by the one `--worker` that holds the run's ingestion lease.
"""

from __future__ import annotations

from typing import Any

import anyio

from engine.pipeline.gamma import FetchResult, GammaClient, load_snapshot
from engine.pipeline.normalize import EventGroup, NormalizationError, group_by_event, normalize_market
from engine.pipeline.run_state import RunState


async def ingest(state: RunState) -> list[EventGroup]:
    """The run's event groups; rejects and normalization failures are recorded, not raised."""
    ctx, opts, settings, stats = state.ctx, state.config.options, state.ctx.settings, state.stats
    window = state.window
    if opts.source is not None:
        source = opts.source
        fetched: FetchResult = await anyio.to_thread.run_sync(lambda: load_snapshot(source, window, opts.limit))
        ctx.log(f"read {fetched.seen} market(s) from {opts.source}")
    else:
        assert window is not None  # options.window() always gives one without --source
        client = GammaClient(
            settings.polymarket_base_url, page_size=settings.ingestion_page_size, filters=settings.ingestion_filters,
            timeout_s=opts.gamma_timeout_s, attempts=opts.gamma_attempts, backoff_base_s=opts.gamma_backoff_s,
            on_retry=lambda msg: ctx.log(msg, level="WARNING", step="ingest"),
        )
        desc = state.window_desc
        ctx.log(f"fetching markets from {settings.polymarket_base_url}/markets closing "
                f"{desc['start']} .. {desc['end']} (UTC)", step="ingest")
        fetched = await client.fetch(window, opts.limit, should_stop=lambda: ctx.control.stop_requested)
        ctx.log(f"fetched {fetched.seen} market(s) in {fetched.pages} page(s), {fetched.requests} request(s)", step="ingest")
    stats.markets_seen, stats.duplicates, stats.requests = fetched.seen, fetched.duplicates, fetched.requests
    if fetched.duplicates:
        ctx.log(f"dropped {fetched.duplicates} duplicate market(s) repeated across pages", level="WARNING", step="ingest")
    failures: list[dict[str, Any]] = []
    for _raw, reason in fetched.rejects:
        # No id: upstream data we cannot key; retrying will not give it one.
        state.record_failure(None, reason, False, None, None, "ingest", failures)
    markets = []
    for raw in fetched.markets:
        try:
            markets.append(normalize_market(raw))
        except NormalizationError as exc:
            state.record_failure(str(raw.get("id")), f"normalization failed: {exc}", True, None, None, "normalize", failures)
    stats.markets_valid = len(markets)
    stats.markets_invalid = len(fetched.rejects) + (len(fetched.markets) - len(markets))
    if state.repo is not None:
        await state.repo.save_failures(failures)
    groups = group_by_event(markets)
    stats.events_total = len(groups)
    ctx.log(f"{len(markets)} valid market(s) in {len(groups)} event(s)")
    return groups
