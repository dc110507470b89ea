"""After a demo, the stores are readable by their owner only, and runtime/ is never 0755.

Before: runtime/clickhouse was 0755 with 0644 files under a 0711 runtime/, so a known path was
enough for any local account to `cat` trades; as root the embedded Postgres setup turned runtime/
(and every directory above it) into 0755.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import OPSCONSOLE, REPO, subprocess_env


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_demo_leaves_the_stores_owner_only(tmp_path: Path) -> None:
    parent = tmp_path / "home"
    parent.mkdir(mode=0o700)
    runtime = parent / "runtime"  # created by the demo itself
    proc = subprocess.run([*OPSCONSOLE, "demo", "--scale", "small", "--no-ui"], cwd=REPO,
                          env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(runtime)),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # runtime/ and what holds it: others may at most traverse (the server's OS user must), never list.
    for path in (runtime, parent, tmp_path):
        assert _mode(path) & 0o066 == 0, (path, oct(_mode(path)))

    clickhouse = runtime / "clickhouse"
    assert _mode(clickhouse) == 0o700
    entries = [p for p in clickhouse.rglob("*") if not p.is_symlink()]
    assert any(p.is_file() for p in entries)
    readable = [(str(p), oct(_mode(p))) for p in entries if _mode(p) & 0o077]
    assert readable == []

    postgres = runtime / "postgres"
    assert _mode(postgres) == 0o700
    if os.geteuid() == 0:  # the server runs as its own OS user, which alone owns the data
        import pwd

        assert os.stat(postgres).st_uid == pwd.getpwnam("embedded_postgres").pw_uid

    for path in runtime.iterdir():  # locks, logs, checkpoints, pid files
        if path.is_file():
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
