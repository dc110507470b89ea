"""The Scores view (console/tui/scores.py): a snapshot of the leaderboard and reliability diagram,
and the diagram following the highlighted row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from textual.widgets import DataTable, Static

from console.tui.scores import ReliabilityDiagram, ScoresApp, reliability_text
from engine.scoring.job import Tally, build_summary
from engine.scoring.metrics import BASELINE, Score, brier, leaderboard, log_loss

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def summary() -> dict[str, Any]:
    probs = {BASELINE: [0.6, 0.3, 0.4, 0.8, 0.2, 0.55], "openai:forecast:gpt5": [0.9, 0.2, 0.7, 0.95, 0.1, 0.35]}
    ys = [1, 0, 1, 1, 0, 0]
    scores = [Score(f"E{i}", name, "hash0001", f"m{i}", name.split(":")[0], name.split(":")[2], "scored", p, y,
                    brier(p, y), log_loss(p, y), AT, None, 100.0, 0.01)
              for name, ps in probs.items() for i, (p, y) in enumerate(zip(ps, ys, strict=True))]
    tally = Tally(forecasts=14, scored=12, void=0, pending=2)
    return build_summary(leaderboard(scores, resamples=200), tally, status="completed", source="snapshot",
                         resamples=200, seed=1)


def test_scores_view_snapshot(snap_compare: Any) -> None:
    assert snap_compare(ScoresApp(summary()), terminal_size=(110, 30))


@pytest.mark.anyio
async def test_diagram_follows_the_highlighted_row() -> None:
    s = summary()
    app = ScoresApp(s)
    async with app.run_test(size=(110, 30)) as pilot:
        diagram = app.screen.query_one(ReliabilityDiagram)
        assert str(diagram.render()) == str(reliability_text(s["variants"][0]))
        assert BASELINE in str(diagram.render())
        await pilot.press("down")
        await pilot.pause()
        assert "openai:forecast:gpt5" in str(diagram.render())
        assert str(diagram.render()) != str(reliability_text(s["variants"][0]))


@pytest.mark.anyio
async def test_sorting_keeps_the_baseline_on_top() -> None:
    s = summary()
    s["variants"].append({**s["variants"][1], "experiment": "gemini:forecast:flash", "brier": 0.001,
                          "bss_vs_baseline": 0.99, "n": 3})
    app = ScoresApp(s)
    async with app.run_test(size=(110, 30)) as pilot:
        table = app.screen.query_one(DataTable)

        def order() -> list[str]:
            return [str(table.get_row_at(r)[0]).split("  ")[0] for r in range(table.row_count)]

        assert order() == [BASELINE, "gemini:forecast:flash", "openai:forecast:gpt5"]  # Brier, lowest first
        await pilot.press("s")  # log loss: the appended copy shares openai's, the stable sort keeps the order
        await pilot.press("s")  # BSS, highest first
        assert order() == [BASELINE, "gemini:forecast:flash", "openai:forecast:gpt5"]
        await pilot.press("s")  # n, highest first: openai's 6 before the copy's 3
        assert order() == [BASELINE, "openai:forecast:gpt5", "gemini:forecast:flash"]
        assert "sorted by n" in str(app.screen.query_one("#footnote", Static).render())
