"""`opsconsole serve` needs its per-start token and a same-origin request, even on loopback.

Before, a WebSocket handshake from loopback with `Origin: http://evil.example` (what a web page the
operator visits can send) was accepted and drove the console; so was any local account.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.conftest import OPSCONSOLE, subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    port: int
    token: str
    proc: subprocess.Popen[str]
    runtime: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    runtime = tmp_path / "rt"
    proc = subprocess.Popen([*OPSCONSOLE, "serve", "--port", str(port)],
                            env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(runtime)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(rf"http://127\.0\.0\.1:{port}/\?token=(\S+)", line)
        assert match, f"serve did not print its URL with a token: {line!r}"
        server = Served(port, match[1], proc, runtime)
        deadline = time.monotonic() + 60  # a bound on startup, not a timing assertion
        while time.monotonic() < deadline:
            try:
                httpx.get(server.base + "/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _handshake(url: str, origin: str | None, cookies: dict[str, str] | None = None) -> int:
    """Status of a WebSocket handshake: 101 when it was accepted."""
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession(cookies=cookies) as session:
        try:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_the_page_needs_the_token(served: Served) -> None:
    assert httpx.get(served.base + "/", timeout=10).status_code == 403
    assert httpx.get(served.base + "/?token=wrong-token", timeout=10).status_code == 403
    ok = httpx.get(served.base + f"/?token={served.token}", timeout=10)
    assert ok.status_code == 200 and "Ops Console" in ok.text
    assert ok.cookies.get(f"opsconsole_token_{served.port}") == served.token  # the page's WebSocket uses it
    # Another Host (DNS rebinding: evil.example resolving to 127.0.0.1) is refused, token or not.
    rebound = httpx.get(served.base + f"/?token={served.token}", headers={"Host": f"evil.example:{served.port}"}, timeout=10)
    assert rebound.status_code == 403


def test_the_websocket_needs_the_token_and_the_served_origin(served: Served) -> None:
    ws = f"ws://127.0.0.1:{served.port}/ws"
    same = served.base
    token = f"?token={served.token}&width=80&height=24"
    assert asyncio.run(_handshake(ws + token, "http://evil.example")) == 403
    assert asyncio.run(_handshake(ws + token, f"http://evil.example:{served.port}")) == 403
    assert asyncio.run(_handshake(ws + "?width=80&height=24", same)) == 403
    assert asyncio.run(_handshake(ws + "?token=wrong&width=80&height=24", same)) == 403
    assert asyncio.run(_handshake(ws + token, same)) == 101
    # The browser's way: the cookie the page set, same origin.
    cookie = {f"opsconsole_token_{served.port}": served.token}
    assert asyncio.run(_handshake(ws + "?width=80&height=24", same, cookie)) == 101
    assert asyncio.run(_handshake(ws + "?width=80&height=24", "http://evil.example", cookie)) == 403


def test_the_token_stays_out_of_logs(served: Served) -> None:
    assert httpx.get(served.base + f"/?token={served.token}", timeout=10).status_code == 200
    assert httpx.get(served.base + f"/?token={served.token}", headers={"Origin": "http://evil.example"}, timeout=10).status_code == 403
    served.proc.terminate()
    out, _ = served.proc.communicate(timeout=30)
    assert "GET /?token=***" in out  # the access log ran, redacted
    assert served.token not in out  # shown once, in the URL line read by the fixture
    for path in served.runtime.rglob("*") if served.runtime.exists() else []:
        if path.is_file():
            assert served.token not in path.read_text(errors="replace"), path


def test_bound_to_every_address_the_token_is_still_required() -> None:
    """`--host 0.0.0.0`: any Host may be used, but the token and a matching Origin still are needed.
    (The same app `serve` builds, run on loopback here so the test opens nothing to the network.)"""
    from aiohttp import web

    from console.commands.serve import make_server

    async def go() -> list[int]:
        port = free_port()
        server = make_server("0.0.0.0", port, None, "the-right-token-123")
        runner = web.AppRunner(await server._make_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session:
                statuses = []
                for query, headers in [
                    ("", {}),
                    ("?token=wrong", {}),
                    ("?token=the-right-token-123", {"Origin": "http://evil.example"}),
                    ("?token=the-right-token-123", {"Host": f"ops.example:{port}", "Origin": f"http://ops.example:{port}"}),
                ]:
                    async with session.get(f"http://127.0.0.1:{port}/{query}", headers=headers) as resp:
                        statuses.append(resp.status)
                return statuses
        finally:
            await runner.cleanup()

    assert asyncio.run(go()) == [403, 403, 403, 200]
