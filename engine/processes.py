"""Is a process id in use? One answer for the runtime dir's pid checks (status, stale staging)."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """True while some process holds `pid`, ours or another user's (signal 0 delivers nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True
