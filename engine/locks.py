"""Single-runner locks (flock) that name their holder.

The kernel drops a flock when its process dies, so a SIGKILLed holder never leaves a stale lock;
the pid written inside is only for the message.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from engine.errors import BadInput, LockHeld
from engine.files import open_regular, os_error


class ProcessLock:
    def __init__(self, path: Path, what: str, hint: str = "") -> None:
        self.path = path
        self.what = what
        self.hint = hint
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            fd = open_regular(self.path, os.O_RDONLY)
        except (OSError, BadInput):
            return "unknown"
        with os.fdopen(fd, "rb") as fh:
            text = fh.read(200).decode(errors="replace").strip()
        return text or "unknown"

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new runtime/ is private
        except OSError as exc:
            raise os_error(exc, self.path.parent, "create") from None
        # Never through a symlink: the pid written below would overwrite its target.
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            pid = holder.split()[0] if holder != "unknown" else "?"
            raise LockHeld(
                f"{self.what} is in use by another process (pid {holder}).",
                hint=self.hint.format(pid=pid) if self.hint else f"wait for it to finish, or stop it: kill -TERM {pid}",
            ) from None
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {cmd}\n".encode())
        except OSError as exc:  # a full disk: the pid is only for messages, but say so plainly
            os.close(fd)
            raise os_error(exc, self.path) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
