"""Hostile clients never slow or break the job: never-reading, garbage, a 100 MB line, 100
connections. The job completes with the same result; every cut-off is in its log."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anyio
import pytest

from engine.endpoint import MAX_BACKLOG, MAX_CLIENTS
from engine.endpoint_client import connect
from tests.endpoint.helpers import WAIT, await_until, output, log_text, start_selftest, units_done, wait_for_socket

UNITS = 300


def _raw(sock_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT)
    s.connect(str(sock_path))
    return s


def _read_line(s: socket.socket, limit: int = 64 << 20) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        assert len(buf) < limit
    return bytes(buf.split(b"\n", 1)[0])


def _read_all(s: socket.socket) -> bytes:
    buf = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _stream_huge_line(sock_path: Path, total: int = 100 << 20) -> int:
    """Send up to `total` bytes with no newline; returns how many went out before the job hung up."""
    s = _raw(sock_path)
    sent = 0
    chunk = b"x" * (1 << 20)
    try:
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return sent


@pytest.mark.anyio
async def test_hostile_clients_are_cut_off_and_the_job_finishes_unharmed(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = start_selftest(rt, units=UNITS, unit_seconds=0.01)
    try:
        sock = wait_for_socket(rt, proc)
        async with connect(rt, "selftest") as driver:
            assert (await driver.pause()).ok  # hold the job while the hostile clients do their worst
            await driver.wait_for_state("paused")

            # 1. A client that never reads, while another floods the job with events (each
            # set_live publishes a SettingsChanged and a LogLine, neither of which coalesces).
            never_reads = _raw(sock)
            never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            flood = MAX_BACKLOG  # commands: twice as many events as the backlog allows

            async def flooder(n: int) -> None:
                for _ in range(n):
                    reply = await driver.set_live(unit_seconds=0.01)
                    assert reply.ok, reply.error

            with anyio.fail_after(WAIT * 3):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(flooder, flood // 8)
            await await_until(lambda: "not reading" in log_text(rt), proc, "the never-reading client's cut-off")
            never_reads.close()

            # 2. Garbage: each bad line is answered with an error, then the client is cut off.
            garbage = _raw(sock)
            garbage.sendall(b"hello?\n{\"kind\": 3}\n[1, 2]\n{\"kind\": \"command\"}\n")
            received = await anyio.to_thread.run_sync(_read_all, garbage)
            garbage.close()
            replies = [json.loads(line) for line in received.splitlines()
                       if line.startswith(b'{"kind":"reply"')]
            assert len(replies) == 3 and all(not r["ok"] and "bad message" in r["error"] for r in replies)
            await await_until(lambda: "sent 3 malformed lines" in log_text(rt), proc, "the garbage client's cut-off")

            # 3. A 100 MB line: cut off after the first MiB, long before it is all sent.
            sent = await anyio.to_thread.run_sync(_stream_huge_line, sock)
            assert sent < 100 << 20
            await await_until(lambda: "sent a line longer than 1,048,576 bytes" in log_text(rt), proc, "the long-line cut-off")

            # 4. 100 connections at once: at most MAX_CLIENTS are served, the rest refused in one line.
            def hundred() -> list[bytes]:
                conns = [_raw(sock) for _ in range(100)]
                try:
                    return [_read_line(c) for c in conns]
                finally:
                    for c in conns:
                        c.close()

            firsts = await anyio.to_thread.run_sync(hundred)
            kinds = [json.loads(line)["kind"] for line in firsts]
            assert set(kinds) == {"hello", "refused"}
            assert kinds.count("hello") <= MAX_CLIENTS - 1  # the driver holds one place
            assert kinds.count("refused") >= 100 - MAX_CLIENTS
            await await_until(lambda: "refused a console client: too many console clients" in log_text(rt), proc,
                       "the refusals in the log")

            # The job is unharmed: still paused where it was, still obeying, then finishing.
            assert driver.connected
            assert (await driver.resume()).ok
            await await_until(lambda: proc.poll() is not None, None, "the job to finish", timeout=WAIT * 2)

        out, err = output(proc)
        assert proc.returncode == 0, err
        assert f"all {UNITS} units done" in out and "Traceback" not in err
        assert units_done(rt) == UNITS
        assert not sock.exists()
        log = log_text(rt)
        assert f"cut off: more than {MAX_BACKLOG:,} events undelivered" in log
        assert "STATE   selftest done" in log
        assert "console client #1 cut off" not in log  # the well-behaved driver was never cut off
        # ~70 refusals within seconds: one line in the log, not one per connection.
        assert log.count("refused a console client") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
