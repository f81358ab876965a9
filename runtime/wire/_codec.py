"""Pickling for the data path: cloudpickle, protocol 5, large buffers out of band,
and exceptions that cross processes with their tracebacks. No sockets here.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cloudpickle

from actors._errors import RemoteError, RemoteTraceback, SerializationError
from actors._future import describe
from runtime.wire._frames import BATCH, Buffer, pack

__all__ = [
    "NO_KWARGS",
    "OUT_OF_BAND_MIN",
    "PLAIN",
    "REPLY_HEAD",
    "TaskFailure",
    "decode_error",
    "dumps",
    "dumps_call",
    "dumps_reply",
    "encode_error",
    "find_unpicklable",
    "load_call",
    "load_reply",
    "loads",
    "named_arguments",
]

# Buffers below this travel inside the pickle: a frame of their own costs more.
OUT_OF_BAND_MIN = 64 * 1024
PLAIN = frozenset({int, float, str, bytes, bool, type(None)})  # pickled with a batch
_NO_BUFFERS: tuple[pickle.PickleBuffer, ...] = ()
# A call's keywords when it has none. Read-only by its type; a dict, as ``f(**kw)``
# unpacks a dict fastest.
NO_KWARGS: Mapping[str, Any] = {}


def _is_plain(obj: Any) -> bool:
    """True for values (and ``(args, kwargs)`` of values) the C pickler carries as
    well; large bytes are not plain: they go out of band (see ``_LargeBytes``)."""
    if type(obj) in PLAIN:
        return type(obj) is not bytes or len(obj) < OUT_OF_BAND_MIN
    if type(obj) is not tuple or len(obj) != 2 or type(obj[0]) is not tuple:
        return False
    if type(obj[1]) is not dict:
        return False
    for arg in obj[0]:
        if type(arg) not in PLAIN or (type(arg) is bytes and len(arg) >= OUT_OF_BAND_MIN):
            return False
    for value in obj[1].values():
        if type(value) not in PLAIN or (type(value) is bytes and len(value) >= OUT_OF_BAND_MIN):
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


def dumps_reply(value: Any) -> tuple[Any, Sequence[pickle.PickleBuffer]]:
    """A reply's payload: a plain value as ``(value,)`` (pickled with its batch),
    else its pickle. Raises what pickling raises."""
    kind = type(value)
    if kind in PLAIN and (kind is not bytes or len(value) < OUT_OF_BAND_MIN):
        return (value,), _NO_BUFFERS
    return dumps(value)


REPLY_HEAD: bytes = pack(BATCH, b"")[0]  # a batch's header as replies have it: epoch 0


def load_call(payload: Any, buffers: Sequence[Buffer]) -> Any:
    """A call's ``(args, kwargs)`` from its payload (see ``dumps_call``)."""
    kind = type(payload)
    if kind is tuple:
        return payload, NO_KWARGS
    if kind is list:
        args, kwargs = payload
        return args, kwargs
    return loads(payload, buffers)


def load_reply(payload: Any, buffers: Sequence[Buffer]) -> Any:
    """A reply's value from its payload (see ``dumps_reply``)."""
    return payload[0] if type(payload) is tuple else loads(payload, buffers)


def dumps_call(
    what: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Sequence[pickle.PickleBuffer]]:
    """A call's payload: its plain arguments as they are, pickled with the batch
    they travel in (the ``args`` tuple itself, or ``[args, kwargs]`` with
    keywords: no tuple to build, and each call's payload lives until its batch
    goes, so an object fewer per call for the garbage collector to look at);
    or else their pickle, made now so that a bad argument fails here, named."""
    for arg in args:  # _is_plain inline: this runs for every call and tell
        kind = type(arg)
        if kind not in PLAIN or (kind is bytes and len(arg) >= OUT_OF_BAND_MIN):
            break
    else:
        if not kwargs:
            return args, _NO_BUFFERS
        if _is_plain(((), kwargs)):
            return [args, kwargs], _NO_BUFFERS
    payload = (args, kwargs)
    try:
        return dumps(payload)
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


class TaskFailure:
    """One item of a map chunk that raised: its pickled error (``encode_error``)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskFailure, (self.blob,))
