"""Control messages: one frozen, slotted record per op, and their JSON codec.

A control body is JSON, never pickle: ``[op, *fields]``, where ``op`` names one of
the records in ``CONTROL_OPS`` (``SpawnGroup`` is ``"spawn_group"``) and each
field is checked against the record's annotation; a nested record travels as the
list of its fields. Bytes fields (pickled payloads the supervisor only forwards)
travel as buffer frames of their own, written ``{"$b": index}`` in the JSON.
Whatever reaches a control socket, nothing it sends is unpickled by the process
that reads it: a message that does not fit raises ProtocolError.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.wire._frames import CONTROL, Buffer, ProtocolError, pack

__all__ = [
    "CONTROL_OPS",
    "Abandon",
    "ActorGone",
    "ActorSpec",
    "Create",
    "Created",
    "Down",
    "Epochs",
    "Exit",
    "GroupSpec",
    "Heartbeat",
    "Hello",
    "Lookup",
    "Ready",
    "Recycle",
    "Reply",
    "Shutdown",
    "Spawn",
    "SpawnGroup",
    "StopActor",
    "Stopped",
    "Suspend",
    "Suspended",
    "Watch",
    "WorkerDied",
    "decode_control",
    "encode_control",
    "op_name",
]


# -- specs, carried inside spawn requests ---------------------------------------
@dataclass(frozen=True, slots=True)
class ActorSpec:
    """All the supervisor needs to (re)start an actor; ``blob`` is the pickle of
    ``(cls, args, kwargs)``, which only the worker unpickles."""

    blob: bytes
    name: str | None
    cls: str
    worker: int | None
    restart: str
    max_restarts: int
    period: float
    retry: list[list[Any]]  # [method, times] for each retryable method


@dataclass(frozen=True, slots=True)
class GroupSpec:
    strategy: str
    max_restarts: int
    period: float


# -- clients (the driver, actors) -> supervisor ----------------------------------
@dataclass(frozen=True, slots=True)
class Hello:
    req_id: int


@dataclass(frozen=True, slots=True)
class Spawn:
    req_id: int
    spec: ActorSpec


@dataclass(frozen=True, slots=True)
class SpawnGroup:
    req_id: int
    group: GroupSpec
    specs: list[ActorSpec]


@dataclass(frozen=True, slots=True)
class Lookup:
    req_id: int
    name: str


@dataclass(frozen=True, slots=True)
class ActorGone:
    req_id: int
    actor_id: int


@dataclass(frozen=True, slots=True)
class Watch:
    req_id: int
    actor_id: int
    watch_id: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    req_id: int
    grace: float


# -- workers -> supervisor ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    slot: int
    pid: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    slot: int


@dataclass(frozen=True, slots=True)
class Recycle:
    slot: int
    cause: str


@dataclass(frozen=True, slots=True)
class Created:
    actor_id: int
    ok: bool
    error: bytes | None  # the pickled exception, forwarded untouched to the spawner
    text: str


@dataclass(frozen=True, slots=True)
class Suspended:
    actor_id: int


@dataclass(frozen=True, slots=True)
class Stopped:
    actor_id: int


# -- supervisor -> clients -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    req_id: int
    ok: bool
    payload: Any  # JSON, or the bytes of a pickled error


@dataclass(frozen=True, slots=True)
class WorkerDied:
    slot: int
    cause: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Down:
    watch_id: int
    actor_id: int
    reason: str
    final: bool


# -- supervisor -> workers ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Create:
    actor_id: int
    name: str | None
    blob: bytes
    retry: list[list[Any]]


@dataclass(frozen=True, slots=True)
class Suspend:
    actor_id: int
    cause: str


@dataclass(frozen=True, slots=True)
class Abandon:
    actor_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class StopActor:
    actor_id: int


@dataclass(frozen=True, slots=True)
class Epochs:
    epochs: list[list[int]]  # [slot, epoch] pairs


@dataclass(frozen=True, slots=True)
class Exit:
    pass


CONTROL_OPS: tuple[type, ...] = (
    Hello, Spawn, SpawnGroup, Lookup, ActorGone, Watch, Shutdown,
    Ready, Heartbeat, Recycle, Created, Suspended, Stopped,
    Reply, WorkerDied, Down,
    Create, Suspend, Abandon, StopActor, Epochs, Exit,
)  # fmt: skip


def op_name(cls: type) -> str:
    """``SpawnGroup`` -> ``"spawn_group"``: the op as it is written on the wire."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


