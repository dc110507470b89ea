"""`opsconsole demo`: fresh deterministic demo data, Steps A–E on it, then the gates."""

from __future__ import annotations

import argparse
import sys
import time

from console.commands import add_job_args, positive_int, run_job_command, settings_from
from engine.enrichment.demo import SCALES
from engine.enrichment.gates import format_gates
from engine.enrichment.gates_record import load_last_gates
from engine.enrichment.job import DemoRequest, EnrichmentJob
from engine.errors import ExitCode


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "demo",
        help="generate demo trades/markets/resolutions (replacing the enrichment tables' contents), run A–E, print the gates",
    )
    p.add_argument("--scale", choices=tuple(SCALES), default="medium",
                   help="small (3k trades), medium (200k trades, default), seed (the runbook's 2.45M trades)")
    p.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same data (default 7)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N", help="Step D pairs per batch (default BATCH_SIZE or 300)")
    add_job_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    job = EnrichmentJob.from_settings(settings, "all", demo=DemoRequest(args.scale, args.seed), run_gates=True,
                                      batch_size=args.batch_size)
    # Exit 3 when a closing gate FAILs comes from the job's outcome, as for `enrich`.
    started = time.time()
    code = run_job_command(job, settings, args)
    if not job.gates and code in (ExitCode.OK, ExitCode.GATES_FAILED):
        # On a terminal the job ran in its own process (the console attached to it): its closing
        # gates are in the runtime dir's record.
        last = load_last_gates(settings.runtime, since=started)
        job.gates = last[0] if last is not None else []
    if job.gates and code in (ExitCode.OK, ExitCode.GATES_FAILED):
        print(format_gates(job.gates))  # the closing gates, as a table after the run's output
        sys.stdout.flush()
    return code
