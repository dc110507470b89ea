"""`data load`: validation, all-or-nothing per file, --skip-invalid, resolutions partial-accept,
idempotent reloads, the old map format, Parquet — on real chDB (and the server backend)."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from engine.enrichment.loaders import load_file
from engine.enrichment.schema import ensure_schema
from engine.errors import BadInput
from tests.conftest import OPSCONSOLE, subprocess_env
from tests.enrichment.abc_data import TRADE_FIELDS, cond, seed_market, seed_trades, trade, write_csv, write_jsonl


def count(ch, table: str, final: bool = False) -> int:
    return int(ch.scalar(f"SELECT count() FROM $db.{table}{' FINAL' if final else ''}"))


def good_trades(n: int = 4) -> list[dict]:
    return [trade(i, side="BUY" if i % 2 else "SELL") for i in range(1, n + 1)]


def test_trades_csv_loads_and_reload_does_not_duplicate(ch, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "trades.csv", good_trades(), TRADE_FIELDS)
    first = load_file(ch, "trades", path)
    assert (first.records, first.inserted, first.invalid_count) == (4, 4, 0)
    second = load_file(ch, "trades", path)
    assert (second.inserted, second.unchanged) == (0, 4)
    assert count(ch, "trades_raw") == 4
    row = ch.query("SELECT price, shares, usd_value, side, realized_pnl_usd, is_resolved, toString(timestamp) "
                   "FROM $db.trades_raw WHERE trade_id = 't1'").rows[0]
    assert row[:6] == (Decimal("0.4"), Decimal("10"), Decimal("4"), "BUY", None, 0)
    assert row[6] == "2025-01-02 12:00:00"
    changed = good_trades()
    changed[0]["fee_usd"] = "0.5"  # same id, different values: reported, not overwritten
    report = load_file(ch, "trades", write_csv(tmp_path / "t2.csv", changed, TRADE_FIELDS))
    assert (report.inserted, report.conflicts) == (0, 1)
    assert ch.scalar("SELECT fee_usd FROM $db.trades_raw WHERE trade_id = 't1'") == 0


def test_bad_trades_file_is_refused_whole_with_line_numbers(ch, tmp_path: Path) -> None:
    rows = good_trades(6)
    rows[1]["price"] = "1.5"                      # line 3
    rows[3]["side"] = "HOLD"                      # line 5
    rows[3]["shares"] = "0"                       # same row, second reason
    rows[4]["usd_value"] = "99"                   # line 6: not price x shares
    path = write_csv(tmp_path / "trades.csv", rows, TRADE_FIELDS)
    with pytest.raises(BadInput) as exc:
        load_file(ch, "trades", path)
    text = str(exc.value)
    assert "3 invalid row(s) of 6" in text and "nothing was loaded" in text
    assert "line 3: price 1.5 is outside [0, 1]" in text
    assert "line 5: side must be BUY or SELL" in text and "shares must be > 0" in text
    assert "line 6: usd_value 99 is not price x shares" in text
    assert count(ch, "trades_raw") == 0
    # no staging table is left behind
    assert ch.scalar("SELECT count() FROM system.tables WHERE database = {d:String} AND name LIKE '\\_load%'",
                     {"d": ch.database}) == 0


def test_listing_is_capped_but_count_is_complete(ch, tmp_path: Path) -> None:
    rows = [trade(i, outcome=2) for i in range(1, 31)]
    path = write_csv(tmp_path / "t.csv", rows, TRADE_FIELDS)
    with pytest.raises(BadInput) as exc:
        load_file(ch, "trades", path)
    assert "30 invalid row(s) of 30" in str(exc.value) and "… and 10 more" in str(exc.value)


def test_skip_invalid_loads_the_rest_and_reports(ch, tmp_path: Path) -> None:
    rows = good_trades(5)
    rows[2]["timestamp"] = "yesterday"
    rows[4]["trade_id"] = "t1"  # duplicate inside the file
    path = write_jsonl(tmp_path / "trades.jsonl", rows)
    report = load_file(ch, "trades", path, skip_invalid=True)
    assert report.inserted == 3
    assert [(e.where, e.reason.split(" (")[0]) for e in report.invalid] == [
        ("line 3", "timestamp is not a timestamp"), ("line 5", "duplicate trade_id 't1'"),
    ]
    assert count(ch, "trades_raw") == 3


def test_missing_required_column_is_named(ch, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", good_trades(), [f for f in TRADE_FIELDS if f != "condition_id"])
    with pytest.raises(BadInput, match="missing required column\\(s\\) condition_id"):
        load_file(ch, "trades", path)


def test_placeholder_ids_and_bad_json_lines(ch, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(trade(1, market_id="unknown")) + "\n{not json\n" + json.dumps(trade(2)) + "\n")
    with pytest.raises(BadInput) as exc:
        load_file(ch, "trades", path)
    assert "line 1: market_id is a placeholder ('unknown')" in str(exc.value)
    assert "line 2: not valid JSON" in str(exc.value)


def test_parquet_trades(ch, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = good_trades(3)
    rows[2]["fee_usd"] = "-1"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    with pytest.raises(BadInput, match="row 3: fee_usd must be >= 0"):
        load_file(ch, "trades", tmp_path / "t.parquet")
    assert load_file(ch, "trades", tmp_path / "t.parquet", skip_invalid=True).inserted == 2


def test_markets_upsert_is_idempotent_and_updates_changes(ch, tmp_path: Path) -> None:
    rows = [{"market_id": "m1", "condition_id": cond(1), "question": "Q1", "category": "US-current-affairs"},
            {"market_id": "m2", "condition_id": cond(2), "question": "Q2", "category": "NBA",
             "outcomes": '["Yes","No"]', "closed": "true"}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    assert load_file(ch, "markets", path).inserted == 2
    assert load_file(ch, "markets", path).inserted == 0
    assert count(ch, "markets_dim") == 2  # physically, not just with FINAL
    rows[0]["category"] = "Crypto"
    assert load_file(ch, "markets", write_jsonl(tmp_path / "m2.jsonl", rows)).inserted == 1
    cats = dict(ch.query("SELECT market_id, canonical_category FROM $db.markets_dim FINAL").rows)
    assert cats == {"m1": "Crypto", "m2": "Sports"}


def _resolution(n: int, **over) -> dict:
    r = {"condition_id": cond(n), "market_id": f"m{n}", "resolved_outcome": "YES", "payout_yes": 1,
         "payout_no": 0, "resolved_at": "2025-02-01T00:00:00Z"}
    r.update(over)
    return r


def _known_markets(ch, *ns: int) -> None:
    for n in ns:
        seed_market(ch, n)


def test_resolutions_map_format_partial_accept(ch, tmp_path: Path) -> None:
    _known_markets(ch, 1, 2, 3, 4, 5, 6)
    doc = {"resolutions": [
        _resolution(1),
        _resolution(2, resolved_outcome=None),                          # unknown outcome
        _resolution(3, payout_yes=0.6, payout_no=0.6),                  # sum != 1
        _resolution(4, market_id="unknown"),                           # placeholder
        _resolution(5, resolved_outcome="NO", payout_yes=0, payout_no=1),
        _resolution(6, resolved_outcome="NO"),                          # contradicts payouts
        _resolution(99, market_id="m99"),                               # unknown condition
        _resolution(1, market_id="m1"),                                 # duplicate
    ]}
    path = tmp_path / "resolutions.json"
    path.write_text(json.dumps(doc))
    report = load_file(ch, "resolutions", path)
    assert report.inserted == 2
    reasons = {e.where: e.reason for e in report.invalid}
    assert reasons["resolutions[1]"] == "resolved_outcome is null (unknown outcome)"
    assert "payouts must sum to 1" in reasons["resolutions[2]"]
    assert reasons["resolutions[3]"] == "market_id is a placeholder ('unknown')"
    assert "contradicts payouts" in reasons["resolutions[5]"]
    assert "unknown condition" in reasons["resolutions[6]"]
    assert "duplicate condition_id" in reasons["resolutions[7]"]
    got = dict(ch.query("SELECT market_id, resolved_outcome FROM $db.market_resolutions FINAL").rows)
    assert got == {"m1": "YES", "m5": "NO"}
    assert count(ch, "resolution_rejects") == 6
    again = load_file(ch, "resolutions", path)   # reload: no duplicate rows, no duplicate rejects
    assert again.inserted == 0 and count(ch, "market_resolutions") == 2 and count(ch, "resolution_rejects") == 6


def test_every_bad_resolution_is_rejected_with_its_reason(ch, tmp_path: Path) -> None:
    """Each placeholder spelling of resolution_rule (as written, and in other case) and each broken
    payout is rejected and recorded; only the good rows load."""
    from engine.enrichment.resolution_rule import PLACEHOLDER_IDS

    _known_markets(ch, 1, 2, 3, 4, 5)
    spellings = sorted(PLACEHOLDER_IDS) + ["NaN", "UNDEFINED", " N/A "]
    bad_ids = [_resolution(1, condition_id=p) for p in spellings]
    negative = _resolution(3, payout_yes="1.2", payout_no="-0.2")
    short = _resolution(4, payout_yes="0.333333", payout_no="0.666666")
    for r in (negative, short):
        del r["resolved_outcome"]  # optional: the payouts alone must reject these
    doc = [*bad_ids, _resolution(2, market_id="undefined"), negative, short,
           _resolution(5, resolved_outcome="SPLIT", payout_yes="0.5", payout_no="0.5")]
    path = tmp_path / "resolutions.json"
    path.write_text(json.dumps(doc))
    report = load_file(ch, "resolutions", path)
    reasons = {e.where: e.reason for e in report.invalid}
    n = len(spellings)
    for i, p in enumerate(spellings):
        assert reasons[f"item[{i}]"] == f"condition_id is a placeholder ({p.strip()!r})"
    assert reasons[f"item[{n}]"] == "market_id is a placeholder ('undefined')"
    assert reasons[f"item[{n + 1}]"] == "payouts must be >= 0, got ['1.2', '-0.2']"
    assert reasons[f"item[{n + 2}]"] == "payouts must sum to 1, got 0.333333 + 0.666666 = 0.999999"
    assert len(report.invalid) == n + 3 and report.inserted == 1
    got = ch.query("SELECT condition_id, resolved_outcome FROM $db.market_resolutions FINAL").rows
    assert got == [(cond(5), "SPLIT")]
    assert count(ch, "resolution_rejects") == n + 3


def test_resolutions_none_valid_is_refused(ch, tmp_path: Path) -> None:
    _known_markets(ch, 1)
    path = write_csv(tmp_path / "r.csv", [_resolution(1, payout_yes=-1, payout_no=2)])
    with pytest.raises(BadInput, match="none of the 1 resolution"):
        load_file(ch, "resolutions", path)
    assert count(ch, "market_resolutions") == 0


def test_cli_exit_codes(tmp_path: Path) -> None:
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), CLICKHOUSE_PATH=str(tmp_path / "ch"),
                         POSTGRES_URL="postgresql://unused@127.0.0.1:1/x")
    trades = write_csv(tmp_path / "t.csv", good_trades(2), TRADE_FIELDS)
    ok = subprocess.run([*OPSCONSOLE, "data", "load", "trades", str(trades)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "inserted 2" in ok.stdout
    mkts = write_csv(tmp_path / "m.csv", [{"market_id": "m1", "condition_id": cond(1)}])
    subprocess.run([*OPSCONSOLE, "data", "load", "markets", str(mkts)], env=env, check=True, capture_output=True)
    res = write_csv(tmp_path / "r.csv", [_resolution(1), _resolution(1, condition_id="unknown")])
    part = subprocess.run([*OPSCONSOLE, "data", "load", "resolutions", str(res)], env=env, capture_output=True, text=True)
    assert part.returncode == 0, part.stderr
    assert "line 3: condition_id is a placeholder" in part.stdout
    bad = write_csv(tmp_path / "bad.csv", [trade(9, price="2")], TRADE_FIELDS)
    refused = subprocess.run([*OPSCONSOLE, "data", "load", "trades", str(bad)], env=env, capture_output=True, text=True)
    assert refused.returncode == 4
    assert "line 2: price 2 is outside [0, 1]" in refused.stderr and "Traceback" not in refused.stderr
    helptext = subprocess.run([*OPSCONSOLE, "data", "load", "--help"], env=env, capture_output=True, text=True).stdout
    assert "payout_yes" in helptext and "outcome_index" in helptext


def test_same_loader_on_the_server_backend(ch_backend, tmp_path: Path) -> None:
    ensure_schema(ch_backend)
    path = write_csv(tmp_path / "trades.csv", good_trades(3), TRADE_FIELDS)
    assert load_file(ch_backend, "trades", path).inserted == 3
    assert load_file(ch_backend, "trades", path).inserted == 0
    seed_trades(ch_backend, [trade(50)])
    assert int(ch_backend.scalar("SELECT count() FROM $db.trades_raw")) == 4
