"""User-facing errors and the exit codes the CLI documents.

Anything an operator can cause (bad input, a held lock, an unreachable store) is raised as an
`OpsError`; the CLI prints its message (redacted) without a traceback and exits with its code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # finished, or stopped gracefully (checkpoint saved)
    FAILED = 1  # the job failed; the last checkpoint is still valid
    USAGE = 2  # invalid command line
    GATES_FAILED = 3  # a validation gate reported FAIL
    BAD_INPUT = 4  # a file, setting or override was invalid; nothing was written
    STORE_UNAVAILABLE = 5  # Postgres or ClickHouse could not be reached or used
    NOT_RUNNING = 5  # (same code) pause/resume/stop/gates: no such job answers on its socket
    LOCKED = 75  # another runner holds this job's lock, or chDB's data directory
    ABORTED = 130  # a second signal aborted the job at once


EXIT_CODES_HELP = """exit codes:
  0   finished, or stopped gracefully with its checkpoint saved
  1   the job failed (the last checkpoint is still valid)
  2   invalid command line
  3   a validation gate reported FAIL
  4   bad input: a file, setting or override was invalid (nothing was written)
  5   a store (Postgres or ClickHouse) could not be reached or used, or (pause, resume, stop)
      no such job is running
  75  another process holds this job's lock or the chDB data directory
  130 aborted by a second SIGINT/SIGTERM (the last checkpoint is still valid)"""


class OpsError(Exception):
    """An error with a message meant for the operator, and the exit code to leave with."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class BadInput(OpsError):
    exit_code = ExitCode.BAD_INPUT


class StoreUnavailable(OpsError):
    exit_code = ExitCode.STORE_UNAVAILABLE


class JobNotRunning(OpsError):
    """Nothing answers on the job's socket: the job is not running (or was killed)."""

    exit_code = ExitCode.NOT_RUNNING


class LockHeld(OpsError):
    exit_code = ExitCode.LOCKED
