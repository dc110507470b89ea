"""The headless renderers: what an operator reads in cron logs and CI output."""

from __future__ import annotations

import io
import json

from console.headless import JsonRenderer, PlainRenderer
from engine.events import CheckpointSaved, LogLine, Progress, Summary


def test_plain_output_throttles_progress_and_checkpoints_but_never_logs() -> None:
    out = io.StringIO()
    r = PlainRenderer(out, progress_every=60)
    for i in range(1, 101):
        r.handle(Progress(job="j", step="D", done=i, total=100, unit="pairs"))
        r.handle(CheckpointSaved(job="j", step="D", where="local", cursor={"i": i}, batch_idx=i))
        r.handle(LogLine(job="j", level="INFO", message=f"batch {i}"))
    lines = out.getvalue().splitlines()
    assert sum("PROGRESS" in line for line in lines) == 2  # the first, and the final 100/100
    assert "100/100 pairs" in [line for line in lines if "PROGRESS" in line][-1]
    assert sum("CHECKPT" in line for line in lines) == 1
    assert sum("INFO" in line for line in lines) == 100


def test_summary_is_json_and_json_format_is_parseable() -> None:
    out = io.StringIO()
    PlainRenderer(out).handle(Summary(job="j", data={"b": 1, "a": [1, 2]}))
    assert out.getvalue().strip().endswith('SUMMARY j {"a": [1, 2], "b": 1}')
    out = io.StringIO()
    JsonRenderer(out).handle(LogLine(job="j", level="WARNING", message="remote checkpoint failed"))
    record = json.loads(out.getvalue())
    assert record["type"] == "LogLine" and record["level"] == "WARNING"


def test_rich_output_keeps_per_batch_checkpoints_for_the_log_and_verbose() -> None:
    """On a terminal the bars and the lines that matter; checkpoint and DEBUG lines only with -v."""
    import io

    from console.headless import RichRenderer
    from engine.events import CheckpointSaved, Failure, JobState, LogLine, StateChanged

    events = [
        StateChanged(job="j", state=JobState.RUNNING),
        CheckpointSaved(job="j", step="D", where="local", cursor={"w": "0x1"}, pairs_done=300, batch_idx=1),
        LogLine(job="j", level="DEBUG", message="a debug detail"),
        LogLine(job="j", level="INFO", message="Step D done"),
        LogLine(job="j", level="WARNING", message="mirror is behind"),
        Failure(job="j", where="0xabc", reason="bad market"),
    ]

    def shown(verbose: bool) -> str:
        out = io.StringIO()
        renderer = RichRenderer(out, verbose=verbose)
        for event in events:
            renderer.handle(event)
        renderer.close()
        return out.getvalue()

    quiet = shown(False)
    assert "CHECKPT" not in quiet and "a debug detail" not in quiet
    for text in ("running", "Step D done", "mirror is behind", "bad market"):
        assert text in quiet
    loud = shown(True)
    assert "CHECKPT" in loud and "a debug detail" in loud
