"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80×24 and 160×48.

Deterministic by construction: events carry fixed timestamps, the app's clock is fixed, the gates
timer is off, and no toast is on screen. Update baselines with `--snapshot-update` after looking
at the report.
"""

from __future__ import annotations

import json

import pytest

from console.tui.app import OpsConsoleApp
from engine.settings import load_settings
from tests.tui.scenarios import attached_app, feed, rounds_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


def fed(scenario: str, *keys: str):
    async def run_before(pilot) -> None:
        screen = pilot.app.screen
        await feed(screen, screen.session.bus, rounds_for(scenario))
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        # A blinking cursor would make the picture depend on when it is taken.
        for widget in pilot.app.screen.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_enrichment_overview_paused(snap_compare, size) -> None:
    assert snap_compare(attached_app("enrichment"), terminal_size=size, run_before=fed("enrichment"))


@pytest.mark.parametrize("size", SIZES)
def test_pipeline_overview(snap_compare, size) -> None:
    assert snap_compare(attached_app("pipeline"), terminal_size=size, run_before=fed("pipeline"))


@pytest.mark.parametrize("size", SIZES)
def test_mutations_details(snap_compare, size) -> None:
    assert snap_compare(attached_app("enrichment", stores=False), terminal_size=size,
                        run_before=fed("enrichment", "m"))


@pytest.mark.parametrize("size", SIZES)
def test_failures_table(snap_compare, size) -> None:
    assert snap_compare(attached_app("pipeline-done"), terminal_size=size, run_before=fed("pipeline-done", "f"))


@pytest.mark.parametrize("size", SIZES)
def test_logs(snap_compare, size) -> None:
    assert snap_compare(attached_app("enrichment"), terminal_size=size, run_before=fed("enrichment", "l"))


@pytest.mark.parametrize("size", SIZES)
def test_edit_live_settings(snap_compare, size) -> None:
    assert snap_compare(attached_app("enrichment-running"), terminal_size=size,
                        run_before=fed("enrichment-running", "e"))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, size) -> None:
    assert snap_compare(attached_app("enrichment"), terminal_size=size, run_before=fed("enrichment", "question_mark"))


def test_quit_confirmation(snap_compare) -> None:
    assert snap_compare(attached_app("enrichment-running"), terminal_size=(80, 24),
                        run_before=fed("enrichment-running", "q"))


def test_light_theme(snap_compare) -> None:
    assert snap_compare(attached_app("enrichment", theme="ops-light"), terminal_size=(160, 48),
                        run_before=fed("enrichment"))


@pytest.mark.parametrize("size", SIZES)
def test_launcher(snap_compare, size, tmp_path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "full-enrichment.state.json").write_text(json.dumps(
        {"job": "full-enrichment", "step": "D", "batch_idx": 150, "pairs_done": 45000, "pairs_total": 136931,
         "last_mutations": 250, "updated_at": "2025-10-28T12:00:00.000Z"}))
    (runtime / "pipeline-summary.json").write_text(json.dumps(
        {"run_id": "20261122T070000Z-1a2b", "status": "completed", "dry_run": True,
         "counts": {"markets_seen": 12, "markets_valid": 11, "markets_invalid": 1, "events_total": 9,
                    "events_processed": 9, "llm_calls": 0},
         "suites": {"baseline": {"research_ok": 0, "research_reused": 0, "research_failed": 0, "forecast_ok": 9,
                                 "forecast_reused": 0, "forecast_failed": 0, "skipped": 0, "llm_calls": 0,
                                 "tokens": 0, "cost_usd": 0.0}},
         "failures": [{"market_id": "999001", "reason": "normalization failed: no outcomes"}], "failures_total": 1,
         "tokens": 0, "cost_usd": 0.0}))
    app = OpsConsoleApp(load_settings(runtime_dir=runtime), gates_interval=None)

    async def run_before(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
