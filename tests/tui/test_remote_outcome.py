"""A job that ended before the console saw its final state: its log's END line says how."""

from __future__ import annotations

from pathlib import Path

from console.tui.remote import outcome_from_log
from engine.errors import ExitCode
from engine.events import JobState

START = "2026-12-02T07:00:00.000Z START   score pid=4242 argv=score\n"


def write_log(runtime: Path, *lines: str) -> None:
    runtime.mkdir(parents=True, exist_ok=True)
    (runtime / "score.console.log").write_text("".join(lines))


def test_done_failed_and_gates(tmp_path: Path) -> None:
    write_log(tmp_path, START, "2026-12-02T07:00:02.000Z END     score state=done exit=0\n")
    done = outcome_from_log(tmp_path, "score")
    assert done.state is JobState.DONE and done.exit_code is ExitCode.OK

    write_log(tmp_path, START, "2026-12-02T07:00:02.000Z END     score state=failed exit=4\n")
    failed = outcome_from_log(tmp_path, "score")
    assert failed.state is JobState.FAILED and failed.exit_code is ExitCode.BAD_INPUT
    assert "runtime/score.console.log" in failed.error

    write_log(tmp_path, START, "2026-12-02T07:00:02.000Z END     score state=done exit=3\n")
    assert outcome_from_log(tmp_path, "score").exit_code is ExitCode.GATES_FAILED


def test_no_end_line_means_unknown(tmp_path: Path) -> None:
    assert outcome_from_log(tmp_path, "score") is None  # no log at all
    write_log(tmp_path, "2026-12-02T06:00:00.000Z START   score pid=1 argv=score\n",
              "2026-12-02T06:00:02.000Z END     score state=done exit=0\n", START)
    assert outcome_from_log(tmp_path, "score") is None  # the last run has not ended (or was killed)
