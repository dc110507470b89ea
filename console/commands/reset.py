"""`opsconsole reset --hard | --market ID`: the runbook's emergency resets, backed up and confirmed."""

from __future__ import annotations

import argparse
import sys

import anyio

from console.commands import settings_from
from engine.enrichment.resets import ResetPlan, run_reset
from engine.errors import ExitCode, OpsError
from engine.stores.clickhouse import open_clickhouse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "reset",
        help="reset enrichment P&L: --hard (everything) or --market ID (one market); backs up first",
        description="Back up (runtime/backups/<timestamp>/: resolved trades and wallet_resolution_outcomes "
        "as CSV, the checkpoint, a manifest), then reset. --hard: realized_pnl_usd = NULL and is_resolved = 0 "
        "on every trade, TRUNCATE wallet_resolution_outcomes, remove runtime/full-enrichment.state.json and "
        "the Postgres ops_job_checkpoints row; then start Step D fresh. --market ID: the same for one "
        "market's trades and outcome rows; the next `opsconsole enrich --step D` reprocesses it. Refused "
        "while the enrichment job runs.",
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--hard", action="store_true", help="reset all enrichment progress (the nuclear option)")
    scope.add_argument("--market", metavar="ID", help="reset one market's P&L and outcomes")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required without a terminal)")
    p.set_defaults(func=run)


def _confirm(plan: ResetPlan, assume_yes: bool) -> bool:
    print(plan.describe())
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise OpsError("refusing to reset without confirmation: no terminal to ask on; nothing was changed",
                       exit_code=ExitCode.USAGE, hint="re-run with --yes")
    answer = input("Back up and reset? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ch = open_clickhouse(settings)
    try:
        result = anyio.run(lambda: run_reset(
            ch, settings, market_id=None if args.hard else args.market,
            confirm=lambda plan: _confirm(plan, args.yes), log=print,
        ))
    finally:
        ch.close()
    if result is None:
        print("not confirmed; nothing was changed")
        return int(ExitCode.OK)
    print(f"backup: {result.backup_dir}")
    if args.hard:
        print("next: opsconsole enrich --step D   (starts Step D from the beginning), then --step E")
    else:
        print("next: opsconsole enrich --step D   (reprocesses this market), then opsconsole enrich --step E")
    return int(ExitCode.OK)
