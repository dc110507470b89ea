"""The real app running a real pipeline dry run (saved Gamma snapshot, the no-LLM baseline suite):
progress, per-suite stats and the failures table with market, reason and retriable; pause holds
the run between events and resume finishes it; the summary lands in the launcher's info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.widgets import FailuresTable, PipelinePanel
from engine.events import JobState
from engine.pipeline.job import PipelineJob
from engine.pipeline.options import PipelineOptions

pytestmark = pytest.mark.anyio

SAMPLE = Path(__file__).resolve().parents[2] / "engine" / "pipeline" / "data" / "sample_markets.json"


def snapshot_with_a_broken_market(tmp_path: Path) -> Path:
    markets = json.loads(SAMPLE.read_text())
    broken = dict(next(m for m in markets if isinstance(m, dict) and m.get("id")))
    broken.update(id="999001", question="Broken market?", outcomes="[]", outcomePrices="[]", clobTokenIds="[]",
                  events=[{"id": "999", "title": "Broken event", "slug": "broken"}])
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(markets + [broken]))
    return path


async def test_pipeline_dry_run_shows_stats_and_failures(settings, tmp_path) -> None:
    summary_path = settings.runtime / "pipeline-summary.json"
    options = PipelineOptions(source=snapshot_with_a_broken_market(tmp_path), suites=["baseline"], dry_run=True,
                              no_debug_dump=True, event_batch_size=1, summary_path=summary_path)
    app = OpsConsoleApp(settings, job=PipelineJob(options), gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await pilot.press("p")
        await screen.wait_for(lambda v: v.state in (JobState.PAUSED, JobState.DONE))
        await pilot.pause()
        if screen.view.state is JobState.PAUSED:
            events = screen.view.steps.get("events")
            assert events is None or events.total is None or events.done < events.total
            await pilot.press("r")
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert screen.session.outcome is not None and screen.session.outcome.state is JobState.DONE

        # Pipeline panel: progress detail rendered from events only.
        view = screen.view
        events = view.steps["events"]
        assert events.done == events.total and events.total > 0
        assert "baseline" in events.detail["suites"]
        panel = screen.query_one("#pipeline", PipelinePanel)
        assert panel.display
        table = panel.query_one("#suites-table")
        assert "baseline" in table.rows

        # The broken market is in the failures table: market, reason, retriable.
        assert any(f.where == "999001" for f in view.failures)
        await pilot.press("f")
        assert screen.query_one("#tabs").active == "failures-tab"
        failures = screen.query_one("#failures-table", FailuresTable)
        rows = [[str(c) for c in failures.get_row_at(i)] for i in range(failures.row_count)]
        broken = next(r for r in rows if r[1] == "999001")
        assert "normaliz" in broken[4].lower()
        assert broken[2] in ("yes", "no")
        assert view.summary is not None
        await pilot.press("q")
    assert json.loads(summary_path.read_text())["run_id"]
