"""Bare `opsconsole`: the console's launcher (or a hint when there is no terminal)."""

from __future__ import annotations

import argparse
import os
import sys

from console.commands import settings_from


def open_console(args: argparse.Namespace) -> int:
    # Under `opsconsole serve` the console talks to a browser through textual-serve's driver.
    served = "web_driver" in os.environ.get("TEXTUAL_DRIVER", "")
    if not served and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("opsconsole: the console needs a terminal; run `opsconsole --help` for the commands, "
              "or `opsconsole serve` to open it in a browser", file=sys.stderr)
        return 2
    settings = settings_from(args)
    if not served:
        # One job running: the operator came for it. Otherwise the launcher lists them all.
        import anyio

        from engine.endpoint_client import running_jobs

        running = anyio.run(running_jobs, settings.runtime)
        if len(running) == 1:
            from console.tui.launch import attach_in_tui

            return attach_in_tui(settings, running[0].hello.job)
    from console.tui.launch import open_launcher

    return open_launcher(settings)
