"""runtime/gates.last.json: the latest gates computed on this runtime, read back safely."""

from __future__ import annotations

from pathlib import Path

from engine.enrichment.gates_record import last_gates_path, load_last_gates, save_last_gates
from engine.events import GateResult
from engine.last_result import MAX_BYTES

GATES = [GateResult(name="pnl_nulls", status="PASS", actual=0, expected="0"),
         GateResult(name="bad_markets", status="FAIL", actual=2, expected="0", detail="m1, m2")]


def test_round_trip_and_since(tmp_path: Path) -> None:
    save_last_gates(tmp_path, GATES, 1000.0)
    assert load_last_gates(tmp_path) == (GATES, 1000.0)
    assert load_last_gates(tmp_path, since=1000.0) == (GATES, 1000.0)
    assert load_last_gates(tmp_path, since=1000.5) is None  # older than the run that asks


def test_what_is_not_a_record_is_ignored(tmp_path: Path) -> None:
    path = last_gates_path(tmp_path)
    assert load_last_gates(tmp_path) is None  # none yet
    for junk in (b"not json", b'{"ts": 1}', b'{"ts": "x", "gates": []}', b"\xff\xfe", b"[" * 100_000):
        path.write_bytes(junk)
        assert load_last_gates(tmp_path) is None, junk
    path.write_bytes(b" " * (MAX_BYTES + 1))  # never read past the cap
    assert load_last_gates(tmp_path) is None
    path.unlink()
    path.symlink_to("/dev/zero")  # never followed
    assert load_last_gates(tmp_path) is None
