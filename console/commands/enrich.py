"""`opsconsole enrich`: Steps A–E of the enrichment runbook, crash-resumable Step D."""

from __future__ import annotations

import argparse
from pathlib import Path

from console.commands import add_job_args, positive_int, run_job_command, settings_from
from engine.enrichment.daily import DailyEnrichmentJob, is_daily
from engine.enrichment.job import EnrichmentJob


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "enrich",
        help="run enrichment steps A–E (D = batched, checkpointed P&L; E = resolution accuracy), then the gates",
        description="Run enrichment steps in order A, B, C, D, E. Step D checkpoints after every batch to "
        "runtime/full-enrichment.state.json and Postgres; SIGTERM/SIGINT finish the current batch, save "
        "the checkpoint and exit 0; --resume continues after the checkpoint's cursor (BATCH_SIZE may change).",
    )
    p.add_argument("--step", default="all",
                   help="T, A, B, C, D, E or all (= A–E; comma-separated list allowed; default all); T fetches "
                   "trades from the data-api; daily: ingest (when configured), A–E incrementally, then the gates")
    p.add_argument("--resume", action="store_true", help="Step D: continue from runtime/full-enrichment.state.json")
    p.add_argument("--full", action="store_true",
                   help="Step D: recompute every pair (default: after a complete run, only pairs with new trades, "
                   "new or corrected resolutions, or reset P&L)")
    p.add_argument("--force", action="store_true", help="Step E: run even if Step D is incomplete or mutations are pending")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="Step D pairs per batch (default BATCH_SIZE or 300; also changeable live)")
    p.add_argument("--mutation-wait-every", type=positive_int, default=None, metavar="N",
                   help="wait for pending mutations every N batches (default MUTATION_WAIT_EVERY or 5)")
    p.add_argument("--write-strategy", choices=("auto", "lightweight", "classic"), default=None,
                   help="Step D writes: lightweight UPDATE, classic ALTER TABLE … UPDATE, or auto (default STEP_D_WRITE_STRATEGY or auto)")
    p.add_argument("--snapshot", metavar="FILE", default=None,
                   help="Steps A and C: read Gamma markets from this snapshot file instead of the API (offline)")
    p.add_argument("--offline", action="store_true", help="Steps A and C: never call the Gamma API")
    p.add_argument("--focus-file", metavar="FILE", default=None,
                   help="Step A: also (re)fetch the market ids listed in FILE (the runbook's FOCUS_FILE)")
    p.add_argument("--condition", nargs="+", metavar="ID", default=None,
                   help="Step T: fetch trades of these condition ids (default: the markets in markets_dim)")
    p.add_argument("--event-slug", metavar="S", default=None, help="Step T: fetch trades of this event's markets")
    p.add_argument("--wallet", metavar="W", default=None, help="Step T: only this wallet's trades")
    p.add_argument("--summary-path", type=Path, metavar="FILE", default=None,
                   help="also write the run's summary, every gate in full, as JSON here (CI artifacts)")
    add_job_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    job_class = DailyEnrichmentJob if is_daily(args.step) else EnrichmentJob
    job = job_class.from_settings(
        settings, args.step, resume=args.resume, force=args.force, full=args.full, summary_path=args.summary_path,
        batch_size=args.batch_size, mutation_wait_every=args.mutation_wait_every, write_strategy=args.write_strategy,
        abc_options={"snapshot": args.snapshot, "offline": args.offline or None, "focus_file": args.focus_file,
                     "conditions": args.condition, "event_slug": args.event_slug, "wallet": args.wallet},
    )
    return run_job_command(job, settings, args)
