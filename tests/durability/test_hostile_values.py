"""SQL is built only from bound parameters and validated identifiers: hostile wallet ids, market
ids, condition ids and override values travel through loading, Steps A–E, gates, a per-market reset
and the pipeline as plain data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import OPSCONSOLE, REPO, subprocess_env

WALLET_A = "0xa'); DROP TABLE trades_raw; --"
WALLET_B = "0xb\\' OR 1=1 --\t{x:String}"
MARKET = 'm"1`; ALTER TABLE markets_dim DELETE WHERE 1; --'
CONDITION = "0xc'||(SELECT version())||'"

DUMP = """
import json, sys
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
ch = open_clickhouse(load_settings())
rows = ch.query("SELECT trade_id, wallet_address, market_id, condition_id, toString(realized_pnl_usd), is_resolved "
                "FROM $db.trades_raw ORDER BY trade_id").rows
out = {"trades": rows, "tables": [r[0] for r in ch.query("SELECT name FROM system.tables WHERE database = {d:String} ORDER BY name", {"d": ch.database}).rows],
       "markets": ch.query("SELECT market_id, condition_id FROM $db.markets_dim FINAL").rows}
print(json.dumps(out))
"""


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_hostile_ids_are_data_end_to_end(tmp_path: Path, pg_url: str) -> None:
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), CLICKHOUSE_PATH=str(tmp_path / "ch"), POSTGRES_URL=pg_url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*OPSCONSOLE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert "Traceback" not in out.stderr, out.stderr
        return out

    trade = {"market_id": MARKET, "condition_id": CONDITION, "outcome_index": 0, "price": "0.4", "shares": "10",
             "timestamp": "2025-01-01T00:00:00Z"}
    _jsonl(tmp_path / "t.jsonl", [
        {**trade, "trade_id": "t1'--", "wallet_address": WALLET_A, "side": "BUY", "fee_usd": "0.01"},
        {**trade, "trade_id": "t2\\", "wallet_address": WALLET_B, "side": "SELL"},
    ])
    _jsonl(tmp_path / "m.jsonl", [{"market_id": MARKET, "condition_id": CONDITION, "question": "'; --", "category": "Politics"}])
    _jsonl(tmp_path / "r.jsonl", [{"condition_id": CONDITION, "market_id": MARKET, "payout_yes": 1, "payout_no": 0,
                                   "resolved_at": "2025-02-01T00:00:00Z"}])
    for kind, name in (("trades", "t.jsonl"), ("markets", "m.jsonl"), ("resolutions", "r.jsonl")):
        out = run("data", "load", kind, name)
        assert out.returncode == 0, out.stdout + out.stderr
    out = run("enrich", "--step", "all", "--offline", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    gates = run("gates", "--json")
    assert gates.returncode == 0, gates.stdout

    state = json.loads(subprocess.run([sys.executable, "-c", DUMP], env=env, cwd=REPO, capture_output=True, text=True, timeout=120).stdout)
    assert {"trades_raw", "markets_dim", "wallet_resolution_outcomes"} <= set(state["tables"])
    assert state["markets"] == [[MARKET, CONDITION]]
    # BUY YES 10 @ 0.4 resolving YES: +6 − 0.01 fee; the SELL side: −6. Both ids intact.
    assert state["trades"] == [
        ["t1'--", WALLET_A, MARKET, CONDITION, "5.99", 1],
        ["t2\\", WALLET_B, MARKET, CONDITION, "-6", 1],
    ]

    reset = run("reset", "--market", MARKET, "--yes")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    state = json.loads(subprocess.run([sys.executable, "-c", DUMP], env=env, cwd=REPO, capture_output=True, text=True, timeout=120).stdout)
    assert [t[4:] for t in state["trades"]] == [[None, 0], [None, 0]]  # reset exactly that market
    out = run("enrich", "--step", "D", "--no-ui", "--log-format", "plain")
    assert out.returncode == 3  # Step D alone: the market's outcomes wait for Step E (closing gate FAILs)
    state = json.loads(subprocess.run([sys.executable, "-c", DUMP], env=env, cwd=REPO, capture_output=True, text=True, timeout=120).stdout)
    assert [t[4] for t in state["trades"]] == ["5.99", "-6"]


def test_hostile_override_values_are_stored_as_data(tmp_path: Path, pg_url: str) -> None:
    from tests.pipeline.fakes import LoopbackServer, OpenAIApp

    hostile = "x'); DROP TABLE processing_runs; --"
    server = LoopbackServer(OpenAIApp())
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt"), POSTGRES_URL=pg_url,
                         OPENAI_API_KEY="sk-test-hostile-0000000000", OPENAI_BASE_URL=server.url + "/v1")
    snapshot = REPO / "engine" / "pipeline" / "data" / "sample_markets.json"
    try:
        out = subprocess.run(
            [*OPSCONSOLE, "pipeline", "--source", str(snapshot), "--limit", "2", "--suite", "openai", "--no-ui",
             "--experiment-override", f"openai:forecast:gpt5.instructions={json.dumps(hostile)}"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
    finally:
        server.close()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('processing_runs') IS NOT NULL").fetchone() == (True,)
        configs = [json.dumps(r[0]) for r in conn.execute("SELECT config FROM experiment_results").fetchall()]
    assert configs and any(hostile.replace('"', '\\"') in c or hostile in c for c in configs)
