"""A job's pid file names its job only while that very process runs: a killed job's pid may be
handed to any later process, and the console must not call that one the job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.processes import pid_file_owner

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process start times come from /proc")


def test_a_pid_file_written_by_a_running_process_names_it(tmp_path: Path) -> None:
    path = tmp_path / "job.pid"
    path.write_text(f"{os.getpid()}\n")
    assert pid_file_owner(path) == os.getpid()


@linux_only
def test_a_pid_reused_by_a_later_process_is_not_the_job(tmp_path: Path) -> None:
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = tmp_path / "job.pid"
        path.write_text(f"{later.pid}\n")
        assert pid_file_owner(path) == later.pid  # written after it started: it is the writer
        hour_ago = time.time() - 3600
        os.utime(path, (hour_ago, hour_ago))  # the file is older than the process holding the pid
        assert pid_file_owner(path) is None
    finally:
        later.kill()
        later.wait()


@pytest.mark.parametrize("content", ["", "nope\n", "0\n", "-1\n", "999999999\n", "1" * 100])
def test_no_live_owner(tmp_path: Path, content: str) -> None:
    path = tmp_path / "job.pid"
    path.write_text(content)
    assert pid_file_owner(path) is None


def test_a_pid_file_that_is_not_a_regular_file_names_nobody(tmp_path: Path) -> None:
    real = tmp_path / "real.pid"
    real.write_text(f"{os.getpid()}\n")
    link = tmp_path / "job.pid"
    link.symlink_to(real)
    assert pid_file_owner(link) is None
    assert pid_file_owner(tmp_path / "missing.pid") is None
    (tmp_path / "dir.pid").mkdir()
    assert pid_file_owner(tmp_path / "dir.pid") is None
