"""The ClickHouse fast path of trades CSV loads gives exactly what the Python reader gives: the same
rows stored, the same records counted, the same bad lines named with the same reasons — on a file
made of every awkward shape the SQL must either accept identically or hand to `validate_trade`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.enrichment import load_sql
from engine.enrichment.loaders import load_file
from tests.durability.load_procs import HEADER

ROWS = [
    "p1,0xw1,m1,0xc1,0,BUY,0.5,10,5,0,2025-01-01 00:00:00,0xh1",            # plain
    "p2,0xw1,m1,0xc1,1,sell,0.25,4,,,2025-01-01T00:00:00Z,",                # lower side, computed usd, no fee
    "p3,0xw2,m2,0xc2,1.0,BUY,1,3,3.000000,0.001,1735689600,0xh3",           # unix seconds
    "p4,0xw2,m2,0xc2,0.0,BUY,0.000001,999999999999.999999,,0,1735689600123,0xh4",  # ms, bounds
    "p5,0xw3,m3,0xc3,0,BUY,1e-1,1E1,1,0,2025-01-01 00:00:00+00:00,0xh5",    # exponents: Python decides
    "p6,0xw3,m3,0xc3,0,BUY,.5,+2,1,0,2025-01-01,0xh6",                      # odd but valid shapes
    "p7,0xw3,m3,0xc3,0,BUY,0.5000000,2,1,0,2025-01-01 05:30:00+05:30,0xh7", # trailing zeros, offset
    "p8,0xw3,m3,0xc3,0,BUY,0.5,2,1.5,0,2025-02-30 00:00:00,0xh8",           # no such day, usd off
    "p9,0xw3,m3,0xc3,2,HOLD,1.5,0,-1,-1,1999-12-31 23:59:59,0xh9",          # many faults at once
    "unknown,0xw3,N/A,0xc3,0,BUY,0.5,2,1,0,2025-01-01 00:00:00,0xh10",      # placeholders
    "p11,\u00a00xw3,m3,0xc3,0,BUY,0.5,2,1,0,2025-01-01 00:00:00,0xh11",     # NBSP: Python strips it
    'p12,0xw3,m3,0xc3,0,"  BUY ",0.5,2,1,0,2025-01-01 00:00:00," 0xh12"',  # quoted spaces
    "p13,0xw3,m3,0xc3,0,BUY,0.5,2,1,0,2025-01-01 00:00:00,0xh13,surplus",   # a cell too many
    "p14,0xw3,m3,0xc3,0,BUY,0.5",                                           # cells missing
    "",                                                                     # a blank line
    "p1,0xw1,m1,0xc1,0,BUY,0.5,10,5,0,2025-01-01 00:00:00,0xh1",            # duplicate of line 2
    "p16,0xw4,m4,0xc4,1,BUY,0.5,2,1,99999999999999.999999999999,17356896000,0xh16",  # fee at bound, year 2520
    "p17,0xw4,m4,0xc4,1,BUY,0.5,2,1,100000000000000,1735689600.5,0xh17",    # fee over bound, fractional unix
    "p18,0xw4,m4,0xc4,1,BUY,０.５,1_000,1,0,2025-01-01 00:00:00,0xh18",       # non-ASCII digits
    "p19,ωallet,m4,0xc4,1,BUY,0.5,2,1,0,2025-01-01 00:00:00,0xh19",          # non-ASCII id: valid
]


def _stored(ch) -> list[tuple]:
    return ch.query("SELECT * FROM $db.trades_raw ORDER BY trade_id").rows


@pytest.mark.parametrize("skip_invalid", [True])
def test_fast_path_equals_the_python_reader(ch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip_invalid: bool) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    with monkeypatch.context() as m:
        m.setattr(load_sql, "usable", lambda *a: False)
        slow = load_file(ch, "trades", path, skip_invalid=skip_invalid)
    slow_rows = _stored(ch)
    ch.command("TRUNCATE TABLE $db.trades_raw")
    calls: list[object] = []
    real = load_sql.stage_csv
    monkeypatch.setattr(load_sql, "stage_csv", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = load_file(ch, "trades", path, skip_invalid=skip_invalid)
    assert calls, "the fast path was not taken"
    assert _stored(ch) == slow_rows
    assert (fast.records, fast.valid, fast.inserted, fast.invalid_count) == (
        slow.records, slow.valid, slow.inserted, slow.invalid_count)
    assert [(e.where, e.reason) for e in fast.invalid] == [(e.where, e.reason) for e in slow.invalid]
    assert fast.inserted >= 8 and fast.invalid_count >= 8  # the file really has both kinds


def test_a_line_break_in_a_cell_goes_through_the_python_reader(ch, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + ROWS[0] + "\n" + 'p2,0xw1,m1,0xc1,0,BUY,0.5,10,5,0,2025-01-01 00:00:00,"0x\nh2"\n'
                    + "p3,0xw1,m1,0xc1,0,HOLD,0.5,10,5,0,2025-01-01 00:00:00,0xh3\n")
    report = load_file(ch, "trades", path, skip_invalid=True)
    assert report.inserted == 2
    assert [e.where for e in report.invalid] == ["line 5"]  # a physical line, as the csv module counts


def test_relative_and_glob_like_names_read_only_the_named_file(ch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """file() resolves relative paths elsewhere and expands `{a,b}`/`*`: neither may change what is read."""
    (tmp_path / "t1.csv").write_text(HEADER + ROWS[0] + "\n")
    (tmp_path / "t2.csv").write_text(HEADER + ROWS[1] + "\n")
    (tmp_path / "t{1,2}.csv").write_text(HEADER + ROWS[2] + "\n")
    monkeypatch.chdir(tmp_path)
    assert load_file(ch, "trades", "t1.csv").inserted == 1
    glob = load_file(ch, "trades", "t{1,2}.csv")
    assert (glob.records, glob.inserted) == (1, 1)
    assert sorted(r[0] for r in ch.query("SELECT trade_id FROM $db.trades_raw").rows) == ["p1", "p3"]
