from __future__ import annotations

import argparse
import json

import anyio

from console.commands import settings_from
from engine.doctor import run_doctor


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("doctor", help="check both stores, migrations, the runtime directory and API keys")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    checks = anyio.run(run_doctor, settings)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        colours = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}
        table = Table(title="opsconsole doctor", title_justify="left")
        for col in ("area", "check", "status", "detail"):
            table.add_column(col)
        for c in checks:
            table.add_row(c.area, c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail)
        Console().print(table)
    return 1 if any(c.status == "FAIL" for c in checks) else 0
