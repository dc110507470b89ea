"""The job socket's wire format: versioned, newline-delimited JSON (docs/protocol.md).

An event on the wire is the same record `--log-format json` prints: `{"type": <EventClassName>,
**fields}` with enums as their values and tuples as lists. `event_record` builds it (the headless
JSON renderer calls it too, so the two can never drift apart) and `event_from_record` turns it
back into the typed, immutable dataclass, so a client in another process handles real `Event`s.

Every message is one JSON object on one line with a `kind`:

  server → client: hello, snapshot, event, reply, bye, refused
  client → server: command

Everything that leaves the process goes through `redact_obj` first (contract 7).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine import events as _events
from engine.events import Event
from engine.redact import redact

PROTOCOL_VERSION = 1

#: Longest line a client may send (commands are tiny); a longer one cuts the client off.
MAX_CLIENT_LINE = 1 << 20
#: Longest line a client accepts from the job (a snapshot holds up to 1,500 records).
MAX_SERVER_LINE = 16 << 20


class WireError(ValueError):
    """A line that is not a valid protocol message."""


# --- values -------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Plain JSON types only: enums as values, dataclasses as dicts, tuples as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def redacted(value: Any) -> Any:
    """`redact` applied to every string of a JSON-like value, keys included (a key can be a DSN)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


# --- events -------------------------------------------------------------------------------------
def event_record(event: Event) -> dict[str, Any]:
    """The `--log-format json` record of an event, redacted."""
    record = {"type": type(event).__name__, **jsonable(event)}
    out: dict[str, Any] = redacted(record)
    return out


def event_json(event: Event) -> str:
    """One JSON line (without the newline) for `--log-format json`."""
    return json.dumps(event_record(event), default=str)


@cache
def _event_classes() -> dict[str, type[Event]]:
    classes: dict[str, type[Event]] = {}
    for name in dir(_events):
        obj = getattr(_events, name)
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event:
            classes[name] = obj
    return classes


Converter = typing.Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _converter(hint: Any) -> Converter:
    """How one field comes back from its JSON form, worked out once per annotation: a client
    decodes every event the job sends, so the per-event work is only the conversions themselves."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _converter(inner[0]) if inner else _same
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint) or (Any,)
        each = _converter(item)

        def to_tuple(value: Any) -> Any:
            if not isinstance(value, list):
                raise WireError(f"expected a list, got {type(value).__name__}")
            return tuple(v if v is None else each(v) for v in value)

        return to_tuple
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            return hint
        if dataclasses.is_dataclass(hint):
            cls = hint

            def to_dataclass(value: Any) -> Any:
                if not isinstance(value, dict):
                    raise WireError(f"expected an object for {cls.__name__}")
                return _build(cls, value)

            return to_dataclass
        if hint is float:
            return lambda value: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return _same


@cache
def _plan(cls: type) -> tuple[tuple[str, Converter], ...]:
    hints = typing.get_type_hints(cls, vars(_events))
    return tuple((f.name, _converter(hints.get(f.name, Any))) for f in dataclasses.fields(cls))


def _build(cls: type, record: dict[str, Any]) -> Any:
    # Fields a newer job added are ignored (forward compatible); missing ones use their defaults.
    kwargs = {}
    for name, convert in _plan(cls):
        if name in record:
            value = record[name]
            kwargs[name] = None if value is None else convert(value)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad {cls.__name__}: {exc}") from None


def dataclass_from_record(cls: type, record: dict[str, Any]) -> Any:
    """A non-event dataclass (GateResult, MutationInfo) from its JSON record."""
    return _build(cls, record)


def event_from_record(record: dict[str, Any]) -> Event | None:
    """The typed event of a record; None for an event type this version does not know."""
    cls = _event_classes().get(str(record.get("type")))
    if cls is None:
        return None
    try:
        event: Event = _build(cls, record)
    except (KeyError, ValueError) as exc:
        raise WireError(f"bad {cls.__name__} record: {exc}") from None
    return event


# --- messages -----------------------------------------------------------------------------------
def encode(message: dict[str, Any]) -> bytes:
    """One message as one ASCII line (non-ASCII is escaped, so no byte of it is a newline)."""
    return (json.dumps(message, default=str, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise WireError("a message is a JSON object with a string 'kind'")
    return value


def hello(job: str, pid: int, started_at: float) -> dict[str, Any]:
    return {"kind": "hello", "protocol": PROTOCOL_VERSION, "job": job, "pid": pid, "started_at": started_at}


def snapshot(data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "snapshot", "snapshot": data}


def event_message(event: Event) -> dict[str, Any]:
    return {"kind": "event", "event": event_record(event)}


def reply(id: int | str | None, ok: bool, *, error: str = "", data: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"kind": "reply", "id": id, "ok": ok}
    if error:
        message["error"] = redact(error)
    if data is not None:
        message["data"] = redacted(jsonable(data))
    return message


def bye(reason: str) -> dict[str, Any]:
    return {"kind": "bye", "reason": redact(reason)}


def refused(reason: str) -> dict[str, Any]:
    return {"kind": "refused", "protocol": PROTOCOL_VERSION, "reason": reason}


class Command(BaseModel):
    """What a client sends. Validated at the edge; anything else is answered with an error."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["command"]
    id: int | str = Field(union_mode="left_to_right")
    cmd: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


def command(id: int | str, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "command", "id": id, "cmd": cmd, "args": args or {}}


def parse_command(message: dict[str, Any]) -> Command:
    try:
        return Command.model_validate(message)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise WireError(f"bad command: {problems}") from None
