"""Wire format and serialization. Pure functions: no sockets here.

A message is a list of frames: ``[header + body, *buffers]`` (a ROUTER adds the
peer's routing id in front). The header is fixed, 12 bytes: magic, version, kind,
the number of buffer frames that follow, and the epoch (see ``encode_batch``).

* ``BATCH`` bodies are a pickled list of entries, each
  ``(kind, msg_id, actor_id, method, blob, nbufs)``: calls, tells and replies.
  ``blob`` is the call's own pickle of ``(args, kwargs)`` (or of the reply),
  made at the call site so that a bad argument fails there; its out-of-band
  buffers are the next ``nbufs`` buffer frames.
* ``CONTROL`` bodies are JSON, never pickle: ``[op, *fields]`` with ``op`` one of
  a fixed set (``CONTROL_OPS``) and each field checked against its type. Bytes
  fields (pickled payloads that the supervisor only forwards) travel as buffer
  frames, written ``{"$b": index}`` in the JSON. Whatever can reach a control
  socket, nothing it sends is unpickled by the process that reads it.
"""

from __future__ import annotations

import json
import pickle
import struct
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import cloudpickle

from actors._errors import RemoteError, RemoteTraceback, SerializationError
from actors._future import describe

__all__ = [
    "BATCH",
    "CALL",
    "CANCEL",
    "CANCELLED",
    "CONTROL",
    "ERR",
    "OK",
    "STARTED",
    "TELL",
    "ProtocolError",
    "decode_body",
    "decode_control",
    "decode_error",
    "dumps",
    "dumps_call",
    "encode_batch",
    "encode_control",
    "encode_error",
    "find_unpicklable",
    "loads",
    "named_arguments",
    "pack",
    "peer_name",
    "unpack",
]

MAGIC = b"dc"
VERSION = 1
HEADER = struct.Struct("<2sBBII")  # magic, version, kind, buffer count, epoch

BATCH, CONTROL = 1, 2
CALL, TELL, OK, ERR = 1, 2, 3, 4
# A caller's cancel of a call it sent (CANCEL, msg_id), and the worker's verdict:
# CANCELLED (it will not run) or STARTED (too late: it runs or has run).
CANCEL, CANCELLED, STARTED = 5, 6, 7

# Buffers below this travel inside the pickle: a frame of their own costs more.
OUT_OF_BAND_MIN = 64 * 1024
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})

Buffer = Any  # a PickleBuffer, memoryview or zmq.Frame


class ProtocolError(ValueError):
    """A message that does not parse; the receiver logs it and drops it."""


def pack(kind: int, body: bytes, buffers: Sequence[Buffer] = (), epoch: int = 0) -> list[Any]:
    # Header and body share a frame: every frame costs microseconds in pyzmq.
    return [HEADER.pack(MAGIC, VERSION, kind, len(buffers), epoch) + body, *buffers]


def unpack(frames: Sequence[Any]) -> tuple[int, memoryview, Sequence[Any], int]:
    """Split and check a message; raises ProtocolError on anything malformed."""
    if not frames:
        raise ProtocolError("no frames")
    first = memoryview(frames[0])
    if len(first) <= HEADER.size:
        raise ProtocolError(f"first frame of {len(first)} bytes is too short")
    magic, version, kind, nbufs, epoch = HEADER.unpack_from(first)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(f"bad magic/version {bytes(magic)!r}/{version}")
    if (kind != BATCH and kind != CONTROL) or nbufs != len(frames) - 1:
        raise ProtocolError(f"kind {kind} with {nbufs} buffers in {len(frames)} frames")
    return kind, first[HEADER.size :], frames[1:] if nbufs else (), epoch


def _is_plain(obj: Any) -> bool:
    """True for values (and ``(args, kwargs)`` of values) the C pickler carries as
    well; large bytes are not plain: they go out of band (see ``_LargeBytes``)."""
    if type(obj) in _PLAIN:
        return type(obj) is not bytes or len(obj) < OUT_OF_BAND_MIN
    if type(obj) is not tuple or len(obj) != 2 or type(obj[0]) is not tuple:
        return False
    if type(obj[1]) is not dict:
        return False
    for arg in obj[0]:
        if type(arg) not in _PLAIN or (type(arg) is bytes and len(arg) >= OUT_OF_BAND_MIN):
            return False
    for value in obj[1].values():
        if type(value) not in _PLAIN or (type(value) is bytes and len(value) >= OUT_OF_BAND_MIN):
            return False
    return True


