"""The last gates computed on this runtime, kept in `runtime/gates.last.json` (engine/last_result.py).

Every place that computes the gates on the store (a job's closing gates, `opsconsole gates`, the
launcher) records them here, so the launcher can show the latest results before anyone asks for new
ones, and a command whose job ran in another process (the console on a terminal) can print them.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from engine.enrichment.gates import compute_gates
from engine.events import GateResult
from engine.last_result import last_path, load_last, save_last
from engine.stores.clickhouse import ClickHouse

NAME = "gates"


def last_gates_path(runtime: Path) -> Path:
    return last_path(runtime, NAME)


def save_last_gates(runtime: Path, gates: list[GateResult], ts: float) -> None:
    save_last(runtime, NAME, {"ts": ts, "gates": [asdict(g) for g in gates]})


def load_last_gates(runtime: Path, since: float = 0.0) -> tuple[list[GateResult], float] | None:
    """(gates, when computed) when a record at least as recent as `since` exists and is readable."""
    data = load_last(runtime, NAME)
    if data is None:
        return None
    try:
        ts = float(data["ts"])
        gates = [GateResult(name=str(g["name"]), status=str(g["status"]), actual=g["actual"],
                            expected=str(g["expected"]), detail=str(g.get("detail", ""))) for g in data["gates"]]
    except (ValueError, TypeError, KeyError):
        return None
    return (gates, ts) if ts >= since else None


def compute_and_save(ch: ClickHouse, runtime: Path) -> list[GateResult]:
    """The gates, computed now and recorded as the last ones (blocking: run it in a thread)."""
    gates = compute_gates(ch)
    save_last_gates(runtime, gates, time.time())
    return gates
