"""Bad input for the Polymarket formats and Step T, table-driven like test_bad_input.py: the real CLI
in a subprocess must exit with the documented code, name the line and the problem, print no
traceback, and load nothing."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OPSCONSOLE, subprocess_env
from tests.enrichment.polymarket_world import M1, matches
from tests.support.data_api_server import activity

GOOD = matches()[1].taker  # bob SELL YES 30 @ 0.70
GOOD2 = matches()[1].makers[0]
COLS = list(GOOD) + ["type", "usdcSize"]


def _csv(*rows: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def _jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _untyped_activity() -> dict[str, Any]:
    a = activity("REWARD", "bob", 1_735_689_600, __import__("decimal").Decimal(1), "r")
    del a["type"]
    return a


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    expect: list[str]
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


LOAD = ["data", "load", "trades"]
STEP_T = ["enrich", "--step", "T", "--condition", M1.condition_id, "--no-ui", "--log-format", "plain"]

CASES: list[Case] = [
    Case("pm-half-trade-half-activity-outcome-999", [*LOAD, "t.csv"], 4, ["line 3", "half trade, half activity", "outcomeIndex is 999", "nothing was loaded"],
         {"t.csv": _csv(GOOD, {**GOOD2, "outcomeIndex": 999})}),
    Case("pm-half-trade-half-activity-typed-trade-without-condition", [*LOAD, "t.csv"], 4, ["line 2", "half trade, half activity", "conditionId is empty", "type TRADE"],
         {"t.csv": _csv({**GOOD, "type": "TRADE", "conditionId": ""}, GOOD2)}),
    Case("pm-half-trade-half-activity-redeem-with-a-fill", [*LOAD, "t.csv"], 4, ["line 2", "half trade, half activity: type REDEEM"],
         {"t.csv": _csv({**GOOD, "type": "REDEEM"})}),
    Case("pm-half-trade-half-activity-jsonl", [*LOAD, "t.jsonl"], 4, ["line 2", "half trade, half activity", "price is 0"],
         {"t.jsonl": _jsonl(GOOD, {**GOOD2, "price": 0})}),
    Case("pm-activity-without-type", [*LOAD, "t.jsonl"], 4, ["line 1", "without a `type`"], {"t.jsonl": _jsonl(_untyped_activity(), GOOD)}),
    Case("pm-unknown-activity-type", [*LOAD, "t.jsonl"], 4, ["line 1", "'AIRDROP' is not TRADE or a known activity type"],
         {"t.jsonl": _jsonl({**GOOD, "type": "AIRDROP"})}),
    Case("pm-outcome-index-not-binary", [*LOAD, "t.csv"], 4, ["line 2", "outcomeIndex must be 0 or 1"], {"t.csv": _csv({**GOOD, "outcomeIndex": 2})}),
    Case("pm-price-out-of-range", [*LOAD, "t.csv"], 4, ["line 2", "price 1.7 is outside [0, 1]"], {"t.csv": _csv({**GOOD, "price": 1.7})}),
    Case("pm-price-not-a-number", [*LOAD, "t.json"], 4, ["item[0]", "price is not a number"], {"t.json": json.dumps([{**GOOD, "price": "cheap"}])}),
    Case("pm-size-rounds-to-zero", [*LOAD, "t.csv"], 4, ["line 2", "size must be > 0 after rounding to 6 decimals"], {"t.csv": _csv({**GOOD, "size": 0.0000004})}),
    Case("pm-wallet-not-an-address", [*LOAD, "t.csv"], 4, ["line 2", "proxyWallet is not an address"], {"t.csv": _csv({**GOOD, "proxyWallet": "bob"})}),
    Case("pm-missing-transaction-hash", [*LOAD, "t.csv"], 4, ["line 2", "transactionHash is missing"], {"t.csv": _csv({**GOOD, "transactionHash": ""})}),
    Case("pm-timestamp-not-unix-seconds", [*LOAD, "t.csv"], 4, ["line 2", "timestamp is not a number"], {"t.csv": _csv({**GOOD, "timestamp": "2025-01-01"})}),
    Case("pm-timestamp-out-of-range", [*LOAD, "t.jsonl"], 4, ["line 1", "between 2000 and 2105"], {"t.jsonl": _jsonl({**GOOD, "timestamp": 12})}),
    Case("pm-side-not-buy-or-sell", [*LOAD, "t.csv"], 4, ["line 2", "side must be BUY or SELL"], {"t.csv": _csv({**GOOD, "side": "HOLD"})}),
    Case("pm-asset-not-a-token-id", [*LOAD, "t.csv"], 4, ["line 2", "asset is not a token id"], {"t.csv": _csv({**GOOD, "asset": "YES"})}),
    Case("pm-csv-more-cells-than-header", [*LOAD, "t.csv"], 4, ["line 3", "more cells than the header"], {"t.csv": _csv(GOOD) + _csv(GOOD2).splitlines()[1] + ",extra\n"}),
    Case("pm-jsonl-bad-json", [*LOAD, "t.jsonl"], 4, ["line 2", "not valid JSON"], {"t.jsonl": _jsonl(GOOD, '{"proxyWallet": ')}),
    Case("pm-json-list-cut-short", [*LOAD, "t.json"], 4, ["t.json", "not valid JSON"], {"t.json": json.dumps([GOOD, GOOD2])[:-40]}),
    Case("pm-json-item-not-an-object", [*LOAD, "t.json"], 4, ["item[1]: not a JSON object"], {"t.json": json.dumps([GOOD, [1, 2]])}),
    Case("pm-json-envelope-without-a-list", [*LOAD, "t.json", "--format", "polymarket"], 4, ['must hold a list under "data"'], {"t.json": json.dumps({"proxyWallet": 1})}),
    Case("pm-header-only", [*LOAD, "t.csv"], 4, ["no records found"], {"t.csv": _csv()}),
    Case("pm-every-bad-row-listed-with-a-count", [*LOAD, "t.csv"], 4, ["3 invalid row(s) of 4", "line 2", "line 3", "line 5"],
         {"t.csv": _csv({**GOOD, "side": "x"}, {**GOOD, "price": 3}, GOOD2, {**GOOD, "outcomeIndex": 999})}),
    Case("pm-format-for-markets-refused", ["data", "load", "markets", "t.csv", "--format", "polymarket"], 4, ["polymarket"], {"t.csv": _csv(GOOD)}),
    # --- Step T --------------------------------------------------------------------------------
    Case("step-t-checkpoint-corrupt", STEP_T, 4, ["step-t.state.json", "not valid JSON", "move it away"], {"runtime/step-t.state.json": '{"scopes": {'}),
    Case("step-t-checkpoint-wrong-shape", STEP_T, 4, ["step-t.state.json", "walk.offset must be an integer"],
         {"runtime/step-t.state.json": json.dumps({"scopes": {"market:x": {"walk": {"offset": "deep"}}}})}),
    Case("step-t-bad-data-api-url", STEP_T, 4, ["data-api base URL must start with http"], env={"POLYMARKET_DATA_API_URL": "ftp://data-api"}),
    Case("step-t-condition-not-an-id", ["enrich", "--step", "T", "--condition", "0x12", "--no-ui"], 4, ["--condition '0x12' is not a condition id"]),
    Case("step-t-wallet-not-an-address", ["enrich", "--step", "T", "--wallet", "alice", "--no-ui"], 4, ["--wallet 'alice' is not a wallet address"]),
    Case("enrich-unknown-step-names-t", ["enrich", "--step", "X", "--no-ui"], 4, ["use T, A, B, C, D, E, all or daily"]),
]


def test_the_table_covers_each_half_trade_half_activity_shape() -> None:
    assert sum("half-trade-half-activity" in c.id for c in CASES) == 4
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_polymarket_input(case: Case, tmp_path: Path) -> None:
    env = {"OPSCONSOLE_RUNTIME_DIR": str(tmp_path / "runtime"), "CLICKHOUSE_PATH": str(tmp_path / "ch"),
           "COLUMNS": "200", **case.env}
    for name, text in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    before = {name: (tmp_path / name).read_text(encoding="utf-8") for name in case.files}
    out = subprocess.run([*OPSCONSOLE, *case.args], env=subprocess_env(**env), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert out.returncode == case.code, f"exit {out.returncode}, expected {case.code}:\n{text[-3000:]}"
    for needle in case.expect:
        assert needle in text, f"{needle!r} not in output:\n{text[-3000:]}"
    for name, original in before.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == original, f"{name} was modified"
    spool = tmp_path / "runtime" / "spool"
    assert not spool.exists() or not list(spool.iterdir())  # no spool file left behind
