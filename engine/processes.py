"""Is a process id in use, and is it still the job that wrote a pid file? One answer for the runtime
dir's pid checks (status, the launcher, stale staging and spool files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def pid_exists(pid: int) -> bool:
    """True while some process holds `pid`, ours or another user's (signal 0 delivers nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _started_at(pid: int) -> float | None:
    """When process `pid` started (Unix time), from Linux /proc; None elsewhere or when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read(4096).rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh.read(65536).splitlines() if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def pid_file_owner(path: Path) -> int | None:
    """The live process a job's pid file names, or None.

    None when the file is missing or not a small regular file holding a number, when the process
    is gone, and when the pid was reused: a process that started after the file was written is not
    the one that wrote it (the runner writes the file as the job starts and removes it at its end,
    so a SIGKILLed job leaves one whose pid the system may hand to anything later).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64:
            return None
        with open(path, "rb") as fh:
            pid = int(fh.read(64).strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not pid_exists(pid):
        return None
    started = _started_at(pid)
    if started is not None and started > st.st_mtime + 2.0:  # 2 s: clock-tick rounding and slow writes
        return None
    return pid
