"""Polymarket Gamma conventions shared by enrichment Steps A/C and the forecast pipeline.

Gamma sends `outcomes`, `outcomePrices` and `clobTokenIds` as JSON-encoded strings, and a 429 may
carry `Retry-After` as seconds or as an HTTP date. Both clients read them through these helpers so
the two jobs never disagree about what Gamma said.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any


def decode_json_list(value: Any) -> list[Any] | None:
    """A list given either as a list or as its JSON encoding; None when absent or empty.

    Raises ValueError naming what was wrong (callers prefix the field name)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"is not valid JSON: {value[:60]!r}") from None
    if not isinstance(value, list):
        raise ValueError(f"must be a list, got {type(value).__name__}")
    return value


def retry_after_seconds(value: str | None, cap: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), at most `cap`;
    None when absent or unreadable (the caller's own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    seconds = max(0.0, seconds)
    return min(seconds, cap) if cap is not None else seconds
