"""Control messages: one record (a NamedTuple) per op, and their JSON codec.

A control body is JSON, never pickle: ``[op, *fields]``, where ``op`` names one of
the records in ``CONTROL_OPS`` (``SpawnGroup`` is ``"spawn_group"``) and each
field is checked against the record's annotation; a nested record travels as the
list of its fields. Bytes fields (pickled payloads the supervisor only forwards)
travel as buffer frames of their own, written ``{"$b": index}`` in the JSON.
Whatever reaches a control socket, nothing it sends is unpickled by the process
that reads it: a message that does not fit raises ProtocolError.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from runtime.wire._cluster import (
    ClientBeat,
    Exited,
    Goodbye,
    Join,
    Joined,
    Launch,
    ListNodes,
    NodeBeat,
    NodeOutput,
    Placed,
    Signal,
)
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
    "Status",
    "StopActor",
    "Stopped",
    "Suspend",
    "Suspended",
    "Watch",
    "WorkerDied",
    "WorkerStats",
    "decode_control",
    "encode_control",
    "op_name",
]


# -- specs, carried inside spawn requests ---------------------------------------
class ActorSpec(NamedTuple):
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
    node: str | None = None  # in a cluster: the node it must live on
    owner: str | None = None  # in a cluster: the driver whose departure stops it


class GroupSpec(NamedTuple):
    strategy: str
    max_restarts: int
    period: float


# -- clients (the driver, actors) -> supervisor ----------------------------------
class Hello(NamedTuple):
    req_id: int
    workers: int = 0  # a cluster's driver: answer once this many workers are ready


class Spawn(NamedTuple):
    req_id: int
    spec: ActorSpec


class SpawnGroup(NamedTuple):
    req_id: int
    group: GroupSpec
    specs: list[ActorSpec]


class Lookup(NamedTuple):
    req_id: int
    name: str


class ActorGone(NamedTuple):
    req_id: int
    actor_id: int


class Watch(NamedTuple):
    req_id: int
    actor_id: int
    watch_id: int


class Shutdown(NamedTuple):
    req_id: int
    grace: float


class Status(NamedTuple):
    """Asks for the system's status; the reply's payload is JSON only (a CLI in
    another terminal asks too, and must never be handed a pickle)."""

    req_id: int


# -- workers -> supervisor ----------------------------------------------------------
class Ready(NamedTuple):
    slot: int
    pid: int


class WorkerStats(NamedTuple):
    """A worker's numbers, sent with each heartbeat by its health thread (so a
    worker held by a long method still reports them)."""

    handled: int  # messages handled since it started (tasks included)
    tasks: int  # tasks and map chunks among them
    queued: int  # messages read and not yet handled
    method: str | None  # the method its loop runs now
    actor_id: int  # whose method that is
    busy_for: float  # seconds it has run
    rss: int  # resident bytes
    cpu: float  # percent of one CPU since the last heartbeat
    stack: str | None  # the loop's stack, once a method has run STACK_AFTER seconds
    queues: list[list[int]]  # [actor_id, messages waiting] of each actor with a queue


class Heartbeat(NamedTuple):
    slot: int
    stats: WorkerStats


class Recycle(NamedTuple):
    slot: int
    cause: str


class Created(NamedTuple):
    actor_id: int
    ok: bool
    error: bytes | None  # the pickled exception, forwarded untouched to the spawner
    text: str


class Suspended(NamedTuple):
    actor_id: int


class Stopped(NamedTuple):
    actor_id: int


# -- supervisor -> clients -----------------------------------------------------------
class Reply(NamedTuple):
    req_id: int
    ok: bool
    payload: Any  # JSON, or the bytes of a pickled error


class WorkerDied(NamedTuple):
    slot: int
    cause: str
    epoch: int


class Down(NamedTuple):
    watch_id: int
    actor_id: int
    reason: str
    final: bool


# -- supervisor -> workers ------------------------------------------------------------
class Create(NamedTuple):
    actor_id: int
    name: str | None
    blob: bytes
    retry: list[list[Any]]


class Suspend(NamedTuple):
    actor_id: int
    cause: str


class Abandon(NamedTuple):
    actor_id: int
    reason: str


class StopActor(NamedTuple):
    actor_id: int


class Epochs(NamedTuple):
    epochs: list[list[int]]  # [slot, epoch] pairs


class Exit(NamedTuple):
    pass


CONTROL_OPS: tuple[type, ...] = (
    Hello, Spawn, SpawnGroup, Lookup, ActorGone, Watch, Shutdown, Status,
    Ready, Heartbeat, Recycle, Created, Suspended, Stopped,
    Reply, WorkerDied, Down,
    Create, Suspend, Abandon, StopActor, Epochs, Exit,
    Join, NodeBeat, Exited, Joined, Launch, Signal, Placed, ClientBeat, Goodbye,
    ListNodes, NodeOutput,
)  # fmt: skip


def op_name(cls: type) -> str:
    """``SpawnGroup`` -> ``"spawn_group"``: the op as it is written on the wire."""
    name = cls.__name__
    return name[0].lower() + "".join(f"_{c.lower()}" if c.isupper() else c for c in name[1:])


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
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return _record_checker(hint)
    raise TypeError(f"no control codec for {hint!r}")


def _record_checker(cls: type) -> Check:
    hints = typing.get_type_hints(cls)
    checks = [_checker(hints[name]) for name in cls._fields]  # type: ignore[attr-defined]

    def check(value: Any) -> Any:
        if type(value) is not list or len(value) != len(checks):
            raise ProtocolError(f"{cls.__name__} needs {len(checks)} fields")
        return cls(*[c(v) for c, v in zip(checks, value, strict=True)])

    return check


_CLASSES: dict[str, type] = {op_name(cls): cls for cls in CONTROL_OPS}
_NAMES: dict[type, str] = {cls: name for name, cls in _CLASSES.items()}
_DECODERS: dict[str, Check] = {}  # built on first use: every process starts faster


def _decoder(op: str) -> Check | None:
    decode = _DECODERS.get(op)
    if decode is None and op in _CLASSES:
        decode = _DECODERS[op] = _record_checker(_CLASSES[op])
    return decode


def encode_control(message: Any) -> list[Any]:
    """A control record as frames: JSON, with bytes as buffer frames of their own."""
    op = _NAMES[type(message)]
    blobs: list[bytes] = []

    def out_of_band(obj: Any) -> dict[str, int]:
        if type(obj) is not bytes:
            raise TypeError(f"control op {op!r}: a {type(obj).__name__} is not JSON")
        blobs.append(obj)
        return {"$b": len(blobs) - 1}

    body = json.dumps([op, *message], default=out_of_band, separators=(",", ":"))
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
    decode = _decoder(message[0])
    if decode is None:
        raise ProtocolError(f"unknown control op {message[0][:40]!r}")
    try:
        return decode(message[1:])
    except ProtocolError as exc:
        raise ProtocolError(f"control op {message[0]!r}: {exc}") from None
