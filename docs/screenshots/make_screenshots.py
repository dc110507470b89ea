"""Regenerate the README screenshots: `uv run python docs/screenshots/make_screenshots.py`.

Uses the same deterministic event streams as the snapshot tests (tests/tui/scenarios.py), so the
pictures show every panel filled in without a live run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from console.tui.app import OpsConsoleApp  # noqa: E402
from engine.settings import load_settings  # noqa: E402
from tests.tui.scenarios import attached_app, feed, rounds_for  # noqa: E402

SHOTS = [
    # (file, scenario, keys, size, theme)
    ("enrichment-overview.svg", "enrichment", (), (120, 36), "ops-dark"),
    ("enrichment-overview-80x24.svg", "enrichment", (), (80, 24), "ops-dark"),
    ("enrichment-overview-light.svg", "enrichment", (), (120, 36), "ops-light"),
    ("pipeline-overview.svg", "pipeline", (), (120, 36), "ops-dark"),
    ("mutations.svg", "enrichment", ("m",), (120, 36), "ops-dark"),
    ("failures.svg", "pipeline-done", ("f",), (120, 36), "ops-dark"),
    ("logs.svg", "enrichment", ("l",), (120, 36), "ops-dark"),
    ("edit-live-settings.svg", "enrichment-running", ("e",), (120, 36), "ops-dark"),
    ("help.svg", "enrichment", ("question_mark",), (120, 36), "ops-dark"),
]


async def shoot(name: str, scenario: str, keys: tuple[str, ...], size: tuple[int, int], theme: str) -> None:
    app = attached_app(scenario, stores="m" not in keys, theme=theme)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await feed(screen, screen.session.bus, rounds_for(scenario))
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        app.save_screenshot(name, str(HERE))


async def launcher() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "runtime"
        runtime.mkdir()
        (runtime / "full-enrichment.state.json").write_text(json.dumps(
            {"job": "full-enrichment", "step": "D", "batch_idx": 150, "pairs_done": 45000, "pairs_total": 136931,
             "last_mutations": 250, "updated_at": "2025-10-28T12:00:00.000Z"}))
        (runtime / "pipeline-summary.json").write_text(json.dumps(
            {"run_id": "20261122T070000Z-1a2b", "status": "completed", "dry_run": True,
             "window": {"start": "2026-11-22T07:00:00Z", "end": "2026-11-29T07:00:00Z"},
             "counts": {"markets_seen": 12, "markets_valid": 11, "markets_invalid": 1, "events_total": 9,
                        "events_processed": 9, "llm_calls": 18},
             "suites": {"baseline": {"research_ok": 0, "research_reused": 0, "research_failed": 0,
                                     "forecast_ok": 9, "forecast_reused": 0, "forecast_failed": 0, "skipped": 0,
                                     "llm_calls": 0, "tokens": 0, "cost_usd": 0.0}},
             "failures": [{"market_id": "999001", "reason": "normalization failed: no outcomes"}],
             "failures_total": 1, "tokens": 21900, "cost_usd": 0.0426}))
        app = OpsConsoleApp(load_settings(runtime_dir=runtime), gates_interval=None)
        async with app.run_test(size=(120, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            app.save_screenshot("launcher.svg", str(HERE))


async def main() -> None:
    for shot in SHOTS:
        await shoot(*shot)
    await launcher()


if __name__ == "__main__":
    asyncio.run(main())
    print("\n".join(sorted(p.name for p in HERE.glob("*.svg"))))
