"""The one mapping from a job's outcome to the exit code, and the one wording of events."""

from __future__ import annotations

import pytest

from engine.errors import ExitCode
from engine.event_text import event_text
from engine.events import CheckpointSaved, Failure, GateResult, GatesReported, JobState, LogLine, StateChanged, Summary
from engine.runner import JobOutcome, exit_code_for, format_event


@pytest.mark.parametrize("outcome, code", [
    (JobOutcome(JobState.DONE), ExitCode.OK),
    (JobOutcome(JobState.STOPPED, "SIGTERM received"), ExitCode.OK),
    (JobOutcome(JobState.DONE, gates_failed=("pnl_nulls",)), ExitCode.GATES_FAILED),
    (JobOutcome(JobState.STOPPED, gates_failed=("pnl_nulls",)), ExitCode.GATES_FAILED),
    (JobOutcome(JobState.FAILED, "boom"), ExitCode.FAILED),
    (JobOutcome(JobState.FAILED, "bad file", error_code=ExitCode.BAD_INPUT), ExitCode.BAD_INPUT),
    # A failure or an abort says more than the gates a job may have reported before it.
    (JobOutcome(JobState.FAILED, "down", error_code=ExitCode.STORE_UNAVAILABLE, gates_failed=("x",)),
     ExitCode.STORE_UNAVAILABLE),
    (JobOutcome(JobState.ABORTED, gates_failed=("x",)), ExitCode.ABORTED),
])
def test_outcome_to_exit_code(outcome: JobOutcome, code: ExitCode) -> None:
    assert exit_code_for(outcome) is code and outcome.exit_code is code


def test_plain_lines_use_the_shared_wording() -> None:
    events = [
        LogLine(job="j", level="WARNING", message="pending mutations 9 > 8", step="D"),
        StateChanged(job="j", state=JobState.PAUSED, reason="holding"),
        Failure(job="j", where="cond 0x1", reason="payouts sum to 0.98", retriable=False),
        CheckpointSaved(job="j", step="D", where="local", cursor={"wallet": "0x1"}, pairs_done=300, batch_idx=1),
        Summary(job="j", data={"b": 1, "a": [1, 2]}),
    ]
    for event in events:
        parts = event_text(event)
        line = format_event(event)
        assert parts is not None and line is not None
        assert line.split()[1] == parts.tag and line.endswith(" " + parts.text)
    assert format_event(events[0]).split()[2] == "j:D"  # type: ignore[union-attr]
    assert event_text(events[3]).text == 'D local batch 1 pairs 300 cursor {"wallet":"0x1"}'  # type: ignore[union-attr]
    # The job logs its gates as lines itself: the plain renderers leave the event out, the console shows it.
    gates = GatesReported(job="j", gates=(GateResult(name="pnl_nulls", status="FAIL", actual=3, expected="0"),))
    assert format_event(gates) is None and event_text(gates).text == "pnl_nulls=3:FAIL"  # type: ignore[union-attr]


def test_event_text_is_redacted() -> None:
    line = format_event(LogLine(job="j", level="INFO", message="connecting to postgresql://u:hunter22@db/x"))
    assert line is not None and "hunter22" not in line
