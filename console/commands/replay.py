"""`opsconsole replay`: persist a pipeline run's debug dumps without calling any LLM."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio

from console.commands import settings_from


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "replay",
        help="persist a pipeline run's debug dumps (no LLM calls; idempotent)",
        description="Insert the events, research artifacts and forecasts recorded in a run's debug dumps "
        "(runtime/debug-dumps/<run_id>/) into Postgres, without any LLM call. Safe to repeat: rows already "
        "stored are left alone.",
    )
    p.add_argument("--run-id", required=True, help="the run whose dumps to replay")
    p.add_argument("--dump-dir", type=Path, metavar="DIR",
                   help="dump root if not PIPELINE_DEBUG_DUMP_DIR / runtime/debug-dumps")
    p.add_argument("--dry-run", action="store_true", help="validate the dumps and report; touch no database")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.pipeline.replay import replay_run

    settings = settings_from(args)
    report = anyio.run(lambda: replay_run(settings, args.run_id, args.dump_dir, args.dry_run))
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 1 if report.problems else 0
