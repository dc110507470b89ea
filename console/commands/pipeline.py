"""`opsconsole pipeline`: the daily forecast pipeline (pipeline-runbook.md) as a job."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from console.commands import add_job_args, positive_int, run_job_command, settings_from

if TYPE_CHECKING:
    from engine.pipeline.options import PipelineOptions

WINDOW_HELP = (
    "close-date window (UTC), sent to Gamma as end_date_min/end_date_max: --window-days N takes markets whose "
    "endDate is from the run's start instant (now, UTC) to exactly N*24h later; --target-date YYYY-MM-DD takes "
    "markets closing on that UTC calendar day, 00:00:00Z to 23:59:59Z inclusive. Neither flag: --window-days 7. "
    "With --source and neither flag, no date filter is applied to the snapshot."
)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "pipeline",
        help="daily forecast pipeline: Gamma markets -> research -> forecasts -> Postgres",
        description="Fetch open Polymarket markets, run the research and forecast suites per event, and persist "
        "every result as soon as it returns. Reruns skip what is stored. " + WINDOW_HELP,
    )
    win = p.add_mutually_exclusive_group()
    win.add_argument("--window-days", type=_non_negative, metavar="N",
                     help="markets closing between now (UTC) and now + N days (default 7)")
    win.add_argument("--target-date", type=_date, metavar="YYYY-MM-DD",
                     help="markets closing on this UTC day: 00:00:00Z .. 23:59:59Z")
    p.add_argument("--limit", type=positive_int, metavar="N", help="stop after N distinct markets")
    p.add_argument("--source", type=Path, metavar="FILE",
                   help="read a saved Gamma /markets snapshot (JSON list) instead of calling the API")
    p.add_argument("--suite", action="append", metavar="ID", help="run only this suite (repeatable): baseline, openai, gemini")
    p.add_argument("--stage", choices=("research", "forecast", "both"), default="both",
                   help="research only, forecast only (reuses stored research), or both (default)")
    p.add_argument("--include-research", action="append", default=[], metavar="VARIANTS",
                   help="comma-separated research variants to run (variant or suite:variant); repeatable")
    p.add_argument("--include-forecast", action="append", default=[], metavar="VARIANTS",
                   help="comma-separated forecast variants to run (variant or suite:variant); repeatable")
    p.add_argument("--list-experiments", action="store_true",
                   help="print the suite manifest (JSON, after filters and overrides) and exit; no network, no database")
    p.add_argument("--experiment-override", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="override one config value, e.g. openai:research:openai_web_search.model=gpt-4-turbo "
                   "(typed: true/false/null, numbers, \"quoted\", [lists]); repeatable; wins over files")
    p.add_argument("--experiment-override-file", action="append", default=[], type=Path, metavar="FILE",
                   help="JSON object {experiment name: {config}}; repeatable, later files win")
    p.add_argument("--event-batch-size", type=positive_int, metavar="N",
                   help="at most N events in flight at once (sliding window); default PIPELINE_EVENT_BATCH_SIZE (4)")
    p.add_argument("--dry-run", action="store_true",
                   help="run the strategies and print the summary, but write nothing to the database")
    p.add_argument("--debug-dump-dir", type=Path, metavar="DIR",
                   help="where request/response dumps go (default PIPELINE_DEBUG_DUMP_DIR or runtime/debug-dumps)")
    p.add_argument("--no-debug-dump", action="store_true", help="write no debug dumps")
    p.add_argument("--summary-path", type=Path, metavar="FILE", help="also write the summary as JSON here")
    w = p.add_argument_group(
        "workers", "share one run between several processes or machines through one Postgres (SUPABASE_DB_URL / "
        "POSTGRES_URL): the first --worker with a given set of options creates the run and queues its events; "
        "workers started with the same options join that open run and claim events until none are left; the "
        "last one finalizes the run. A worker that dies loses its claims when its lease runs out.")
    w.add_argument("--worker", action="store_true", help="process a shared run as one of several workers")
    w.add_argument("--run-id", metavar="ID", help="with --worker: join this open worker run (it must have the same options)")
    w.add_argument("--worker-name", metavar="NAME",
                   help="with --worker: label for this worker (logs, claims, runtime/pipeline-worker-NAME.*); "
                   "needed for a second worker sharing a runtime dir on one machine")
    w.add_argument("--lease-seconds", type=float, metavar="S",
                   help="with --worker: claim lease, renewed every S/3 (default PIPELINE_WORKER_LEASE_S, 60); "
                   "a dead worker's events are picked up after at most S seconds")
    add_job_args(p)
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> PipelineOptions:
    from engine.pipeline.options import PipelineOptions

    return PipelineOptions(
        suites=args.suite, stage=args.stage, include_research=args.include_research,
        include_forecast=args.include_forecast, experiment_overrides=args.experiment_override,
        override_files=args.experiment_override_file, window_days=args.window_days, target_date=args.target_date,
        limit=args.limit, source=args.source, event_batch_size=args.event_batch_size, dry_run=args.dry_run,
        debug_dump_dir=args.debug_dump_dir, no_debug_dump=args.no_debug_dump, summary_path=args.summary_path,
        run_id=args.run_id, worker=args.worker, worker_name=args.worker_name, lease_s=args.lease_seconds,
    )


def list_experiments(args: argparse.Namespace) -> int:
    from engine.pipeline.experiments import default_registry, effective_configs, manifest, select, suite_availability
    from engine.pipeline.overrides import build_override_set

    settings = settings_from(args)
    registry = default_registry()
    overrides = build_override_set(args.experiment_override_file, args.experiment_override)
    configs = effective_configs(registry, overrides)
    selection = select(registry, suites=args.suite, stage=args.stage, include_research=args.include_research,
                       include_forecast=args.include_forecast, available=suite_availability(registry, settings))
    print(json.dumps(manifest(registry, selection, configs), indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_experiments:
        return list_experiments(args)
    from engine.pipeline.job import PipelineJob
    from engine.last_result import load_last
    from engine.pipeline.summary import format_summary

    from engine.errors import BadInput

    if not args.worker and (args.run_id or args.worker_name or args.lease_seconds is not None):
        raise BadInput("--run-id, --worker-name and --lease-seconds only apply with --worker")
    settings = settings_from(args)
    if args.worker:
        from engine.pipeline.worker import PipelineWorkerJob

        job: PipelineJob = PipelineWorkerJob(options_from(args))
    else:
        job = PipelineJob(options_from(args))  # validates flags and overrides before anything starts
    started = time.time()
    code = run_job_command(job, settings, args)
    if job.summary is None:
        # On a terminal the run had its own process (the console attached to it): it left its summary.
        job.summary = load_last(settings.runtime, "pipeline", since=started)
    if job.summary is not None:
        sys.stdout.write(format_summary(job.summary) + "\n")
        sys.stdout.flush()
    return code
