"""`opsconsole serve`: the same console in a browser (textual-serve), on loopback by default.

A browser session drives a full console (it can pause, stop and edit jobs), so loopback is not
enough: any local account, and any web page the operator visits (a page may open a WebSocket to
127.0.0.1), could otherwise steer jobs. Hence:

* every request needs the random token made at each start and printed in the URL `serve` shows
  (`/?token=…`); the page then keeps it in an HttpOnly, SameSite=Strict cookie for its WebSocket
  and downloads. Bound to any address, the rule is the same;
* a request carrying an Origin (browsers send one with every WebSocket handshake) must come from
  the served origin, and the Host must be one this server answers to (no DNS rebinding);
* the token never reaches a log: it is registered with the redactor, and log records (aiohttp's
  access log prints query strings) are redacted; console processes never receive it.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from engine.errors import BadInput
from engine.redact import redact, register_secret

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
TOKEN_PARAM = "token"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("serve", help="open the console in a browser (textual-serve); binds to 127.0.0.1 by default")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--public-url", default=None, help="URL the browser uses, when behind a proxy")
    p.set_defaults(func=run)


def serve_command() -> str:
    # Each browser session runs its own console process: the launcher, as bare `opsconsole` would.
    return shlex.join([sys.executable, "-m", "console"])


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts(bind_host: str, port: int, public_url: str | None) -> set[str] | None:
    """Host values (host:port, lower case) this server answers to; None when bound to every
    address (any Host then, the token still required)."""
    hosts: set[str] = set()
    if public_url:
        hosts.add(urlsplit(public_url).netloc.lower())
    if bind_host in LOOPBACK:
        hosts.update(_netloc(h, port) for h in LOOPBACK)
    elif bind_host in WILDCARD:
        return None
    else:
        hosts.add(_netloc(bind_host.lower(), port))
    return hosts


def cookie_name(port: int) -> str:
    return f"opsconsole_token_{port}"  # cookies ignore ports: one name per served port


def guard_middleware(token: str, hosts: set[str] | None, port: int, secure_cookie: bool) -> Any:
    from aiohttp import web

    cookie = cookie_name(port)

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        host = request.headers.get("Host", "").lower()
        if hosts is not None and host not in hosts:
            raise web.HTTPForbidden(text="opsconsole serve: unknown Host\n")
        origin = request.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            origin_host = parts.netloc.lower()
            same = origin_host in hosts if hosts is not None else origin_host == host
            if parts.scheme not in ("http", "https") or not same:
                raise web.HTTPForbidden(text="opsconsole serve: cross-origin request refused\n")
        offered = request.query.get(TOKEN_PARAM) or request.cookies.get(cookie) or ""
        if not hmac.compare_digest(offered.encode(), token.encode()):
            raise web.HTTPForbidden(
                text="opsconsole serve: open the URL printed by `opsconsole serve` (it carries the access token)\n")
        response = await handler(request)
        if not response.prepared:  # a WebSocket is already upgraded: no headers to add
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            if request.query.get(TOKEN_PARAM):
                response.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/", secure=secure_cookie)
        return response

    return guard


class _RedactRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def make_server(host: str, port: int, public_url: str | None, token: str) -> Any:
    from aiohttp import web
    from textual_serve.server import Server

    class GuardedServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard_middleware(token, allowed_hosts(host, port, public_url), port,
                                                    secure_cookie=self.public_url.startswith("https")))
            return app

        def initialize_logging(self) -> None:
            super().initialize_logging()
            for handler in logging.getLogger().handlers:
                handler.addFilter(_RedactRecords())

    return GuardedServer(serve_command(), host=host, port=port, title="Ops Console", public_url=public_url)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise BadInput(f"--port must be between 1 and 65535, got {args.port}")
    if args.host not in LOOPBACK:
        print(f"opsconsole: serving on {args.host}: anyone who can reach this address and has the URL's token "
              "can steer jobs", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    register_secret(token)
    server = make_server(args.host, args.port, args.public_url, token)
    base = str(server.public_url).rstrip("/")
    # The one place the token is shown: the operator's terminal, never a log file.
    print(f"opsconsole: open {base}/?{TOKEN_PARAM}={token}", flush=True)
    server.serve()
    return 0
