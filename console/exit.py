"""How a job command leaves: the one place in the console that turns a job's outcome into the
process's exit (headless, a job run under the TUI, and a job aborted from the launcher)."""

from __future__ import annotations

import os
import sys

from engine.events import JobState
from engine.runner import JobOutcome, exit_code_for


def finish(outcome: JobOutcome) -> int:
    """Say how the job ended when it did not simply finish, and return its exit code
    (`engine.runner.exit_code_for`). An aborted job does not return: the process ends here."""
    code = exit_code_for(outcome)
    if outcome.state is JobState.FAILED:
        print(f"opsconsole: job failed: {outcome.error}", file=sys.stderr)
    elif outcome.gates_failed:
        print(f"opsconsole: closing gates FAILED: {', '.join(outcome.gates_failed)}", file=sys.stderr)
    if outcome.state is JobState.ABORTED:
        # A second signal abandoned the job while worker threads may still be inside a blocking
        # database call (chDB, psycopg); a normal exit would wait for them to return, which can
        # take minutes. The checkpoint on disk is already consistent (it is replaced atomically),
        # so flush what was printed and leave at once, without running interpreter shutdown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    return int(code)
