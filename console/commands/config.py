from __future__ import annotations

import argparse
import json

from console.commands import settings_from
from engine.settings import describe


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("config", help="print the effective settings and where each came from (secrets redacted)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = describe(settings_from(args))
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="opsconsole settings", title_justify="left")
    table.add_column("variable", style="bold")
    table.add_column("value")
    table.add_column("source", style="dim")
    for r in rows:
        table.add_row(r.name, r.value, r.source)
    Console().print(table)
    return 0
