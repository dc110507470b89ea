"""Crash-safe file writes: tmp file + fsync + rename + directory fsync, owner-only permissions.

Runtime files are opened without following symlinks: a lock, log or temporary file planted as a
symlink would otherwise make us truncate or append to whatever it points at (with our privileges).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, TextIO

from engine.errors import BadInput


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses symlinks and anything but a regular file (a FIFO would block us);
    the refusal is a BadInput naming the file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise _refused(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refused(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refused(path: Path) -> BadInput:
    kind = "a symbolic link" if path.is_symlink() else "not a regular file"
    return BadInput(f"refusing to open {path}: it is {kind}",
                    hint=f"remove it (rm {path}); runtime files are never followed elsewhere")


def ensure_private_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path, mode)
    except PermissionError:
        pass
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old or the new file, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # never the umask's 0755
    # A fresh name, created exclusively: a file (or symlink) planted under a predictable name is
    # never written through.
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def open_private_append(path: Path) -> TextIO:
    """Append-mode text file created 0600 (logs can name wallets and markets)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # never the umask's 0755
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
