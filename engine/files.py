"""Crash-safe file writes: tmp file + fsync + rename + directory fsync, owner-only permissions.

Runtime files are opened without following symlinks: a lock, log or temporary file planted as a
symlink would otherwise make us truncate or append to whatever it points at (with our privileges).
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, TextIO

from engine.errors import BadInput, OpsError, StoreUnavailable


#: errno values meaning "this directory cannot be written at all" (a setting points at the wrong
#: place: exit 4) and "the disk under it is full or failing" (the storage cannot be used: exit 5).
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def os_error(exc: OSError, path: Path | str | None = None, doing: str = "write") -> OpsError:
    """An OSError on a runtime or data path as the operator's error: what, where, and what to do.
    Read-only or forbidden: BadInput (exit 4); full or failing disk: StoreUnavailable (exit 5)."""
    where = str(path if path is not None else (exc.filename or "?"))
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _NO_SPACE:
        return StoreUnavailable(f"cannot {doing} {where}: {reason}",
                                hint="free space on that filesystem (or point OPSCONSOLE_RUNTIME_DIR elsewhere), then retry")
    if exc.errno in _NOT_WRITABLE:
        return BadInput(f"cannot {doing} {where}: {reason}",
                        hint="make it writable, or set OPSCONSOLE_RUNTIME_DIR to a writable directory")
    return OpsError(f"cannot {doing} {where}: {reason}")


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses symlinks and anything but a regular file (a FIFO would block us);
    the refusal is a BadInput naming the file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise _refused(path) from None
        raise os_error(exc, path, "open") from None
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
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except PermissionError:
        if not path.is_dir():
            raise os_error(PermissionError(errno.EACCES, "Permission denied"), path, "create") from None
    except OSError as exc:
        raise os_error(exc, path, "create") from None
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old or the new file, never half.
    A failure (read-only, full disk) is an OpsError naming the file; the old file stays."""
    try:
        _atomic_write(path, data)
    except OSError as exc:
        raise os_error(exc, path) from None


def _atomic_write(path: Path, data: bytes) -> None:
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
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # never the umask's 0755
    except OSError as exc:
        raise os_error(exc, path.parent, "create") from None
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


# --- bounded reads -----------------------------------------------------------------------------
#: What a state, settings or override file may hold. They are a few KB; the cap means a file
#: symlinked to /dev/zero, or a huge one, is refused instead of read until memory runs out.
SMALL_FILE_LIMIT = 4 * 1024 * 1024


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_input(path: Path, what: str = "file") -> io.BufferedReader:
    """Open a file the operator named (data, state, settings) for reading, in binary. Symlinks are
    followed (they are the operator's own), but the target must be a regular file: a directory, FIFO
    or device is refused as what it is (a FIFO is opened non-blocking, so it cannot hang us)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a {what}") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot be opened ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise BadInput(f"{path}: is {_kind_of(mode)}, not a regular {what}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, what: str = "file", limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The whole of a small file, refused (BadInput) beyond `limit` bytes whatever it claims to be."""
    with open_input(path, what) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"{path}: larger than {limit:,} bytes; a {what} is never that big")
    return data


def decode_utf8(data: bytes, path: Path | str) -> str:
    """UTF-8 text (a BOM is dropped), or a BadInput naming the line of the first invalid byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInput(f"{path}: line {line} is not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None


def parse_json_text(text: str, path: Path | str) -> Any:
    """json.loads whose every failure is a BadInput naming the file: bad syntax (with its line), nesting
    too deep for the parser, an integer too long to convert."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise BadInput(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise BadInput(f"{path}: not usable JSON ({exc})") from None


def read_json_bounded(path: Path, what: str = "file", limit: int = SMALL_FILE_LIMIT) -> Any:
    return parse_json_text(decode_utf8(read_bounded(path, what, limit), path), path)