class _LargeBytes:
    """A large ``bytes`` or ``bytearray`` pickled as an out-of-band buffer: no
    pickle holds a copy of it, and the receiver makes the only one. Internal."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return type(self.data), (pickle.PickleBuffer(self.data),)


def _bytes_out_of_band(obj: Any, depth: int = 4) -> Any:
    """``obj`` with its large bytes wrapped in ``_LargeBytes``: the value itself and
    what small tuples, lists and dicts hold, ``depth`` levels down: a reply, a
    call's arguments, a task's arguments inside its call (the pickler
    never asks about bytes: ``reducer_override`` skips them). Without any, ``obj``
    itself, found without building anything: this runs on every call's arguments."""
    kind = type(obj)
    if kind is bytes or kind is bytearray:
        return _LargeBytes(obj) if len(obj) >= OUT_OF_BAND_MIN else obj
    if depth and (kind is tuple or kind is list or kind is dict) and len(obj) <= 64:
        for item in obj.values() if kind is dict else obj:
            inner = type(item)  # leaves checked here, without a call each
            if inner is bytes or inner is bytearray:
                if len(item) >= OUT_OF_BAND_MIN:
                    return _rebuilt(obj, depth)
            elif (
                depth > 1
                and (inner is tuple or inner is list or inner is dict)
                and _bytes_out_of_band(item, depth - 1) is not item
            ):
                return _rebuilt(obj, depth)
    return obj


def _rebuilt(obj: Any, depth: int) -> Any:
    """A copy of a container with its large bytes wrapped (see ``_bytes_out_of_band``)."""
    if type(obj) is dict:
        return {key: _bytes_out_of_band(value, depth - 1) for key, value in obj.items()}
    return type(obj)(_bytes_out_of_band(item, depth - 1) for item in obj)


def dumps(obj: Any, out_of_band: bool = True) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle with protocol 5; large buffers come back separately, uncopied.

    Plain values take the C pickler; anything else goes through cloudpickle, so
    classes, functions and lambdas from ``__main__`` travel by value.
    """
    buffers: list[pickle.PickleBuffer] = []

    def keep_out_of_band(buf: pickle.PickleBuffer) -> bool:
        if not out_of_band or buf.raw().nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(buf)
        return False

    if _is_plain(obj):
        return pickle.dumps(obj, 5), buffers
    if out_of_band:
        obj = _bytes_out_of_band(obj)
    return cloudpickle.dumps(obj, 5, buffer_callback=keep_out_of_band), buffers


def loads(blob: Any, buffers: Sequence[Buffer] = ()) -> Any:
    if not buffers:
        return pickle.loads(blob)
    return pickle.loads(blob, buffers=[getattr(b, "buffer", b) for b in buffers])


def dumps_call(what: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, list]:
    """Pickle a call's arguments, naming the one that fails."""
    try:
        return dumps((args, kwargs))
    except Exception as exc:
        culprit = find_unpicklable(named_arguments(args, kwargs))
        raise SerializationError(f"{describe(what)}: cannot pickle {culprit}: {exc}") from exc


def named_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(what, value)`` for each argument, as error messages name them."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    return named + [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]


def find_unpicklable(named: Iterable[tuple[str, Any]]) -> str:
    """The first of ``(what, value)`` whose value does not pickle, as words."""
    for what, value in named:
        try:
            cloudpickle.dumps(value, 5)
        except Exception:
            return f"{what} ({type(value).__name__})"
    return "the arguments"


