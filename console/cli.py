"""`opsconsole`: one entry point for every job and tool.

Each subcommand lives in `console/commands/<name>.py` with a `register(subparsers)` function.
Importing this module must not import Textual: the headless path never loads it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from engine.errors import EXIT_CODES_HELP, ExitCode, OpsError
from engine.files import os_error
from engine.redact import redact

# Order is the order shown in --help.
COMMAND_MODULES = [
    "console.commands.demo",
    "console.commands.enrich",
    "console.commands.gates",
    "console.commands.mutations",
    "console.commands.reset",
    "console.commands.data",
    "console.commands.pipeline",
    "console.commands.replay",
    "console.commands.score",
    "console.commands.config",
    "console.commands.doctor",
    "console.commands.db",
    "console.commands.selftest",
    "console.commands.serve",
    "console.commands.status",
    "console.commands.jobctl",
    "console.commands.attach",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: one clear line, exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="opsconsole",
        description="Ops Console: run and watch the forecast pipeline and the ClickHouse enrichment job. "
        "Run with no command to open the console.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        # No guard: a command module that fails to import is a packaging bug and must say so.
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # What was asked for, so a job command on a terminal can start itself detached, headless.
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    try:
        if args.command is None:
            from console.commands.ui import open_console

            return int(open_console(args))
        return int(args.func(args))
    except OpsError as exc:
        print(f"opsconsole: {redact(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("opsconsole: interrupted", file=sys.stderr)
        return int(ExitCode.ABORTED)
    except BrokenPipeError:
        # `opsconsole gates | head`: the reader went away. Not an error worth a traceback; point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except OSError as exc:  # (after BrokenPipeError, an OSError too)
        # the runtime dir read-only or full, wherever it surfaced: said, not a traceback
        error = os_error(exc)
        print(f"opsconsole: {redact(str(error))}", file=sys.stderr)
        return int(error.exit_code)


if __name__ == "__main__":
    sys.exit(main())
