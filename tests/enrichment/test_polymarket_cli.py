"""`opsconsole data load trades` on a data-api export, as an operator runs it: auto-detected, the
conversion's counts printed, and a reload (another format) adding nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import OPSCONSOLE, subprocess_env
from tests.enrichment.polymarket_world import FILLS, write_export


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "runtime"), CLICKHOUSE_PATH=str(tmp_path / "ch"))
    out = subprocess.run([*OPSCONSOLE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out


def test_load_a_data_api_export_from_the_command_line(tmp_path: Path) -> None:
    csv_file = write_export(tmp_path / "trades-export.csv")
    out = _run(tmp_path, "data", "load", "trades", str(csv_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (f"polymarket: 14 record(s): {FILLS} trade(s), 1 exact duplicate(s) dropped, 6 price/size rounded to 6 "
            f"decimals, {FILLS} trade(s) whose market is not in markets_dim yet (Step A fills it), non-trade activity "
            "skipped: MAKER_REBATE 1, REDEEM 1, REWARD 1, SPLIT 1") in out.stdout
    assert f"(polymarket): 14 record(s), {FILLS} valid, inserted {FILLS}, unchanged 0, invalid 0" in out.stdout

    json_file = write_export(tmp_path / "trades-export.txt")  # a JSON list; no telling extension: --format says it
    out = _run(tmp_path, "data", "load", "trades", str(json_file), "--format", "polymarket", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["polymarket"]["duplicates_dropped"] == 1
    assert report["polymarket"]["activity_skipped"] == {"MAKER_REBATE": 1, "REDEEM": 1, "REWARD": 1, "SPLIT": 1}
    assert (report["load"]["inserted"], report["load"]["unchanged"]) == (0, FILLS)
