"""Client side of the job socket: what the TUI, the browser console and the shell commands use.

    async with connect(settings.runtime, "selftest") as client:
        client.hello, client.snapshot          # who, and the picture at connect time
        reply = await client.command("pause")  # Reply(ok, error, data)
        async for event in client.events():    # typed engine.events, live; ends when the job does
            ...

The client reads the socket all the time and republishes events on its own `EventBus`
(`client.bus`), so a consumer that falls behind gets the same coalescing as one inside the job
process, and the job never sees this client as "not reading". `client.events()` iterates the
subscription taken at connect time (nothing between the snapshot and it is lost); more
consumers can call `client.bus.subscribe()`.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from engine import wire
from engine.bus import EventBus, Subscription
from engine.endpoint import socket_path, unix_address
from engine.errors import JobNotRunning, OpsError
from engine.events import Event, GateResult, JobState, MutationInfo, StateChanged
from engine.job_snapshot import Snapshot

CONNECT_TIMEOUT = 10.0


class EndpointError(OpsError):
    """The job answered, but not in a way this client understands (version, refusal, garbage)."""


@dataclass(frozen=True)
class Hello:
    job: str
    pid: int
    started_at: float
    protocol: int


@dataclass(frozen=True)
class Reply:
    id: int | str | None
    ok: bool
    error: str = ""
    data: Any = None


@dataclass(eq=False)
class JobClient:
    hello: Hello
    snapshot: Snapshot
    bus: EventBus
    _stream: SocketStream
    _sub: Subscription
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int | str, tuple[anyio.Event, list[Reply]]] = field(default_factory=dict)
    #: why the connection ended ("job ended: done", "connection closed"), once it has
    closed_reason: str = ""
    #: the latest state the job reported (the snapshot's, then each StateChanged)
    state: StateChanged = field(default_factory=lambda: StateChanged(job="", state=JobState.STARTING))
    _closed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def job(self) -> str:
        return self.hello.job

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    async def events(self) -> AsyncIterator[Event]:
        """Live events after the snapshot, in order; ends when the connection does."""
        async for event in self._sub:
            yield event

    async def follow(self, callback: Callable[[Event], None]) -> None:
        """Call `callback` with every live event, in order, as the read loop decodes it (first those
        read since the snapshot), until the connection ends. No task of its own wakes per event
        (a console attached for hours would pay that on every line). `events()` is then used up."""
        for event in self._sub.drain():
            callback(event)
        self.bus.add_listener(callback)
        self._sub.close()
        await self._closed.wait()

    async def command(self, cmd: str, **args: Any) -> Reply:
        """Send one command and wait for its reply. A lost connection is a failed reply."""
        if self._closed.is_set():
            return Reply(None, False, f"not connected: {self.closed_reason}")
        cid = next(self._ids)
        slot: tuple[anyio.Event, list[Reply]] = (anyio.Event(), [])
        self._waiting[cid] = slot
        try:
            await self._stream.send(wire.encode(wire.command(cid, cmd, args)))
            await slot[0].wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return Reply(cid, False, "the job closed the connection")
        finally:
            self._waiting.pop(cid, None)
        return slot[1][0] if slot[1] else Reply(cid, False, f"no reply: {self.closed_reason or 'connection closed'}")

    # Convenience wrappers that decode the typed answers.
    async def pause(self) -> Reply:
        return await self.command("pause")

    async def resume(self) -> Reply:
        return await self.command("resume")

    async def stop(self, reason: str = "") -> Reply:
        return await (self.command("stop", reason=reason) if reason else self.command("stop"))

    async def set_live(self, **changes: Any) -> Reply:
        return await self.command("set_live", changes=changes)

    async def gates(self, *, refresh: bool = False) -> list[GateResult]:
        """The job's gates (`refresh` recomputes them now). OpsError when the job cannot say."""
        reply = await self.command("refresh_gates" if refresh else "gates")
        if not reply.ok:
            raise OpsError(f"{self.job}: {reply.error}")
        return [wire._build(GateResult, g) for g in (reply.data or [])]

    async def mutations(self) -> list[MutationInfo]:
        reply = await self.command("mutations")
        if not reply.ok:
            raise OpsError(f"{self.job}: {reply.error}")
        return [wire._build(MutationInfo, m) for m in (reply.data or [])]

    async def wait_for_state(self, *states: str) -> StateChanged | None:
        """Wait until the job reports one of `states` (or any final state); None if the
        connection ends first. Uses a subscription of its own: `events()` is not consumed."""
        wanted = set(states)
        sub = self.bus.subscribe()
        try:
            if self.state.state.value in wanted or self.state.state.final:
                return self.state
            if self._closed.is_set():
                return None
            async for event in sub:
                if isinstance(event, StateChanged) and (event.state.value in wanted or event.state.final):
                    return event
        finally:
            sub.close()
        return None

    # --- internals ---------------------------------------------------------------------------
    async def _read_loop(self, reader: BufferedByteReceiveStream) -> None:
        reason = "connection closed"
        try:
            while True:
                line = await reader.receive_until(b"\n", wire.MAX_SERVER_LINE)
                message = wire.decode(line)
                kind = message["kind"]
                if kind == "event":
                    event = wire.event_from_record(message.get("event") or {})
                    if event is not None:
                        if isinstance(event, StateChanged):
                            self.state = event
                        self.bus.publish(event)
                elif kind == "reply":
                    rid = message.get("id")
                    slot = self._waiting.get(rid) if isinstance(rid, (int, str)) else None
                    if slot is not None:
                        slot[1].append(Reply(rid, bool(message.get("ok")), str(message.get("error") or ""),
                                             message.get("data")))
                        slot[0].set()
                elif kind == "bye":
                    reason = str(message.get("reason") or "bye")
                    break
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        except (wire.WireError, anyio.DelimiterNotFound) as exc:
            reason = f"bad data from the job: {exc}"
        finally:
            self.closed_reason = reason
            self._closed.set()
            for ev, _ in self._waiting.values():
                ev.set()
            self.bus.close()


