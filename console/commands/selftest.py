from __future__ import annotations

import argparse

from console.commands import add_job_args, run_job_command, settings_from
from engine.jobs.selftest import SelftestJob


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "selftest",
        help="run a small job that exercises the runtime (progress, checkpoints, pause/stop, signals); no stores needed",
    )
    p.add_argument("--units", type=int, default=100, help="units of work (default 100)")
    p.add_argument("--unit-seconds", type=float, default=0.05, help="seconds per unit (default 0.05)")
    p.add_argument("--resume", action="store_true", help="continue after the last checkpointed unit")
    add_job_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    job = SelftestJob(units=args.units, unit_seconds=args.unit_seconds, resume=args.resume)
    return run_job_command(job, settings_from(args), args)
