"""Loader limits on real chDB: duplicates found by ClickHouse across chunks, a report that keeps
the first 1000 errors but counts all, unknown columns, and one magnitude bound per column type."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.enrichment.load_rules import COLUMN_TYPES, TYPE_LIMITS
from engine.enrichment.loaders import CHUNK_ROWS, MAX_KEPT, load_file
from engine.errors import BadInput
from tests.enrichment.abc_data import TRADE_FIELDS, trade, write_csv


def test_a_duplicate_chunks_apart_is_named_with_both_lines(ch, tmp_path: Path) -> None:
    rows = [trade(i) for i in range(1, CHUNK_ROWS + 50)]
    rows.append(trade(7))  # the same trade_id as line 8, more than a chunk later
    path = write_csv(tmp_path / "t.csv", rows, TRADE_FIELDS)
    with pytest.raises(BadInput) as exc:
        load_file(ch, "trades", path)
    last = len(rows) + 1
    assert f"line {last}: duplicate trade_id 't7' (first at line 8)" in str(exc.value)
    assert "1 invalid row(s)" in str(exc.value)
    report = load_file(ch, "trades", path, skip_invalid=True)
    assert (report.inserted, report.invalid_count) == (len(rows) - 1, 1)
    assert int(ch.scalar("SELECT uniqExact(trade_id) FROM $db.trades_raw")) == int(ch.scalar("SELECT count() FROM $db.trades_raw"))


def test_many_bad_rows_are_counted_but_only_the_first_are_kept(ch, tmp_path: Path) -> None:
    rows = [trade(i, outcome=2 if i % 2 else 0) for i in range(1, 2 * MAX_KEPT + 501)]
    rows += [trade(2), trade(4)]  # and two duplicates of valid rows
    path = write_csv(tmp_path / "t.csv", rows, TRADE_FIELDS)
    report = load_file(ch, "trades", path, skip_invalid=True)
    bad = (2 * MAX_KEPT + 500) // 2 + 2
    assert report.invalid_count == bad
    assert len(report.invalid) == MAX_KEPT
    assert report.as_dict()["invalid"] == bad and len(report.as_dict()["invalid_rows"]) == MAX_KEPT
    assert report.inserted == len(rows) - bad
    assert [e.where for e in report.invalid[:2]] == ["line 2", "line 4"]  # file order


def test_unknown_columns_are_reported_and_refused_with_strict(ch, tmp_path: Path) -> None:
    rows = [{**trade(1), "fee": "0.5"}]
    path = write_csv(tmp_path / "t.csv", rows, [*TRADE_FIELDS, "fee"])
    with pytest.raises(BadInput, match=r"fee \(did you mean fee_usd\?\).*--strict"):
        load_file(ch, "trades", path, strict=True)
    report = load_file(ch, "trades", path)
    assert report.unknown_columns == ["fee"] and report.inserted == 1


@pytest.mark.parametrize("column", ["shares", "fee_usd", "usd_value"])
def test_each_money_column_is_bounded_by_its_type(ch, tmp_path: Path, column: str) -> None:
    places, bound = TYPE_LIMITS[COLUMN_TYPES[column]]
    just_under = bound - Decimal(1).scaleb(-places)
    over = {"shares": {"shares": str(bound), "usd_value": ""}, "fee_usd": {"fee_usd": str(bound)},
            "usd_value": {"usd_value": str(bound)}}[column]
    under = {"shares": {"shares": str(just_under), "price": "0", "usd_value": "0"},
             "fee_usd": {"fee_usd": str(just_under)}, "usd_value": {}}[column]
    path = write_csv(tmp_path / "t.csv", [{**trade(1), **under}, {**trade(2), **over}], TRADE_FIELDS)
    report = load_file(ch, "trades", path, skip_invalid=True)
    assert report.inserted == 1
    assert [e.where for e in report.invalid] == ["line 3"] and "out of range" in report.invalid[0].reason


def test_key_checks_split_into_buckets_give_the_same_reports(ch, tmp_path: Path, monkeypatch) -> None:
    """A file with more staged keys than one set may hold is checked bucket by bucket: duplicates
    (named in file order, with their first copy), conflicts, new rows and reloads come out exactly
    as in one set. SET_KEYS is lowered so that a small file spans seven buckets."""
    from engine.enrichment import load_staging

    monkeypatch.setattr(load_staging, "SET_KEYS", 5)
    rows = [trade(i) for i in range(1, 31)]
    dupes = [trade(3), trade(17), trade(29)]  # lines 32, 33, 34
    path = write_csv(tmp_path / "t.csv", rows + dupes, TRADE_FIELDS)
    with pytest.raises(BadInput) as exc:
        load_file(ch, "trades", path)
    text = str(exc.value)
    assert "3 invalid row(s) of 33" in text
    for line, tid, first in ((32, 3, 4), (33, 17, 18), (34, 29, 30)):
        assert f"line {line}: duplicate trade_id 't{tid}' (first at line {first})" in text
    assert text.index("line 32:") < text.index("line 33:") < text.index("line 34:")

    report = load_file(ch, "trades", path, skip_invalid=True)
    assert (report.inserted, report.invalid_count) == (30, 3)
    more = [trade(i) for i in range(25, 41)]  # 6 already loaded, 10 new
    more[0]["fee_usd"] = "0.5"  # t25 with other values: a conflict, not overwritten
    report = load_file(ch, "trades", write_csv(tmp_path / "t2.csv", more, TRADE_FIELDS))
    assert (report.inserted, report.unchanged, report.conflicts) == (10, 6, 1)
    assert int(ch.scalar("SELECT count() FROM $db.trades_raw")) == 40
    assert int(ch.scalar("SELECT uniqExact(trade_id) FROM $db.trades_raw")) == 40
    assert ch.scalar("SELECT fee_usd FROM $db.trades_raw WHERE trade_id = 't25'") == 0
