"""Wire format and serialization. Pure functions: no sockets here.

A message is a list of frames: ``[header + body, *buffers]`` (a ROUTER adds the
peer's routing id in front). The header is fixed, 12 bytes: magic, version, kind,
the number of buffer frames that follow, and the epoch (see ``encode_batch``).

* ``BATCH`` bodies are a pickled list of entries, each
  ``(kind, msg_id, actor_id, method, blob, nbufs)``: calls, tells and replies.
  ``blob`` is the call's own pickle of ``(args, kwargs)`` (or of the reply),
  made at the call site so that a bad argument fails there; its out-of-band
  buffers are the next ``nbufs`` buffer frames.
* ``CONTROL`` bodies are a pickled tuple ``(op, *fields)`` of plain values; the
  supervisor never unpickles user objects.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from collections.abc import Sequence
from typing import Any

import cloudpickle

from actors._errors import RemoteError, RemoteTraceback, SerializationError
from actors._future import describe

__all__ = [
    "BATCH",
    "CALL",
    "CONTROL",
    "ERR",
    "OK",
    "TELL",
    "ProtocolError",
    "decode_body",
    "decode_error",
    "dumps",
    "dumps_call",
    "encode_batch",
    "encode_control",
    "encode_error",
    "loads",
    "pack",
    "unpack",
]

MAGIC = b"dc"
VERSION = 1
HEADER = struct.Struct("<2sBBII")  # magic, version, kind, buffer count, epoch

BATCH, CONTROL = 1, 2
CALL, TELL, OK, ERR = 1, 2, 3, 4

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
    """True for values (and ``(args, kwargs)`` of values) the C pickler carries as well."""
    if type(obj) in _PLAIN:
        return True
    if type(obj) is not tuple or len(obj) != 2 or type(obj[0]) is not tuple:
        return False
    if type(obj[1]) is not dict:
        return False
    for arg in obj[0]:
        if type(arg) not in _PLAIN:
            return False
    for value in obj[1].values():  # noqa: SIM110 -- a loop beats all() and its generator here
        if type(value) not in _PLAIN:
            return False
    return True


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
        culprit = _find_unpicklable(args, kwargs)
        raise SerializationError(f"{describe(what)}: cannot pickle {culprit}: {exc}") from exc


def _find_unpicklable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
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
    except Exception:
        stand_in = RemoteError(str(exc), f"{type(exc).__module__}.{type(exc).__qualname__}")
        return dumps((stand_in, text), out_of_band=False)[0]


def decode_error(blob: Any, buffers: Sequence[Buffer] = ()) -> BaseException:
    """The exception from ``encode_error``, with the remote traceback as its cause."""
    try:
        exc, text = loads(blob, buffers)
    except Exception as err:
        return SerializationError(f"could not unpickle a remote exception: {err!r}")
    exc.__cause__ = RemoteTraceback(text)
    return exc  # type: ignore[no-any-return]


def encode_batch(
    entries: list[tuple[Any, ...]], buffers: list[Buffer], epoch: int = 0
) -> list[Any]:
    """``epoch`` is the incarnation of the worker the calls are for: a restarted
    worker drops calls that were meant for the process before it."""
    return pack(BATCH, pickle.dumps(entries, 5), buffers, epoch)


def encode_control(op: str, *fields: Any) -> list[Any]:
    return pack(CONTROL, pickle.dumps((op, *fields), 5))


def decode_body(body: Any) -> Any:
    try:
        return pickle.loads(body)
    except Exception as exc:
        raise ProtocolError(f"body does not unpickle: {exc!r}") from None
