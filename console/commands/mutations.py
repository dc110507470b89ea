"""`opsconsole mutations`: pending ClickHouse mutations of our tables, per-table limits, kill by id."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from dataclasses import asdict

import anyio

from console.commands import settings_from
from engine.enrichment.mutations import kill_mutation, mutation_limits, pending_mutations, wait_for_mutations
from console.commands.owner import ask_owner, typed
from engine.errors import ExitCode, LockHeld, OpsError
from engine.events import MutationInfo
from engine.redact import redact
from engine.stores.clickhouse import open_clickhouse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "mutations",
        help="pending ClickHouse mutations of our database (table, id, age, parts, failure); --kill ID",
        description="List unfinished mutations of the enrichment database (the runbook's "
        "getPendingMutationDetails), with each table's limits: ClickHouse delays inserts at "
        "number_of_mutations_to_delay and refuses new mutations at number_of_mutations_to_throw.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--table", action="append", metavar="TABLE", help="only this table (repeatable)")
    p.add_argument("--kill", metavar="ID", help="kill the pending mutation with this id (e.g. mutation_12.txt)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required without a terminal)")
    p.add_argument("--wait", action="store_true",
                   help="poll until no mutation is pending (the runbook's waitForNoPendingMutations); exit 1 "
                   "at once if one reports a failure, or when --timeout passes")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="--wait limit in seconds (default MUTATION_WAIT_TIMEOUT, 600)")
    p.add_argument("--poll", type=float, default=2.0, metavar="S", help="--wait poll interval (default 2 s)")
    p.set_defaults(func=run)


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise OpsError("refusing to kill a mutation without confirmation: no terminal to ask on",
                       exit_code=ExitCode.USAGE, hint="re-run with --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _wait(ch: object, args: argparse.Namespace, default_timeout: float) -> int:
    last = [-1]

    def status(pending: list[Any]) -> None:
        if len(pending) != last[0]:
            last[0] = len(pending)
            print(f"pending_mutations = {len(pending)}", flush=True)

    anyio.run(lambda: wait_for_mutations(ch, tables=args.table, timeout_s=args.timeout or default_timeout,  # type: ignore[arg-type]
                                         poll_s=max(args.poll, 0.05), on_status=status))
    print("no pending mutations")
    return int(ExitCode.OK)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        ch = open_clickhouse(settings)
    except LockHeld as refused:
        if args.kill or args.wait:
            raise  # steering a mutation stays with the process that owns the store
        # A job holds the embedded store: it lists them for us (no per-table limits there).
        job, data = ask_owner(settings, "mutations", refused)
        pending = [m for m in typed(MutationInfo, data) if not args.table or m.table in args.table]
        print(f"(read by the running job {job})", file=sys.stderr)
        return _report(settings, args, pending, [])
    try:
        if args.kill:
            match = [m for m in pending_mutations(ch) if m.mutation_id == args.kill.strip()]
            if match:
                m = match[0]
                print(f"{m.mutation_id} on {m.table}: {m.command[:200]}")
                if m.latest_fail_reason:
                    print(f"  failing: {m.latest_fail_reason[:300]}")
                if not _confirm(f"Kill mutation {m.mutation_id} on {ch.database}.{m.table}?", args.yes):
                    print("not killed")
                    return int(ExitCode.OK)
            killed = kill_mutation(ch, args.kill)  # names the problem if the id is unknown
            print(f"killed {killed.mutation_id} on {killed.table}; rows it had not rewritten keep their old values")
            return int(ExitCode.OK)
        if args.wait:
            return _wait(ch, args, settings.mutation_wait_timeout_s)
        pending = pending_mutations(ch, args.table)
        limits = mutation_limits(ch, args.table)
    finally:
        ch.close()
    return _report(settings, args, pending, limits)


def _report(settings: Any, args: argparse.Namespace, pending: list[Any], limits: list[Any]) -> int:
    if args.json:
        doc = {"database": settings.clickhouse_database, "pending": len(pending),
               "mutations": [asdict(m) for m in pending], "limits": [
                   {**asdict(lim), "headroom": lim.headroom} for lim in limits]}
        print(redact(json.dumps(doc, indent=2)))
        return int(ExitCode.OK)
    print(f"pending_mutations = {len(pending)} (database {settings.clickhouse_database})")
    for m in pending:
        print(f"  {m.table:<28} {m.mutation_id:<20} age {m.age_s:>6.0f}s  parts_to_do {m.parts_to_do:<5} "
              f"{' '.join(m.command.split())[:90]}")
        if m.latest_fail_reason:
            print(f"    FAILING: {' '.join(m.latest_fail_reason.split())[:300]}")
    if limits:
        print("per-table limits (number_of_mutations_to_delay / number_of_mutations_to_throw):")
    for lim in limits:
        print(f"  {lim.table:<28} pending {lim.pending:<5} delay at {lim.to_delay:<5} throw at {lim.to_throw:<5} "
              f"headroom {lim.headroom}")
    return int(ExitCode.OK)
