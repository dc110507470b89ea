"""Data-api exports (CSV, JSON, JSON lines) load through the one loader, then Steps A–E and the
gates run on them, and the P&L equals the hand computation in polymarket_world."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.enrichment.gates import compute_gates
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.polymarket_format import Activity, CanonicalTrade, RowRefused, classify, looks_like_polymarket
from engine.enrichment.polymarket_load import is_polymarket_file, load_polymarket_file
from engine.errors import BadInput
from engine.events import JobState
from tests.enrichment.conftest import run_enrichment
from tests.enrichment.polymarket_world import (
    BIO, EXPECTED_PNL, FILLS, M1, M3, MARKETS, addr, export_rows, gamma_snapshot, matches, write_export,
)
from tests.support.data_api_server import activity, row


# --- the pure mapping ----------------------------------------------------------------------------
def test_a_trade_row_maps_to_a_canonical_fill() -> None:
    r = matches()[3].taker  # erin BUY YES 20 @ 0.999, sent as 0.998999995999005
    assert r["price"] == 0.998999995999005
    t = classify(r)
    assert isinstance(t, CanonicalTrade)
    assert (t.price, t.shares, t.side, t.outcome_index, t.timestamp) == (Decimal("0.999000"), Decimal(20), "BUY", 0, r["timestamp"])
    assert t.rounded  # the float noise was rounded away, and counted
    assert t.wallet_address == addr("erin") and t.wallet_address != r["proxyWallet"]  # checksummed case lowered
    assert t.tx_hash == r["transactionHash"].lower()
    # the id is a function of the canonical values: the exact tick and the noisy float agree
    assert classify({**r, "price": "0.999"}).trade_id == t.trade_id  # type: ignore[union-attr]
    assert classify({**r, "size": 20.5}).trade_id != t.trade_id  # type: ignore[union-attr]


def test_fills_of_one_transaction_get_distinct_ids() -> None:
    ids = {classify(r).trade_id for r in matches()[0].rows}  # type: ignore[union-attr]
    assert len(ids) == 3


def test_activity_rows_are_classified_by_type() -> None:
    for kind in ("REWARD", "REDEEM", "MAKER_REBATE", "TAKER_REBATE", "SPLIT", "MERGE", "CONVERSION"):
        a = classify(activity(kind, "bob", 1_735_689_600, Decimal(3), "x"))
        assert isinstance(a, Activity) and a.type == kind and a.usdc == 3


@pytest.mark.parametrize("change, reason", [
    ({"type": "TRADE", "outcomeIndex": 999}, "half trade, half activity"),
    ({"conditionId": ""}, "half trade, half activity"),
    ({"type": "REDEEM"}, "half trade, half activity: type REDEEM"),
    ({"outcomeIndex": 2}, "outcomeIndex must be 0 or 1"),
    ({"price": 1.2}, "outside [0, 1]"),
    ({"size": 0.0000001}, "size must be > 0 after rounding"),
    ({"proxyWallet": "alice"}, "proxyWallet is not an address"),
    ({"transactionHash": None}, "transactionHash is missing"),
    ({"timestamp": "yesterday"}, "timestamp is not a number"),
    ({"side": "HOLD"}, "side must be BUY or SELL"),
    ({"type": "AIRDROP"}, "not TRADE or a known activity type"),
])
def test_bad_rows_are_refused_with_the_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(RowRefused, match=reason.replace("[", r"\[").replace("]", r"\]")):
        classify({**matches()[0].taker, **change})


def test_an_untyped_activity_row_is_refused() -> None:
    a = activity("REWARD", "bob", 1_735_689_600, Decimal(1), "x")
    del a["type"]
    with pytest.raises(RowRefused, match="without a `type`"):
        classify(a)


def test_detection_by_header() -> None:
    assert looks_like_polymarket(export_rows()[0])
    assert not looks_like_polymarket(["trade_id", "wallet_address", "market_id", "condition_id"])


# --- loading -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["export.csv", "export.json", "export.jsonl"])
def test_an_export_loads_with_duplicates_dropped_and_activity_counted(settings, ch, tmp_path: Path, name: str) -> None:
    path = write_export(tmp_path / name)
    assert is_polymarket_file(path)
    report = load_polymarket_file(ch, path, runtime=settings.runtime)
    conv = report.conversion
    assert (conv.records, conv.trades, conv.duplicates) == (FILLS + 1 + 4, FILLS, 1)
    assert dict(conv.activity) == {"REDEEM": 1, "SPLIT": 1, "REWARD": 1, "MAKER_REBATE": 1}
    # every fill priced above 0.5 carries float noise (data_api_server.noisy): 0.6 ×2, 0.7 ×2, 0.999 ×2
    assert conv.rounded == 6
    assert conv.placeholders == FILLS  # markets_dim is empty: market_id = condition id until Step A
    assert report.load is not None and report.load.inserted == FILLS
    assert not list((settings.runtime / "spool").iterdir())  # the spool file is gone
    bio_text = {r[0] for r in ch.query("SELECT DISTINCT market_id FROM $db.trades_raw").rows}
    assert bio_text == {m.condition_id for m in MARKETS}


def test_trade_ids_are_stable_across_reloads_and_formats(settings, ch, tmp_path: Path) -> None:
    first = load_polymarket_file(ch, write_export(tmp_path / "a.csv"), runtime=settings.runtime)
    ids = {r[0] for r in ch.query("SELECT trade_id FROM $db.trades_raw").rows}
    for name in ("a.csv", "b.json", "c.jsonl"):
        again = load_polymarket_file(ch, write_export(tmp_path / name), runtime=settings.runtime)
        assert again.load is not None and (again.load.inserted, again.load.unchanged, again.load.conflicts) == (0, FILLS, 0)
    assert first.load is not None and first.load.inserted == FILLS
    assert {r[0] for r in ch.query("SELECT trade_id FROM $db.trades_raw").rows} == ids
    assert int(ch.scalar("SELECT count() FROM $db.trades_raw")) == FILLS


def test_a_bad_row_refuses_the_file_naming_its_line(settings, ch, tmp_path: Path) -> None:
    rows = export_rows()
    bad = next(i for i, r in enumerate(rows) if "type" not in r and r["bio"])  # alice's fill with the multi-line bio
    rows[bad] = {**rows[bad], "outcomeIndex": 999}
    path = write_export(tmp_path / "bad.csv", rows)
    with pytest.raises(BadInput) as exc:
        load_polymarket_file(ch, path, runtime=settings.runtime)
    text = str(exc.value)
    # the header is line 1; a bio with a newline makes a row span two lines, so count physical lines
    physical = path.read_text(encoding="utf-8").splitlines()
    line = next(i for i, t in enumerate(physical, 1) if t.startswith(f"{M1.condition_id},999,"))
    assert physical[line].startswith("second line")  # the record goes on: the bio's newline
    assert f"line {line}: half trade, half activity" in text and "nothing was loaded" in text
    assert int(ch.scalar("SELECT count() FROM $db.trades_raw")) == 0
    report = load_polymarket_file(ch, path, runtime=settings.runtime, skip_invalid=True)
    # the bad row is skipped; its fill still arrives through the repeated copy of the row
    assert report.load is not None and report.load.inserted == FILLS and report.load.invalid_count == 1
    assert report.conversion.duplicates == 0


def test_text_fields_with_commas_quotes_emoji_and_newlines_survive(settings, ch, tmp_path: Path) -> None:
    path = write_export(tmp_path / "bio.csv")
    assert BIO in path.read_text(encoding="utf-8").replace('""', '"')
    report = load_polymarket_file(ch, path, runtime=settings.runtime)
    assert report.conversion.invalid == [] and report.conversion.trades == FILLS


# --- Steps A–E and the gates on an export --------------------------------------------------------
def _enrich(settings, ch, tmp_path: Path):
    snapshot = gamma_snapshot(tmp_path / "gamma.json")
    job = EnrichmentJob(["A", "B", "C", "D", "E"], remote_checkpoints=False, abc_options={"snapshot": snapshot})
    outcome, rec = run_enrichment(job, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    return {g.name: g for g in compute_gates(ch)}


def test_steps_a_to_e_on_an_export_give_the_hand_computed_pnl(settings, ch, tmp_path: Path) -> None:
    load_polymarket_file(ch, write_export(tmp_path / "export.csv"), runtime=settings.runtime)
    gates = _enrich(settings, ch, tmp_path)
    # Step A replaced the placeholders with Gamma's market ids
    got_ids = dict(ch.query("SELECT DISTINCT condition_id, market_id FROM $db.trades_raw").rows)
    assert got_ids == {m.condition_id: m.gamma_id for m in MARKETS}
    pnl = {(w, c): Decimal(str(p)) for w, c, p in ch.query(
        "SELECT wallet_address, condition_id, sum(realized_pnl_usd) FROM $db.trades_raw GROUP BY 1, 2").rows}
    assert pnl == {(addr(w), m.condition_id): v for (w, m), v in EXPECTED_PNL.items()}
    outcomes = {(w, c): Decimal(str(p)) for w, c, p in ch.query(
        "SELECT wallet_address, condition_id, realized_pnl_usd FROM $db.wallet_resolution_outcomes").rows}
    assert outcomes == {(addr(w), m.condition_id): v for (w, m), v in EXPECTED_PNL.items()}
    assert {n: g.status for n, g in gates.items()} == {n: "PASS" for n in gates}, [g for g in gates.values() if g.status != "PASS"]
    # a reload after Step A finds markets_dim: no placeholders, nothing new
    again = load_polymarket_file(ch, write_export(tmp_path / "again.json"), runtime=settings.runtime)
    assert again.conversion.placeholders == 0 and again.load is not None and again.load.inserted == 0


def test_gate_5_warns_on_one_sided_data_and_checks_nothing_it_cannot(settings, ch, tmp_path: Path) -> None:
    """A takerOnly=true export: only the taker row of every match. P&L cannot conserve; the gate
    must say which markets it could not check, not FAIL."""
    takers = [mt.taker for mt in matches()]
    load_polymarket_file(ch, write_export(tmp_path / "takers.csv", takers), runtime=settings.runtime)
    gates = _enrich(settings, ch, tmp_path)
    g = gates["bad_markets"]
    assert (g.status, g.actual) == ("WARN", 0)
    assert "3 resolved market(s) not checked: one-sided fills (4 transaction(s)" in g.detail
    assert "0 of 0 resolved markets with complete fills" in g.expected


def test_gate_5_checks_the_complete_markets_and_reports_the_others(settings, ch, tmp_path: Path) -> None:
    rows = [r for mt in matches() for r in (mt.rows if mt.market is not M3 else [mt.taker])]
    load_polymarket_file(ch, write_export(tmp_path / "mixed.csv", rows), runtime=settings.runtime)
    g = _enrich(settings, ch, tmp_path)["bad_markets"]
    assert (g.status, g.actual) == ("WARN", 0)
    assert "0 of 2 resolved markets with complete fills" in g.expected and "1 one-sided not checked" in g.expected
    assert M3.gamma_id in g.detail


def test_gate_5_still_fails_on_complete_but_broken_data(settings, ch, tmp_path: Path) -> None:
    """Every side present, but one maker's price disagrees with its taker's: value is not conserved."""
    mts = matches()
    mts[1].makers[0] = row(M1, "alice", "BUY", 0, Decimal(30), Decimal("0.50"), mts[1].ts, mts[1].tx)
    rows = [r for mt in mts for r in mt.rows]
    load_polymarket_file(ch, write_export(tmp_path / "broken.csv", rows), runtime=settings.runtime)
    g = _enrich(settings, ch, tmp_path)["bad_markets"]
    assert (g.status, g.actual) == ("FAIL", 1)
    assert M1.gamma_id in g.detail


@pytest.mark.parametrize("shape", ["envelope", "json-lines-in-a-.json-file"])
def test_other_json_shapes_load_too(settings, ch, tmp_path: Path, shape: str) -> None:
    import json

    path = tmp_path / "export.json"
    if shape == "envelope":
        path.write_text(json.dumps({"data": export_rows()}))  # the v2 API's {"data": [...]} page
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in export_rows()))
    assert is_polymarket_file(path)
    report = load_polymarket_file(ch, path, runtime=settings.runtime)
    assert (report.conversion.trades, report.conversion.duplicates) == (FILLS, 1)
    assert report.load is not None and report.load.inserted == FILLS


def test_a_long_json_list_streams_across_read_blocks(settings, ch, tmp_path: Path, monkeypatch) -> None:
    from engine.enrichment import polymarket_load

    monkeypatch.setattr(polymarket_load, "JSON_READ", 64)  # items straddle every block boundary
    path = write_export(tmp_path / "export.json")
    assert [w for w, _r, _e in polymarket_load.read_polymarket(path)] == [f"item[{i}]" for i in range(FILLS + 5)]
    report = load_polymarket_file(ch, path, runtime=settings.runtime)
    assert report.load is not None and report.load.inserted == FILLS


def test_fields_that_come_and_go_do_not_matter() -> None:
    full = matches()[2].taker
    needed = {k: full[k] for k in ("proxyWallet", "side", "asset", "conditionId", "size", "price", "timestamp",
                                   "outcomeIndex", "transactionHash")}
    trimmed = classify({**needed, "feeRateBps": "0", "outcomes": '["Yes", "No"]'})  # a new field, a JSON-string list
    assert isinstance(trimmed, CanonicalTrade) and trimmed == classify(full)


def test_spool_files_of_killed_loads_are_deleted_by_the_next_load(settings, ch, tmp_path: Path) -> None:
    # A SIGKILLed load cannot delete its spool file (a full copy of the export): the next load does,
    # but never one whose owner still runs.
    import os
    import subprocess
    import sys
    import time

    spool = settings.runtime / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (spool / f"polymarket-p{dead_pid}-0123456789ab.csv").write_text("x")
        (spool / f"polymarket-p{live.pid}-0123456789ab.csv").write_text("x")
        (spool / "polymarket-aaaaaaaaaaaa.csv").write_text("x")  # an older version's, fresh: kept
        old = spool / "polymarket-bbbbbbbbbbbb.csv"
        old.write_text("x")
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        (spool / "notes.txt").write_text("not ours")
        load_polymarket_file(ch, write_export(tmp_path / "export.csv"), runtime=settings.runtime)
        assert sorted(p.name for p in spool.iterdir()) == sorted(
            [f"polymarket-p{live.pid}-0123456789ab.csv", "polymarket-aaaaaaaaaaaa.csv", "notes.txt"])
    finally:
        live.kill()
        live.wait()
