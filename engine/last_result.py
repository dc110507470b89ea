"""What a job's last run produced, kept in `runtime/<name>.last.json`.

A job started from a terminal runs in its own process with the console attached, so the command
that started it no longer holds the job object when the console closes. Jobs record their closing
result here (the scoring summary, the pipeline summary, the gates) and the command prints it from
the record; the launcher shows the latest ones. Reads are bounded and never follow a symlink.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.errors import OpsError
from engine.files import atomic_write_json, open_regular

MAX_BYTES = 16 << 20  # a pipeline summary with thousands of failures is well under this


def last_path(runtime: Path, name: str) -> Path:
    return runtime / f"{name}.last.json"


def save_last(runtime: Path, name: str, data: dict[str, Any]) -> None:
    atomic_write_json(last_path(runtime, name), data)


def load_last(runtime: Path, name: str, since: float = 0.0) -> dict[str, Any] | None:
    """The record when it exists, is a JSON object, and was written at or after `since` (Unix time)."""
    path = last_path(runtime, name)
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, OpsError):  # absent, a symlink, not a regular file: no record
        return None
    with os.fdopen(fd, "rb") as fh:
        if os.fstat(fh.fileno()).st_mtime < since - 1:  # mtime granularity: a second of slack
            return None
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
