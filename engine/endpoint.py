"""The job socket: every job process serves its event stream and its Control on runtime/<job>.sock.

A console (the TUI, the browser console, `opsconsole status|pause|resume|stop`) is a client of this
endpoint; it can come and go without touching the job (contract 8). The protocol is in
docs/protocol.md and engine/wire.py.

Hostile or broken clients never slow or break the job:

* each client has its own task and its own bus Subscription, so `publish` never waits for a socket;
* progress and mutation status are coalesced per client by the bus; everything else is kept, up to
  MAX_BACKLOG undelivered events, and a client that falls further behind (or whose socket accepts
  nothing for SEND_TIMEOUT) is cut off;
* lines are read with a bounded reader (MAX_CLIENT_LINE); a longer line, or MAX_BAD_LINES malformed
  ones, cuts the client off without buffering more;
* at most MAX_CLIENTS are connected; one more gets a one-line refusal;
* identical queries asked while one is being computed share its answer: consoles that each poll
  the gates every 30 s cost the job one computation at a time, whatever their number;
* every task here catches everything: the endpoint's task group wraps the job's, and a failure
  in it must never cancel the job.

Every cut-off and refusal is written to the job's log as a WARNING, at most one line per reason
per REFUSAL_LOG_EVERY_S with a count of the others.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from engine import wire
from engine.bus import EventBus, Subscription
from engine.control import Control
from engine.errors import OpsError
from engine.events import Event, LogLine
from engine.job_snapshot import JobSnapshot
from engine.redact import redact

#: An async function of a command's `args` returning JSON-able data (dataclasses are fine).
QueryHandler = Callable[[dict[str, Any]], Awaitable[Any]]

#: Queries a job may offer (registered with `JobContext.register_query`); asking a job that does
#: not offer one is answered "not offered by this job" rather than "unknown command".
KNOWN_QUERIES = ("gates", "mutations", "refresh_gates")

MAX_CLIENTS = 32
REFUSAL_LOG_EVERY_S = 10.0  # at most one "refused" WARNING per this many seconds (the rest are counted)
MAX_BACKLOG = 10_000  # undelivered non-coalescable events per client
SEND_TIMEOUT = 30.0  # seconds one write may wait for a client that reads nothing
MAX_BAD_LINES = 3
MAX_QUERIES_IN_FLIGHT = 4  # per client
FLUSH_TIMEOUT = 5.0  # at the job's end: time given to clients to take the last events
ROUTINE_EVERY_S = 0.5  # routine events (progress, checkpoints, DEBUG lines) wait this long for company;
# a console paints progress once a second, so 0.5 s costs it nothing to see and saves each one
# (and the job) eight wakeups a second during Step D (measured: 29 → 21 ms of console CPU a second)
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def socket_path(runtime: Path, job: str) -> Path:
    return runtime / f"{job}.sock"


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """A bind/connect address for `path`, even when it is longer than sun_path allows: then the
    directory is opened and named through /proc/self/fd (Linux resolves it like the real path)."""
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH or not Path("/proc/self/fd").is_dir():
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


@dataclass(eq=False)
class _Client:
    number: int
    stream: SocketStream
    sub: Subscription
    pending: int = 0  # non-coalescable events queued in `sub`, not yet written
    cut_reason: str = ""
    bad_lines: int = 0
    queries: int = 0
    sending_since: float | None = None  # monotonic time the current write began
    send_lock: anyio.Lock = field(default_factory=anyio.Lock)
    hangup: anyio.Event = field(default_factory=anyio.Event)  # time to close this connection
    done: anyio.Event = field(default_factory=anyio.Event)  # closed and forgotten
    reader_done: anyio.Event = field(default_factory=anyio.Event)

    def cut(self, reason: str) -> None:
        """Cut the client off (callable from a bus listener: synchronous, never blocks)."""
        if not self.cut_reason and not self.hangup.is_set():
            self.cut_reason = reason
        self.hangup.set()


class _CutOff(Exception):
    pass


@dataclass(eq=False)
class _Flight:
    """One query being computed, and its answer for every client that asked for it meanwhile."""

    done: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False
    error: str = "the job ended before the query was answered"
    data: Any = None


def _shutdown(stream: SocketStream) -> None:
    """Wake everything waiting on this socket (EOF for reads, EPIPE for writes) without closing it."""
    with contextlib.suppress(Exception):
        stream.extra(SocketAttribute.raw_socket).shutdown(socket.SHUT_RDWR)


class JobEndpoint:
    def __init__(self, job: str, bus: EventBus, control: Control[Any], runtime: Path, *,
                 queries: Mapping[str, QueryHandler] | None = None, started_at: float | None = None) -> None:
        self.job = job
        self.bus = bus
        self.control = control
        self.path = socket_path(runtime, job)
        self.queries: Mapping[str, QueryHandler] = queries if queries is not None else {}
        self.started_at = started_at if started_at is not None else time.time()
        self.snapshot = JobSnapshot(job, live=lambda: control.live, started_at=self.started_at)
        self.snapshot.state = control.state
        self.clients: set[_Client] = set()
        self._numbers = itertools.count(1)
        self._listener: SocketListener | None = None
        self._tg: TaskGroup | None = None
        self._closing = False
        self._limited: dict[str, tuple[float, int]] = {}  # kind -> (last logged, not logged since)
        self._encoded: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        bus.add_listener(self.snapshot)
        bus.add_listener(self._count)

    # --- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> bool:
        """Bind runtime/<job>.sock (0600) and start serving. The caller holds the job lock, so a
        socket file already there is a stale one from a killed run and is replaced. Never raises:
        a job without its socket still runs (and says so in its log)."""
        try:
            with unix_address(self.path) as address:
                # anyio binds, chmods to `mode`, and only then listens: nobody can connect in between.
                self._listener = await anyio.create_unix_listener(address, mode=0o600)
        except OSError as exc:
            self._log(f"job socket {self.path} unavailable ({exc}); consoles cannot attach to this run", "WARNING")
            return False
        # The task group is entered here and left in aclose(): run_job opens the endpoint before
        # the job's own task group and closes it after, so the two nest properly, and the endpoint
        # outlives the job's tasks long enough to deliver the final state to its clients.
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._accept_loop)
        return True

    async def aclose(self) -> None:
        """Deliver what is queued (the final state included) to connected clients, say bye, close
        them and remove the socket. Bounded by FLUSH_TIMEOUT whatever the clients do."""
        if self._closing:
            return
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.aclose()
                with anyio.move_on_after(FLUSH_TIMEOUT):
                    for client in list(self.clients):
                        client.sub.close()  # its writer sends what is left, then bye, then hangs up
                    for client in list(self.clients):
                        await client.done.wait()
                for client in list(self.clients):  # still not done: closed, never cancelled mid-wait
                    client.cut(f"the job ended and the client had not taken its last events within {FLUSH_TIMEOUT:g}s")
                with anyio.move_on_after(FLUSH_TIMEOUT):
                    for client in list(self.clients):
                        await client.done.wait()
            if self._tg is not None:
                # Outside the shield: scopes must be left in the order they were entered.
                tg, self._tg = self._tg, None
                tg.cancel_scope.cancel()
                with contextlib.suppress(Exception):
                    await tg.__aexit__(None, None, None)
        finally:
            if self._listener is not None:
                self.path.unlink(missing_ok=True)
            for callback in (self.snapshot, self._count):
                with contextlib.suppress(ValueError):
                    self.bus._callbacks.remove(callback)  # the bus has no remove_listener (yet)

    # --- bus listener: bounded backlogs --------------------------------------------------------
    def _count(self, event: Event) -> None:
        if event.coalesce_key() is not None or not self.clients:
            return
        for client in self.clients:
            client.pending += 1
            if client.pending > MAX_BACKLOG:
                client.cut(f"more than {MAX_BACKLOG:,} events undelivered (the client is not reading)")

    # --- serving ---------------------------------------------------------------------------------
    async def _accept_loop(self) -> None:
        assert self._listener is not None and self._tg is not None
        while not self._closing:
            try:
                stream = await self._listener.accept()
            except anyio.get_cancelled_exc_class():
                raise
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except Exception as exc:  # e.g. out of file descriptors: keep the job, retry soon
                self._log(f"job socket: accept failed ({exc})", "WARNING")
                await anyio.sleep(0.5)
                continue
            if len(self.clients) >= MAX_CLIENTS:
                self._tg.start_soon(self._refuse, stream)
                continue
            # Subscribe and snapshot in one synchronous step: every event is in one or the other.
            client = _Client(next(self._numbers), stream, self.bus.subscribe())
            self.clients.add(client)
            first = wire.encode(wire.hello(self.job, os.getpid(), self.started_at))
            first += self.snapshot.encoded()
            self._tg.start_soon(self._serve_client, client, first)

    def _log_limited(self, kind: str, message: str) -> None:
        """One WARNING per kind per REFUSAL_LOG_EVERY_S, counting the ones in between: a script
        that opens thousands of connections must not flood the job's log (nor push the lines that
        matter out of the snapshot's last 500)."""
        logged_at, unlogged = self._limited.get(kind, (0.0, 0))
        unlogged += 1
        now = time.monotonic()
        if logged_at and now - logged_at < REFUSAL_LOG_EVERY_S:
            self._limited[kind] = (logged_at, unlogged)
            return
        more = f" ({unlogged} since the last such line)" if logged_at else ""
        self._log(f"{message}{more}", "WARNING")
        self._limited[kind] = (now, 0)

    def _log_refusal(self, reason: str) -> None:
        self._log_limited("refused", f"refused a console client: {reason}")

    async def _refuse(self, stream: SocketStream) -> None:
        reason = f"too many console clients ({MAX_CLIENTS} connected)"
        self._log_refusal(reason)
        try:
            with anyio.move_on_after(2):
                await stream.send(wire.encode(wire.refused(reason)))
                await stream.send_eof()
        except Exception:
            pass
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()

    async def _serve_client(self, client: _Client, first: bytes) -> None:
        # A connection ends with shutdown(2) on its socket, never by cancelling a task that waits
        # on the socket nor by closing it under that wait: anyio's raw socket streams race with
        # the event loop's readiness callbacks in both cases (asyncio logs InvalidStateError or
        # EBADF). After shutdown every wait on the socket returns by itself; then it is closed.
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, client, first)
                tg.start_soon(self._reader, client, tg)
                tg.start_soon(self._watchdog, client)
                await client.hangup.wait()
                _shutdown(client.stream)
                with anyio.move_on_after(5):
                    while not client.reader_done.is_set() or client.sending_since is not None:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()  # what is left waits on the bus, a lock or a query
        except anyio.get_cancelled_exc_class():
            _shutdown(client.stream)
            raise
        except Exception as exc:  # a bug here must cost one client, never the job
            client.cut_reason = client.cut_reason or f"endpoint error: {type(exc).__name__}: {exc}"
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await client.stream.aclose()
            self.clients.discard(client)
            client.sub.close()
            if client.cut_reason:
                self._log_limited(f"cut:{client.cut_reason}", f"console client #{client.number} cut off: {client.cut_reason}")
            client.done.set()

    async def _watchdog(self, client: _Client) -> None:
        """The send timeout: a write that has waited SEND_TIMEOUT for a client that reads
        nothing cuts it off (checked once a second; no socket wait is ever cancelled)."""
        while not client.hangup.is_set():
            with anyio.move_on_after(1.0):
                await client.hangup.wait()
            since = client.sending_since
            if since is not None and anyio.current_time() - since > SEND_TIMEOUT:
                client.cut(f"a write waited more than {SEND_TIMEOUT:g}s (the client is not reading)")

    async def _send(self, client: _Client, data: bytes) -> None:
        if client.hangup.is_set():
            raise _CutOff
        try:
            async with client.send_lock:
                client.sending_since = anyio.current_time()
                try:
                    await client.stream.send(data)
                finally:
                    client.sending_since = None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            client.hangup.set()  # the client went away, or was cut off: nothing more to say
            raise _CutOff from None

    def _encode_event(self, event: Event) -> bytes:
        # Every client sends the same events: encode each once (keyed by identity; the event is
        # kept alongside so its id cannot be reused while cached).
        hit = self._encoded.get(id(event))
        if hit is not None and hit[0] is event:
            return hit[1]
        data = wire.encode(wire.event_message(event))
        self._encoded[id(event)] = (event, data)
        if len(self._encoded) > 4096:
            self._encoded.popitem(last=False)
        return data

    async def _next_batch(self, client: _Client, last_send: float) -> list[Event]:
        """The events to send next. Routine ones (progress, checkpoints, DEBUG lines) wait until
        ROUTINE_EVERY_S after the last write, gathering what comes meanwhile; anything else goes
        at once, with what was gathered before it. During Step D a batch reports three or four
        routine events moments apart: one write instead of one each spares every attached
        client a wakeup per event (most of a console's CPU while it watches)."""
        batch = await client.sub.receive_batch()
        due = last_send + ROUTINE_EVERY_S
        while batch and anyio.current_time() < due and all(e.routine() for e in batch):
            more = await client.sub.receive_batch_by(due)
            if not more:  # nothing more came, or the job ended (the next receive says so)
                break
            batch += more
        return batch

    async def _writer(self, client: _Client, first: bytes) -> None:
        try:
            await self._send(client, first)
            last_send = anyio.current_time()
            while True:
                batch = await self._next_batch(client, last_send)
                if not batch:  # subscription closed (the job ended) and fully drained
                    await self._send(client, wire.encode(wire.bye(f"job ended: {self.control.state.value}")))
                    break
                client.pending -= sum(1 for e in batch if e.coalesce_key() is None)
                await self._send(client, b"".join(self._encode_event(e) for e in batch))
                last_send = anyio.current_time()
        except _CutOff:
            return
        # Everything is in the kernel's buffer now. Half-close and give the client a moment to
        # read it and hang up (the reader sees that); closing at once with unread input from
        # it could reset the connection and lose the last lines.
        with contextlib.suppress(Exception):
            await client.stream.send_eof()
        with anyio.move_on_after(2):
            await client.hangup.wait()
        client.hangup.set()

    async def _reader(self, client: _Client, tg: TaskGroup) -> None:
        reader = BufferedByteReceiveStream(client.stream)
        try:
            while True:
                try:
                    line = await reader.receive_until(b"\n", wire.MAX_CLIENT_LINE)
                except anyio.DelimiterNotFound:
                    client.cut(f"sent a line longer than {wire.MAX_CLIENT_LINE:,} bytes")
                    return
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError,
                        anyio.ClosedResourceError, OSError):
                    break  # the client left (or the connection is being closed)
                if line.strip():
                    await self._handle_line(client, line, tg)
        except _CutOff:
            pass
        finally:
            client.reader_done.set()
        client.hangup.set()

    # --- commands ----------------------------------------------------------------------------
    async def _handle_line(self, client: _Client, line: bytes, tg: TaskGroup) -> None:
        try:
            cmd = wire.parse_command(wire.decode(line))
        except wire.WireError as exc:
            client.bad_lines += 1
            await self._send(client, wire.encode(wire.reply(None, False, error=f"bad message: {exc}"[:500])))
            if client.bad_lines >= MAX_BAD_LINES:
                client.cut(f"sent {client.bad_lines} malformed lines")
            return
        if cmd.cmd in self.queries:
            if client.queries >= MAX_QUERIES_IN_FLIGHT:
                await self._reply(client, cmd.id, False, error=f"busy: {MAX_QUERIES_IN_FLIGHT} queries in flight")
                return
            client.queries += 1
            tg.start_soon(self._run_query, client, cmd)
            return
        ok, error, data = self._control_command(cmd)
        await self._reply(client, cmd.id, ok, error=error, data=data)

    def _control_command(self, cmd: wire.Command) -> tuple[bool, str, Any]:
        control = self.control
        if cmd.cmd in ("pause", "resume", "stop"):
            if cmd.cmd == "pause":
                ok = control.pause()
            elif cmd.cmd == "resume":
                ok = control.resume()
            else:
                ok = control.stop(str(cmd.args.get("reason") or "stop requested by a console client")[:200])
            error = "" if ok else f"{cmd.cmd} does not apply: the job is {control.state.value}"
            return ok, error, {"state": control.state.value}
        if cmd.cmd == "set_live":
            changes = cmd.args.get("changes")
            if not isinstance(changes, dict):
                return False, "set_live needs args.changes, an object of setting: value", None
            try:
                live = control.update_live(changes)
            except OpsError as exc:  # BadInput: answered to this client only; the job is untouched
                return False, str(exc), None
            return True, "", live.model_dump()
        if cmd.cmd == "snapshot":
            return True, "", self.snapshot.to_dict()
        if cmd.cmd in KNOWN_QUERIES:
            return False, "not offered by this job", None
        return False, f"unknown command {cmd.cmd!r}", None

    async def _run_query(self, client: _Client, cmd: wire.Command) -> None:
        # The args came from JSON: they always encode, and the same query encodes the same.
        key = json.dumps([cmd.cmd, cmd.args], sort_keys=True, default=str)
        try:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                assert self._tg is not None
                # In the endpoint's task group, not this client's: the asker leaving must not
                # cancel an answer other clients are waiting for.
                self._tg.start_soon(self._compute, cmd, flight, key)
            await flight.done.wait()
            await self._reply(client, cmd.id, flight.ok, error=flight.error, data=flight.data)
        except _CutOff:
            pass
        finally:
            client.queries -= 1

    async def _compute(self, cmd: wire.Command, flight: _Flight, key: str) -> None:
        try:
            flight.data = await self.queries[cmd.cmd](dict(cmd.args))
            flight.ok, flight.error = True, ""
        except anyio.get_cancelled_exc_class():
            raise
        except OpsError as exc:
            flight.error = str(exc)
        except Exception as exc:  # a failing query is an answer, not a job failure
            flight.error = f"{cmd.cmd} failed: {type(exc).__name__}: {exc}"[:1000]
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    async def _reply(self, client: _Client, id: int | str | None, ok: bool, *, error: str = "", data: Any = None) -> None:
        try:
            message = wire.encode(wire.reply(id, ok, error=error, data=data))
        except (TypeError, ValueError) as exc:
            message = wire.encode(wire.reply(id, False, error=f"reply not encodable: {exc}"))
        await self._send(client, message)

    def _log(self, message: str, level: str) -> None:
        self.bus.publish(LogLine(job=self.job, level=level, message=redact(message)))