def encode_error(exc: BaseException) -> bytes:
    """Pickle an exception with its traceback text; degrade to RemoteError."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob, _ = dumps((exc, text), out_of_band=False)
        pickle.loads(blob)  # must come back out, too
        return blob
    except BaseException:  # even SystemExit from a __reduce__: the worker must live
        stand_in = RemoteError(str(exc), f"{type(exc).__module__}.{type(exc).__qualname__}")
        return dumps((stand_in, text), out_of_band=False)[0]


def decode_error(blob: Any, buffers: Sequence[Buffer] = ()) -> BaseException:
    """The exception from ``encode_error``, with the remote traceback as its cause."""
    try:
        exc, text = loads(blob, buffers)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # SystemExit from a hostile __setstate__ included
        return SerializationError(f"could not unpickle a remote exception: {err!r}")
    exc.__cause__ = RemoteTraceback(text)
    return exc  # type: ignore[no-any-return]


def encode_batch(
    entries: list[tuple[Any, ...]], buffers: list[Buffer], epoch: int = 0
) -> list[Any]:
    """``epoch`` is the incarnation of the worker the calls are for: a restarted
    worker drops calls that were meant for the process before it."""
    return pack(BATCH, pickle.dumps(entries, 5), buffers, epoch)


_NUMBER = (int, float)
_MAYBE_STR = (str, type(None))
_MAYBE_BYTES = (bytes, type(None))
_ANY = object

# op -> the types of its fields, in order. Replies carry any JSON value (ids,
# addresses, counts) or the bytes of a pickled error.
CONTROL_OPS: dict[str, tuple[Any, ...]] = {
    # clients (the driver, actors) -> supervisor
    "hello": (int,),
    "spawn": (int, dict),
    "spawn_group": (int, dict, list),
    "lookup": (int, str),
    "actor_gone": (int, int),
    "watch": (int, int, int),
    "shutdown": (int, _NUMBER),
    # workers -> supervisor
    "ready": (int, int),
    "heartbeat": (int,),
    "recycle": (int, str),
    "created": (int, bool, _MAYBE_BYTES, str),
    "suspended": (int,),
    "stopped": (int,),
    # supervisor -> clients
    "reply": (int, bool, _ANY),
    "worker_died": (int, str, int),
    "down": (int, int, str, bool),
    # supervisor -> workers
    "create": (int, _MAYBE_STR, bytes, list),
    "suspend": (int, str),
    "abandon": (int, str),
    "stop_actor": (int,),
    "epochs": (list,),
    "exit": (),
}


def encode_control(op: str, *fields: Any) -> list[Any]:
    """``[op, *fields]`` as JSON; bytes go as buffer frames of their own."""
    blobs: list[bytes] = []

    def out_of_band(obj: Any) -> dict[str, int]:
        if type(obj) is not bytes:
            raise TypeError(f"control op {op!r}: a {type(obj).__name__} is not JSON")
        blobs.append(obj)
        return {"$b": len(blobs) - 1}

    body = json.dumps([op, *fields], default=out_of_band, separators=(",", ":"))
    return pack(CONTROL, body.encode(), blobs)


def decode_control(body: Any, buffers: Sequence[Buffer]) -> tuple[str, list[Any]]:
    """The op and fields of a control message, checked; ProtocolError otherwise."""

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
    op, fields = message[0], message[1:]
    types = CONTROL_OPS.get(op)
    if types is None:
        raise ProtocolError(f"unknown control op {op[:40]!r}")
    if len(fields) != len(types) or not all(map(_is_a, fields, types)):
        raise ProtocolError(f"control op {op!r} with fields of the wrong number or type")
    return op, fields


def peer_name(identity: bytes) -> str:
    """A connection's routing id as a person reads it: the runtime's processes name
    their control connections; data connections are anonymous."""
    text = identity.decode("ascii", "replace")
    if text[:1] == "d" and "-" in text:
        return f"the driver (pid {text[1:].split('-')[0]})"
    if text[:1] == "w" and text[1:].replace(".", "").isdigit():
        return f"worker {text[1:].split('.')[0]}"
    if text[:1] == "h" and text[1:].isdigit():
        return f"the health thread of worker {text[1:]}"
    return "a caller on a connection now closed" if identity[:1] == b"\0" else repr(text[:40])


def _is_a(value: Any, expected: Any) -> bool:
    if expected is int:  # bool is an int to isinstance, not here
        return type(value) is int
    return isinstance(value, expected)


def decode_body(body: Any) -> Any:
    """A batch's list of entries. Whatever its unpickling raises, even SystemExit
    from a hostile pickle, becomes a ProtocolError."""
    try:
        return pickle.loads(body)
    except BaseException as exc:
        raise ProtocolError(f"body does not unpickle: {type(exc).__name__}") from None
