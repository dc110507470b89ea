"""`opsconsole serve`: the same console in a browser (textual-serve), on loopback by default."""

from __future__ import annotations

import argparse
import shlex
import sys

from engine.errors import BadInput

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("serve", help="open the console in a browser (textual-serve); binds to 127.0.0.1 by default")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--public-url", default=None, help="URL the browser uses, when behind a proxy")
    p.set_defaults(func=run)


def serve_command() -> str:
    # Each browser session runs its own console process: the launcher, as bare `opsconsole` would.
    return shlex.join([sys.executable, "-m", "console"])


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise BadInput(f"--port must be between 1 and 65535, got {args.port}")
    if args.host not in LOOPBACK:
        print(f"opsconsole: serving on {args.host}: anyone who can reach this address can steer jobs",
              file=sys.stderr)
    from textual_serve.server import Server

    server = Server(serve_command(), host=args.host, port=args.port, title="Ops Console", public_url=args.public_url)
    server.serve()
    return 0
