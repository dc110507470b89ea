"""The embedded PostgreSQL: reachable by us only, and stopped when its last client is gone.

Run as root with a long runtime path (the socket no longer fits in `sun_path`), the package's own
bootstrap put the socket in a 0777 directory under /tmp and let every connection in by trust: any
local account was superuser. And a SIGKILLed client left its pid in `.handle_pids.json` forever,
so no later client ever stopped the server.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.conftest import REPO, subprocess_env

# A client that opens the embedded server, prints its URI, and holds it until stdin closes.
HOLDER = """
import sys
from pathlib import Path
from engine.stores.postgres import start_embedded
print(start_embedded(Path(sys.argv[1])), flush=True)
sys.stdin.read()
"""


def _holder(pgdata: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(pgdata)], cwd=REPO, env=subprocess_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _uri_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("postgresql://"), f"the client did not open the server: {line!r}"
    return line


def _server_uid() -> int:
    if os.geteuid() != 0:
        return os.geteuid()
    import pwd

    return pwd.getpwnam("embedded_postgres").pw_uid


def _without_password(uri: str) -> str:
    parts = urlsplit(uri)
    return parts._replace(netloc=f"{parts.username}@{parts.hostname or ''}").geturl()


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_long_runtime_path_keeps_the_socket_private_and_needs_the_password(tmp_path: Path) -> None:
    runtime = tmp_path / ("long-runtime-path-" * 5) / "runtime"
    runtime.parent.mkdir(mode=0o700)
    runtime.mkdir(mode=0o700)
    pgdata = runtime / "postgres"
    assert len(str(pgdata / ".s.PGSQL.5432")) > 107  # the socket cannot live in the data directory

    proc = _holder(pgdata)
    try:
        uri = _uri_of(proc)
        socket_dir = Path(parse_qs(urlsplit(uri).query)["host"][0])
        st = os.stat(socket_dir)
        # Owner-only, owned by the server's OS user (root reaches it anyway; nobody else can).
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
        assert st.st_uid == _server_uid()
        assert (socket_dir / ".s.PGSQL.5432").is_socket()

        hba = [line.split() for line in (pgdata / "pg_hba.conf").read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
        assert hba and all("trust" not in fields for fields in hba)
        assert {fields[-1] for fields in hba} == {"scram-sha-256"}

        password_file = pgdata / ".opsconsole-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.read_text().strip() == urlsplit(uri).password

        with pytest.raises(psycopg.OperationalError):  # no password: refused
            psycopg.connect(_without_password(uri), connect_timeout=10).close()
        with pytest.raises(psycopg.OperationalError):  # a wrong one: refused
            psycopg.connect(uri.replace(urlsplit(uri).password or "", "not-the-password"), connect_timeout=10).close()
        with psycopg.connect(uri, connect_timeout=10) as conn:  # ours: in
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)

        # Traversal for the server's OS user, never listing: runtime/ and its parents stay unreadable.
        for path in (runtime, runtime.parent, tmp_path):
            assert not stat.S_IMODE(os.stat(path).st_mode) & (stat.S_IRGRP | stat.S_IROTH), path
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
    # The last client stopped the server and removed the private socket directory.
    assert _postmaster_pid(pgdata) is None
    assert not socket_dir.exists()


def test_a_sigkilled_client_does_not_keep_the_server_running(tmp_path: Path) -> None:
    pgdata = tmp_path / "runtime" / "postgres"
    killed = _holder(pgdata)
    _uri_of(killed)
    pid = _postmaster_pid(pgdata)
    assert pid is not None and _alive(pid)
    assert killed.pid in json.loads((pgdata / ".handle_pids.json").read_text())
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)  # reaped: its pid is dead, not a zombie

    # A normal client, run to completion.
    normal = _holder(pgdata)
    uri = _uri_of(normal)
    with psycopg.connect(uri, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert normal.stdin is not None
    normal.stdin.close()
    assert normal.wait(timeout=60) == 0

    assert _postmaster_pid(pgdata) is None  # stopped cleanly: postmaster.pid removed
    assert not _alive(pid)
    handles = json.loads((pgdata / ".handle_pids.json").read_text())
    assert killed.pid not in handles and not [p for p in handles if not _alive(p)]
