"""The wording of every event, in one place: the log file, headless output and the console's log
panes all say the same thing about the same event.

`event_text` gives the parts of a line (tag, step, text, level rank); each renderer adds only its
own framing around them: the log file and plain output a full timestamp and the job's name, the
console a wall-clock time and its colours. The text is already redacted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.events import (
    CheckpointSaved,
    Event,
    Failure,
    GatesReported,
    LogLine,
    MutationStatus,
    Progress,
    StateChanged,
    Summary,
)
from engine.redact import redact

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_RANK = {name: i for i, name in enumerate(LEVELS)}
DEBUG, INFO, WARNING, ERROR = range(4)


def level_rank(level: str) -> int:
    """0 DEBUG … 3 ERROR; unknown levels count as INFO."""
    rank = _RANK.get(level)
    return rank if rank is not None else _RANK.get(level.upper(), INFO)


@dataclass(frozen=True)
class EventText:
    tag: str  # INFO, WARNING, …, STATE, FAILURE, CHECKPT, PROGRESS, GATES, SUMMARY
    text: str  # the wording, redacted
    rank: int = INFO  # level rank for filtering (0 DEBUG … 3 ERROR)
    step: str = ""  # the step a log or progress line belongs to; renderers place it


def _json(value: Any, limit: int | None, **kw: Any) -> str:
    text = json.dumps(value, default=str, **kw)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def event_text(event: Event, *, json_limit: int | None = None) -> EventText | None:
    """The parts of the line for `event`; None for events that are not worth a line of text.

    `json_limit` cuts long payloads (a cursor, a summary) with "…" for a screen; files keep them whole.
    """
    if isinstance(event, LogLine):
        return EventText(event.level.upper(), redact(event.message), level_rank(event.level), event.step)
    if isinstance(event, StateChanged):
        reason = f" — {event.reason}" if event.reason else ""
        return EventText("STATE", redact(f"{event.state.value}{reason}"))
    if isinstance(event, Failure):
        kind = "retriable" if event.retriable else "permanent"
        return EventText("FAILURE", redact(f"{event.where}: {event.reason} ({kind})"), ERROR)
    if isinstance(event, CheckpointSaved):
        # DEBUG: one per unit of work would drown a view of the latest lines.
        pairs = f" pairs {event.pairs_done}" if event.pairs_done else ""
        # Compact JSON: the cursor is a position, read at a glance (and copied into a query).
        cursor = _json(event.cursor, json_limit, separators=(",", ":"))
        return EventText("CHECKPT", redact(f"{event.step} {event.where} batch {event.batch_idx}{pairs} cursor {cursor}"),
                         DEBUG)
    if isinstance(event, Progress):
        total = f"/{event.total}" if event.total is not None else ""
        return EventText("PROGRESS", redact(f"{event.done}{total} {event.unit}"), DEBUG, event.step)
    if isinstance(event, GatesReported):
        return EventText("GATES", redact(" ".join(f"{g.name}={g.actual}:{g.status}" for g in event.gates)))
    if isinstance(event, MutationStatus):
        return EventText("DEBUG", f"mutations pending {event.pending}", DEBUG)
    if isinstance(event, Summary):
        # Sorted keys: the same run gives the same line, which is what a diff of two logs wants.
        return EventText("SUMMARY", redact(_json(event.data, json_limit, sort_keys=True)))
    return None
