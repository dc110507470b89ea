"""The last gates computed on this runtime, kept in `runtime/gates.last.json`.

Every place that computes the gates on the store (a job's closing gates, `opsconsole gates`, the
launcher) records them here, so the launcher can show the latest results before anyone asks for new
ones, and a command whose job ran in another process (the console on a terminal) can print them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.enrichment.gates import compute_gates
from engine.errors import BadInput
from engine.events import GateResult
from engine.files import atomic_write_json, open_regular
from engine.stores.clickhouse import ClickHouse

MAX_BYTES = 1 << 20  # five gates take a few hundred bytes; anything bigger is not ours


def last_gates_path(runtime: Path) -> Path:
    return runtime / "gates.last.json"


def save_last_gates(runtime: Path, gates: list[GateResult], ts: float) -> None:
    atomic_write_json(last_gates_path(runtime), {"ts": ts, "gates": [asdict(g) for g in gates]})


def load_last_gates(runtime: Path, since: float = 0.0) -> tuple[list[GateResult], float] | None:
    """(gates, when computed) when a record at least as recent as `since` exists and is readable."""
    path = last_gates_path(runtime)
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, BadInput):
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_BYTES + 1)
    try:
        data: Any = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_BYTES else None
        ts = float(data["ts"])
        gates = [GateResult(name=str(g["name"]), status=str(g["status"]), actual=g["actual"],
                            expected=str(g["expected"]), detail=str(g.get("detail", ""))) for g in data["gates"]]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return (gates, ts) if ts >= since else None


def compute_and_save(ch: ClickHouse, runtime: Path) -> list[GateResult]:
    """The gates, computed now and recorded as the last ones (blocking: run it in a thread)."""
    gates = compute_gates(ch)
    save_last_gates(runtime, gates, time.time())
    return gates