# -- decoding: one checker per annotation ------------------------------------------
Check = Callable[[Any], Any]  # returns the value (a record built from a list), or raises


def _scalar(kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:  # exact: a bool is no int here
            raise ProtocolError(f"a {type(value).__name__} where a {kind.__name__} goes")
        return value

    return check


def _number(value: Any) -> Any:
    if type(value) not in (int, float):
        raise ProtocolError(f"a {type(value).__name__} where a number goes")
    return value


def _anything(value: Any) -> Any:
    return value


def _optional(inner: Check) -> Check:
    return lambda value: None if value is None else inner(value)


def _list_of(inner: Check) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not list:
            raise ProtocolError(f"a {type(value).__name__} where a list goes")
        return [inner(item) for item in value]

    return check


def _checker(hint: Any) -> Check:
    if hint is Any:
        return _anything
    if hint is float:
        return _number
    if hint in (int, bool, str, bytes):
        return _scalar(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return _optional(_checker(next(a for a in args if a is not type(None))))
    if origin is list:
        return _list_of(_checker(args[0]))
    if dataclasses.is_dataclass(hint):
        return _record_checker(hint)  # type: ignore[arg-type]
    raise TypeError(f"no control codec for {hint!r}")


def _record_checker(cls: type) -> Check:
    hints = typing.get_type_hints(cls)
    checks = [_checker(hints[field.name]) for field in dataclasses.fields(cls)]

    def check(value: Any) -> Any:
        if type(value) is not list or len(value) != len(checks):
            raise ProtocolError(f"{cls.__name__} needs {len(checks)} fields")
        return cls(*[c(v) for c, v in zip(checks, value, strict=True)])

    return check


_DECODERS: dict[str, Check] = {op_name(cls): _record_checker(cls) for cls in CONTROL_OPS}
_NAMES: dict[type, str] = {cls: op_name(cls) for cls in CONTROL_OPS}


def _plain(value: Any) -> Any:
    """A record as the list of its fields, all the way down; JSON takes the rest."""
    if dataclasses.is_dataclass(value):
        return [_plain(getattr(value, f.name)) for f in dataclasses.fields(value)]
    if type(value) is list or type(value) is tuple:
        return [_plain(item) for item in value]
    return value


def encode_control(message: Any) -> list[Any]:
    """A control record as frames: JSON, with bytes as buffer frames of their own."""
    op = _NAMES[type(message)]
    blobs: list[bytes] = []

    def out_of_band(obj: Any) -> dict[str, int]:
        if type(obj) is not bytes:
            raise TypeError(f"control op {op!r}: a {type(obj).__name__} is not JSON")
        blobs.append(obj)
        return {"$b": len(blobs) - 1}

    fields = _plain(message)
    body = json.dumps([op, *fields], default=out_of_band, separators=(",", ":"))
    return pack(CONTROL, body.encode(), blobs)


def decode_control(body: Any, buffers: Sequence[Buffer]) -> Any:
    """The record of a control message, checked; ProtocolError otherwise."""

    def in_band(obj: dict[str, Any]) -> Any:
        index = obj.get("$b")
        if index is None:
            return obj
        if type(index) is not int or not 0 <= index < len(buffers) or len(obj) != 1:
            raise ProtocolError(f"bad buffer reference {index!r}")
        return bytes(buffers[index])

    try:
        message = json.loads(bytes(body), object_hook=in_band)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        raise ProtocolError(f"body is not JSON: {type(exc).__name__}") from None
    if type(message) is not list or not message or type(message[0]) is not str:
        raise ProtocolError("body is not [op, *fields]")
    decode = _DECODERS.get(message[0])
    if decode is None:
        raise ProtocolError(f"unknown control op {message[0][:40]!r}")
    try:
        return decode(message[1:])
    except ProtocolError as exc:
        raise ProtocolError(f"control op {message[0]!r}: {exc}") from None
