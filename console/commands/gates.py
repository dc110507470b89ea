"""`opsconsole gates`: the runbook's validation gates, computed from the data (exit 3 on FAIL)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from console.commands import settings_from
from engine.enrichment.gates import any_failed, format_gates
from engine.enrichment.gates_record import compute_and_save
from console.commands.owner import ask_owner, typed
from engine.errors import ExitCode, LockHeld
from engine.events import GateResult
from engine.stores.clickhouse import open_clickhouse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "gates",
        help="print the enrichment gates (markets_missing_dim, pnl_nulls, wallets_with_outcomes, "
        "pending_mutations, bad_markets); exit 3 if one FAILs",
    )
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.set_defaults(func=run)


def gate_dicts(gates: list[Any]) -> list[dict[str, Any]]:
    return [{"name": g.name, "status": g.status, "actual": g.actual, "expected": g.expected, "detail": g.detail} for g in gates]


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        gates = compute_and_save(open_clickhouse(settings), settings.runtime)
    except LockHeld as refused:
        # A job holds the embedded store: it computes the gates for us.
        job, data = ask_owner(settings, "gates", refused)
        gates = typed(GateResult, data)
        print(f"(computed by the running job {job})", file=sys.stderr)
    failed = any_failed(gates)
    if args.json:
        print(json.dumps({"ok": not failed, "gates": gate_dicts(gates)}, indent=2, default=str))
    else:
        print(format_gates(gates))
    sys.stdout.flush()
    return int(ExitCode.GATES_FAILED if failed else ExitCode.OK)
