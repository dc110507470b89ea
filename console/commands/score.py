"""`opsconsole score`: score stored forecasts once their markets resolve; print the leaderboard."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from console.commands import add_job_args, run_job_command, settings_from, wants_ui
from console.exit import finish


def _since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD or ISO 8601): {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "score",
        help="score stored forecasts against resolved markets (Brier, log loss, skill vs baseline)",
        description="Find every stored forecast whose market has resolved (asking Gamma for the markets by id, or "
        "reading --source), score it (Brier, log loss), store the scores in forecast_scores, and print a "
        "leaderboard per variant with the Brier skill score against baseline:forecast:market_prices. "
        "Reruns change nothing unless a resolution changed.",
    )
    p.add_argument("--since", type=_since, metavar="DATE", help="only forecasts stored on or after DATE (UTC)")
    p.add_argument("--suite", action="append", default=[], metavar="ID",
                   help="only this suite's forecasts (repeatable); the baseline is always scored as the reference")
    p.add_argument("--include-forecast", action="append", default=[], metavar="VARIANTS",
                   help="comma-separated forecast variants (variant or suite:variant); repeatable")
    p.add_argument("--source", type=Path, metavar="FILE",
                   help="a saved Gamma snapshot (JSON list of market objects) instead of the API: offline scoring")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document (progress goes to stderr)")
    p.add_argument("--view", action="store_true",
                   help="on a terminal, open the Scores view (leaderboard and reliability diagram) when done")
    p.add_argument("--summary-path", type=Path, metavar="FILE", help="also write the JSON summary here")
    add_job_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.last_result import load_last
    from engine.scoring.job import ScoreJob, ScoreOptions, summary_json
    from engine.scoring.report import format_table

    settings = settings_from(args)
    job = ScoreJob(ScoreOptions(since=args.since, suites=tuple(args.suite),
                                include_forecast=tuple(args.include_forecast), source=args.source,
                                summary_path=args.summary_path))
    if args.json and not wants_ui(args):
        # stdout carries exactly one JSON document; the job's progress lines go to stderr.
        import anyio

        from console.headless import run_headless

        code = finish(anyio.run(lambda: run_headless(job, settings, log_format=args.log_format, stream=sys.stderr)))
    elif wants_ui(args) and getattr(args, "argv", None) is not None:
        # On a terminal the job runs as its own process with the console attached; it leaves its
        # summary in the runtime dir, so the leaderboard is still printed here once the console closes.
        started = time.time()
        code = run_job_command(job, settings, args)
        job.summary = load_last(settings.runtime, job.name, since=started)
        if job.summary is None and code == 0:
            sys.stderr.write("score: no summary yet (still running detached?); see `opsconsole status`\n")
    else:
        code = run_job_command(job, settings, args)
    if job.summary is not None:
        sys.stdout.write((summary_json(job.summary) if args.json else format_table(job.summary)) + "\n")
        sys.stdout.flush()
        if args.view and sys.stdin.isatty() and sys.stdout.isatty():
            from console.tui.scores import ScoresApp

            ScoresApp(job.summary).run()
    return code
