"""`opsconsole serve` (textual-serve on loopback) and bare `opsconsole` without a terminal."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import httpx

from tests.conftest import OPSCONSOLE, subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bare_opsconsole_without_a_terminal_says_what_to_do(tmp_path) -> None:
    proc = subprocess.run(OPSCONSOLE, env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt")),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2
    assert "needs a terminal" in proc.stderr and "opsconsole serve" in proc.stderr
    assert "Traceback" not in proc.stderr


async def read_console_over_websocket(port: int, until: bytes, token: str) -> bytes:
    import aiohttp

    data = b""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30&token={token}") as ws:
            while until not in data:
                msg = await ws.receive(timeout=60)  # bounds a hang; not a timing assertion
                if msg.type == aiohttp.WSMsgType.BINARY:
                    data += msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    data += msg.data.encode()
                else:
                    break
    return data


def test_serve_binds_loopback_and_serves_the_console_page(tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen([*OPSCONSOLE, "serve", "--port", str(port)],
                            env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token = proc.stdout.readline().rsplit("token=", 1)[-1].strip()  # serve prints its URL first
        deadline = time.monotonic() + 60  # a bound on startup, not a timing assertion
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/?token={token}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert response is not None and response.status_code == 200
        assert "Ops Console" in response.text
        # A browser session: the websocket drives a console process that opens the launcher.
        received = asyncio.run(read_console_over_websocket(port, b"launcher", token))
        assert b"OPS CONSOLE" in received and b"launcher" in received
        # Loopback only: the same port is not reachable on another local address of this machine.
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((other, port)) != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_rejects_a_bad_port(tmp_path) -> None:
    proc = subprocess.run([*OPSCONSOLE, "serve", "--port", "70000"],
                          env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path / "rt")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert "--port must be between 1 and 65535" in proc.stderr
