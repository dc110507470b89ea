"""`opsconsole data load trades|markets|resolutions FILE`: validated, all-or-nothing, idempotent."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

from console.commands import settings_from
from engine.enrichment.load_staging import LoadStopped
from engine.enrichment.loaders import (
    FORMATS, KINDS, LoadReport, formats_help, list_errors, load_file, unknown_columns_text,
)
from engine.enrichment.polymarket_load import PolymarketReport, is_polymarket_file, load_polymarket_file
from engine.errors import ExitCode
from engine.redact import redact
from engine.stores.clickhouse import open_clickhouse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("data", help="load trades, markets or resolutions into ClickHouse")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    load = dsub.add_parser(
        "load",
        help="validate and load one file (all-or-nothing; resolutions load their valid rows)",
        description=textwrap.fill("Validate every row, then load the file in one step. A trades or markets file with "
        "any bad row is refused as a whole (exit 4) naming the line numbers and reasons; --skip-invalid "
        "loads the valid rows and lists the rest. Resolutions load their valid rows and list the "
        "invalid ones (also kept in resolution_rejects); exit 0 unless none was valid. Loading the "
        "same file again adds nothing. The load becomes visible in one step: a kill at any moment leaves "
        "none of it; SIGTERM stops it before that step (exit 0, nothing loaded).", 100),
        epilog=formats_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("kind", choices=KINDS, help="what the file holds")
    load.add_argument("file", help="path of the file")
    load.add_argument("--format", choices=FORMATS, default="auto", help="file format (default: by extension)")
    load.add_argument("--skip-invalid", action="store_true", help="load the valid rows of a file that has bad ones")
    load.add_argument("--strict", action="store_true",
                      help="refuse a file with a column the format does not document (default: warn and ignore it)")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.set_defaults(func=run_load)


def _print_report(r: LoadReport) -> None:
    print(f"{r.kind} from {r.path} ({r.format}): {r.records} record(s), {r.valid} valid, "
          f"inserted {r.inserted}, unchanged {r.unchanged}, invalid {r.invalid_count}")
    if r.unknown_columns:
        print(f"warning: unknown column(s) ignored: {unknown_columns_text(r.kind, r.unknown_columns)} "
              "(--strict refuses such files)")
    if r.conflicts:
        print(f"warning: {r.conflicts} trade_id(s) were already loaded with DIFFERENT values and were kept as "
              "they are (fills are immutable); to replace them, remove those trades first")
    if r.invalid:
        verb = "rejected" if r.kind == "resolutions" else "skipped"
        print(f"{verb} {r.invalid_count} record(s):")
        print(list_errors(r.invalid, total=r.invalid_count))


class _Stop:
    """SIGTERM/SIGINT during a load, as a job handles them: the first asks the load to stop (it drops
    its staging tables before the move and nothing is loaded; exit 0, a graceful stop), a second
    aborts at once (exit 130; what a kill -9 would leave, which the next start cleans up)."""

    def __init__(self) -> None:
        self.requested = ""

    def __call__(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            print(f"second {name}: aborting now; nothing of this load is visible, the next load drops its staging",
                  file=sys.stderr, flush=True)
            os._exit(int(ExitCode.ABORTED))
        self.requested = name
        print(f"{name} received: stopping the load before its move (send it again to abort at once)",
              file=sys.stderr, flush=True)


def _run_in_thread(fn: Callable[[], LoadReport]) -> LoadReport:
    """Run the load in a worker thread so this (main) thread stays free to take signals while chDB
    works in C; the worker's result or exception comes back here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["report"] = fn()
        except BaseException as exc:  # handed to the main thread, which raises it
            box["error"] = exc

    worker = threading.Thread(target=target, name="data-load", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["report"]  # type: ignore[no-any-return]


def _print_polymarket(r: PolymarketReport, as_json: bool) -> int:
    if as_json:
        print(redact(json.dumps(r.as_dict(), indent=2)))
        return int(ExitCode.OK)
    print(r.conversion.line())
    if r.load is not None:
        _print_report(r.load)
    return int(ExitCode.OK)


def run_load(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ch = open_clickhouse(settings)
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        def progress(n: int) -> None:
            if sys.stderr.isatty():
                print(f"\r  validated {n:,} records…", end="", file=sys.stderr, flush=True)

        if args.kind == "trades" and is_polymarket_file(args.file, args.format):  # data-api rows: engine/enrichment/polymarket_load.py
            return _print_polymarket(load_polymarket_file(ch, args.file, runtime=settings.runtime, fmt=args.format,
                                                          skip_invalid=args.skip_invalid, progress=progress), args.json)
        report = _run_in_thread(lambda: load_file(
            ch, args.kind, args.file, fmt=args.format, skip_invalid=args.skip_invalid, progress=progress,
            should_stop=lambda: bool(stop.requested), strict=args.strict))
    except LoadStopped as exc:
        print(f"{args.kind} from {args.file}: {exc}")
        return int(ExitCode.OK)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ch.close()
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the progress line
    if args.json:
        print(redact(json.dumps(report.as_dict(), indent=2)))
    else:
        _print_report(report)
    return int(ExitCode.OK)
