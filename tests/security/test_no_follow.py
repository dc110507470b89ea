"""Lock, log, pid and temporary files never write through a symlink planted in their place.

Before, with runtime/full-enrichment.lock (or clickhouse.lock) a symlink to another file, that file
was truncated and overwritten with our pid; a symlinked *.console.log appended to its target.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.errors import BadInput, ExitCode
from engine.files import atomic_write_bytes, open_private_append
from engine.locks import ProcessLock
from tests.conftest import OPSCONSOLE, REPO, subprocess_env

PRECIOUS = "precious contents\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(PRECIOUS)
    return path


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    return path


def test_a_symlinked_lock_is_refused(runtime: Path, victim: Path) -> None:
    (runtime / "job.lock").symlink_to(victim)
    with pytest.raises(BadInput, match="job.lock"):
        ProcessLock(runtime / "job.lock", "job").acquire()
    assert victim.read_text() == PRECIOUS


def test_a_dangling_symlinked_lock_creates_nothing(runtime: Path, tmp_path: Path) -> None:
    target = tmp_path / "created-elsewhere"
    (runtime / "job.lock").symlink_to(target)
    with pytest.raises(BadInput):
        ProcessLock(runtime / "job.lock", "job").acquire()
    assert not target.exists()


def test_a_fifo_lock_is_refused_not_waited_on(runtime: Path) -> None:
    os.mkfifo(runtime / "job.lock")
    with pytest.raises(BadInput, match="not a regular file"):
        ProcessLock(runtime / "job.lock", "job").acquire()


def test_a_symlinked_log_is_refused(runtime: Path, victim: Path) -> None:
    (runtime / "job.console.log").symlink_to(victim)
    with pytest.raises(BadInput, match="job.console.log"):
        open_private_append(runtime / "job.console.log")
    assert victim.read_text() == PRECIOUS


def test_atomic_write_never_writes_through_a_planted_temporary_file(runtime: Path, victim: Path) -> None:
    target = runtime / "job.pid"
    # The temporary name used to be predictable: .<name>.<pid>.tmp
    (runtime / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    atomic_write_bytes(target, b"123\n")
    assert victim.read_text() == PRECIOUS
    assert target.read_text() == "123\n" and not target.is_symlink()
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)


def test_atomic_write_replaces_a_symlinked_target_not_its_target(runtime: Path, victim: Path) -> None:
    (runtime / "job.pid").symlink_to(victim)
    atomic_write_bytes(runtime / "job.pid", b"123\n")
    assert victim.read_text() == PRECIOUS
    assert not (runtime / "job.pid").is_symlink()


@pytest.mark.parametrize(
    ("planted", "command"),
    [
        ("full-enrichment.lock", ["enrich", "--no-ui"]),
        ("clickhouse.lock", ["gates"]),
        ("selftest.lock", ["selftest", "--units", "1", "--no-ui"]),
        ("selftest.console.log", ["selftest", "--units", "1", "--no-ui"]),
    ],
)
def test_commands_refuse_a_symlinked_runtime_file(runtime: Path, victim: Path, planted: str, command: list[str]) -> None:
    (runtime / planted).symlink_to(victim)
    proc = subprocess.run([*OPSCONSOLE, *command], cwd=REPO, env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(runtime)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert f"refusing to open {runtime / planted}: it is a symbolic link" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert victim.read_text() == PRECIOUS