async def _open(path: Path) -> SocketStream:
    with unix_address(path) as address:
        return await anyio.connect_unix(address)


def _not_running(runtime: Path, job: str) -> JobNotRunning:
    return JobNotRunning(
        f"no job '{job}' is running (nothing answers on {socket_path(runtime, job)})",
        hint="`opsconsole status` lists the running jobs and the last outcome of the others",
    )


@contextlib.asynccontextmanager
async def connect(runtime: Path, job: str, *, timeout: float = CONNECT_TIMEOUT) -> AsyncIterator[JobClient]:
    """Attach to a running job. Raises JobNotRunning when nothing answers on its socket."""
    path = socket_path(Path(runtime), job)
    try:
        with anyio.fail_after(timeout):
            stream = await _open(path)
    except (OSError, TimeoutError):
        raise _not_running(Path(runtime), job) from None
    reader = BufferedByteReceiveStream(stream)
    try:
        try:
            with anyio.fail_after(timeout):
                first = wire.decode(await reader.receive_until(b"\n", wire.MAX_SERVER_LINE))
                if first["kind"] == "refused":
                    raise EndpointError(f"job '{job}' refused the connection: {first.get('reason')}",
                                        hint="close some consoles attached to it")
                if first["kind"] != "hello" or first.get("protocol") != wire.PROTOCOL_VERSION:
                    raise EndpointError(
                        f"job '{job}' speaks protocol {first.get('protocol')!r}; this console speaks "
                        f"{wire.PROTOCOL_VERSION}", hint="use the same opsconsole version for the job and the console")
                second = wire.decode(await reader.receive_until(b"\n", wire.MAX_SERVER_LINE))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError, TimeoutError):
            raise _not_running(Path(runtime), job) from None
        except (wire.WireError, anyio.DelimiterNotFound) as exc:
            raise EndpointError(f"job '{job}' sent something that is not the job protocol: {exc}") from None
        hello = Hello(str(first.get("job")), int(first.get("pid") or 0), float(first.get("started_at") or 0),
                      int(first["protocol"]))
        snapshot = Snapshot.from_dict(second.get("snapshot") or {}) if second["kind"] == "snapshot" else None
        if snapshot is None:
            raise EndpointError(f"job '{job}' sent {second['kind']!r} where a snapshot belongs")
        bus = EventBus()
        client = JobClient(hello, snapshot, bus, stream, bus.subscribe())
        client.state = StateChanged(job=hello.job, state=snapshot.state, reason=snapshot.reason, ts=snapshot.started_at)
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(client._read_loop, reader)
            try:
                yield client
            except Exception as exc:  # raised by the caller's block: re-raised as is, not in a group
                error = exc
            finally:
                # shutdown(2) wakes the read loop with EOF; only then close and cancel. Cancelling
                # a wait on anyio's raw socket stream, or closing the socket under it, races with
                # asyncio's readiness callbacks (see engine/endpoint.py).
                with contextlib.suppress(Exception):
                    stream.extra(SocketAttribute.raw_socket).shutdown(socket.SHUT_RDWR)
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await client._closed.wait()
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await stream.aclose()


@dataclass(frozen=True)
class RunningJob:
    hello: Hello
    snapshot: Snapshot


def socket_files(runtime: Path) -> list[Path]:
    try:
        entries = sorted(Path(runtime).glob("*.sock"))
    except OSError:
        return []
    out = []
    for p in entries:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(p.lstat().st_mode):
                out.append(p)
    return out


async def running_jobs(runtime: Path, *, timeout: float = 5.0) -> list[RunningJob]:
    """Every job that answers on its socket (a socket file nobody listens on = not running)."""
    found: list[RunningJob] = []

    async def probe(path: Path) -> None:
        try:
            async with connect(runtime, path.name[: -len(".sock")], timeout=timeout) as client:
                found.append(RunningJob(client.hello, client.snapshot))
        except OpsError:
            pass

    async with anyio.create_task_group() as tg:
        for path in socket_files(runtime):
            tg.start_soon(probe, path)
    return sorted(found, key=lambda r: r.hello.job)


async def job_answers(runtime: Path, job: str, *, timeout: float = 2.0) -> bool:
    """True when `job` is running and answers on its socket."""
    try:
        async with connect(runtime, job, timeout=timeout):
            return True
    except OpsError:
        return False
