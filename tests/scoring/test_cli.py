"""`opsconsole score` from the command line: offline scoring from a snapshot, `--json` shape,
`--summary-path`, the table, and bad input as a clear message with exit code 4."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from console.cli import main
from engine.settings import load_settings
from tests.scoring.conftest import BASELINE, GEMINI, OPENAI, resolutions, seed
from tests.support.terminal import needs_tmux, run_on_terminal


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> Path:
    monkeypatch.setenv("POSTGRES_URL", pg_url)
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(tmp_path / "runtime"))
    # No Gamma anywhere: offline scoring must not need the network.
    monkeypatch.setenv("POLYMARKET_BASE_URL", "http://127.0.0.1:9")
    anyio.run(seed, load_settings(runtime_dir=tmp_path / "runtime", postgres_url=pg_url))
    snapshot = tmp_path / "gamma.json"
    snapshot.write_text(json.dumps(resolutions()))  # outcomePrices string-encoded, as Gamma sends them
    return snapshot


def test_json_offline(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "summary.json"
    code = main(["score", "--no-ui", "--json", "--source", str(env), "--summary-path", str(out_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)  # stdout is exactly one JSON document
    assert json.loads(out_path.read_text()) == doc
    assert (doc["scored"], doc["void"], doc["pending"]) == (8, 2, 2)
    assert doc["missing"]["market_ids"] == ["302"]
    assert [v["experiment"] for v in doc["variants"]] == [BASELINE, GEMINI, OPENAI]
    required = {"experiment", "config_hash", "n", "brier", "log_loss", "bss_vs_baseline", "bss_ci95", "paired_n",
                "calibration"}
    for v in doc["variants"]:
        assert required <= set(v)
        assert [set(b) for b in v["calibration"]] == [{"bin", "lo", "hi", "count", "mean_forecast", "observed"}] * 10
    assert doc["variants"][2]["bss_vs_baseline"] == pytest.approx(1 - 0.38 / 0.61)


def test_table(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--no-ui", "--log-format", "plain", "--source", str(env)]) == 0
    out = capsys.readouterr().out
    assert f"{BASELINE} (ref)" in out and OPENAI in out
    assert "seed 20261201" in out and "2000 resamples" in out
    assert "missing from snapshot" in out and "302" in out
    assert "invalid: gemini:forecast:gemini_simple E1 market 101" in out


def test_bad_source_is_a_clear_error(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["score", "--no-ui", "--source", str(tmp_path / "nope.json")])
    err = capsys.readouterr().err
    assert code == 4
    assert "nope.json does not exist" in err and "Traceback" not in err


def test_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["score", "--since", "yesterday"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err


@needs_tmux
def test_table_on_a_terminal(env: Path, tmp_path: Path) -> None:
    """On a terminal the job runs detached with the console attached; a short score run can end before
    the console attaches. Either way the leaderboard is printed once the command returns."""
    settings = {k: os.environ[k] for k in ("POSTGRES_URL", "OPSCONSOLE_RUNTIME_DIR", "POLYMARKET_BASE_URL")}
    code, screen = run_on_terminal(["score", "--source", str(env)], settings, tmp_path / "done")
    assert code == "EXIT=0", screen
    assert f"{BASELINE} (ref)" in screen and OPENAI in screen, screen
