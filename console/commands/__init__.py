"""Subcommands. Shared argument helpers live here."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from console.exit import finish
from engine.runner import Job, JobOutcome
from engine.settings import Settings, load_settings


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (0 would otherwise read as "use the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-ui", action="store_true", help="run headless (no TUI): progress on a TTY, plain lines otherwise")
    parser.add_argument(
        "--log-format", choices=("auto", "plain", "json"), default="auto",
        help="headless output: rich progress on a TTY (auto), timestamped lines (plain), or JSON lines (json)",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="on a terminal, also print every checkpoint and DEBUG line (the log file always has them)")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings()


def wants_ui(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_ui", True) and sys.stdin.isatty() and sys.stdout.isatty()


def run_job_command(job: Job, settings: Settings, args: argparse.Namespace, resources: dict[str, Any] | None = None) -> int:
    """Run a job in the TUI (default on a terminal) or headless (`--no-ui`, or no terminal)."""
    if wants_ui(args):
        if resources is None and getattr(args, "argv", None) is not None:
            # The job gets its own process and the console attaches to it: closing the terminal,
            # or quitting and choosing "detach", leaves the job running.
            from console.tui.launch import start_and_attach

            return start_and_attach(job.name, args.argv, settings)
        from console.tui.launch import run_job_in_tui

        return run_job_in_tui(job, settings, resources=resources)
    from console.headless import run_headless

    outcome: JobOutcome = anyio.run(lambda: run_headless(job, settings, log_format=args.log_format, resources=resources,
                                                      verbose=getattr(args, "verbose", False)))
    return finish(outcome)
