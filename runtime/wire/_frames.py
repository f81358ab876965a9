"""Frames, the fixed header, and the entries of a batch. Pure: no sockets, no clock.

A message is a list of frames: ``[header + body, *buffers]`` (a ROUTER adds the
peer's routing id in front). The header is fixed, 12 bytes: magic, version, kind,
the number of buffer frames that follow, and the epoch of the worker a batch is
for (a restarted worker drops what was meant for the process before it). A batch
whose large buffers went through shared memory has the ``SHARED`` bit set in its
kind, and descriptors among its buffer frames (see ``_shm``).

A ``BATCH`` body holds entries (see :class:`Entry`): calls, tells, cancels and
replies. It is a count, a fixed struct per entry (kind, form, ids, buffer count,
the method name's length), the method names, then one pickle: a lone entry's
payload, or the list of a batch's payloads. A payload is a tuple, pickled with
the message (a call's plain ``(args, kwargs)`` or a reply's ``(value,)``: the
``RAW`` form), or the ``bytes`` of a pickle made at the call site (``BLOB``:
what needs cloudpickle or has buffers; a bad argument fails where it was
passed). A receiver gets a ``RAW`` payload decoded and a ``BLOB`` one as its
bytes, unpickled when used. A ``CONTROL`` body is JSON (see ``_control``).
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from runtime.wire._shm import SHARED, read_descriptors

__all__ = [
    "BARRIER_ACTOR",
    "BATCH",
    "BLOB",
    "CALL",
    "CANCEL",
    "CANCELLED",
    "CONTROL",
    "COUNT",
    "ENTRY",
    "ERR",
    "HEADER",
    "MAGIC",
    "OK",
    "RAW",
    "STARTED",
    "TASK_ACTOR",
    "TELL",
    "VERSION",
    "Buffer",
    "Entry",
    "ProtocolError",
    "RawEntry",
    "decode_body",
    "encode_batch",
    "pack",
    "peer_name",
    "unpack",
]

MAGIC = b"dc"
VERSION = 2
HEADER = struct.Struct("<2sBBII")  # magic, version, kind, buffer count, epoch
COUNT = struct.Struct("<H")  # entries in a batch body (at most 1024: see core.MAX_BATCH)
# An entry: kind, form (RAW or BLOB), msg id, actor id, buffer count, method length.
ENTRY = struct.Struct("<BBqqIH")
RAW, BLOB = 0, 1

BATCH, CONTROL = 1, 2
CALL, TELL, OK, ERR = 1, 2, 3, 4
# A caller's cancel of a call it sent (CANCEL, msg_id), and the worker's verdict:
# CANCELLED (it will not run) or STARTED (too late: it runs or has run).
CANCEL, CANCELLED, STARTED = 5, 6, 7

BARRIER_ACTOR = 0  # no actor has this id: a call to it is answered by the worker itself
TASK_ACTOR = -1  # answered by every worker: "run" one function, or a "chunk" of items

Buffer = Any  # a PickleBuffer, memoryview or zmq.Frame


class ProtocolError(ValueError):
    """A message that does not parse; the receiver logs it and drops it."""


class Entry(NamedTuple):
    """One call, tell, cancel or reply in a batch. ``blob`` is its payload: a tuple
    (``RAW``: a call's plain ``(args, kwargs)``, a reply's ``(value,)``) or the
    ``bytes`` of a pickle made at the call site so that a bad argument fails
    there; its out-of-band buffers are the batch's next ``nbufs`` buffer frames.

    The fields of a :data:`RawEntry`, named: what is queued and travels is the
    plain tuple, in this order (a NamedTuple costs a fraction of a microsecond
    more to build and several to pickle, on every message), and the code reads
    it by unpacking in this order. ``Entry._make(raw)`` names them for a reader.
    """

    kind: int
    msg_id: int
    actor_id: int
    method: str
    blob: Any
    nbufs: int


RawEntry = tuple[int, int, int, str, Any, int]  # an Entry's fields, in Entry's order


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
        if kind == BATCH | SHARED and nbufs and nbufs == len(frames) - 1:
            return BATCH, first[HEADER.size :], _descriptors(frames[1:]), epoch
        raise ProtocolError(f"kind {kind} with {nbufs} buffers in {len(frames)} frames")
    return kind, first[HEADER.size :], frames[1:] if nbufs else (), epoch


def _descriptors(frames: Sequence[Any]) -> list[Any]:
    """The buffers of a batch whose large ones are in shared memory (see ``_shm``):
    descriptors in their place, for the receiver to map."""
    try:
        return read_descriptors(frames)
    except (ValueError, struct.error) as exc:
        raise ProtocolError(f"a shared-memory descriptor that does not parse: {exc}") from None


def encode_batch(
    entries: Sequence[RawEntry], buffers: Sequence[Buffer], epoch: int = 0
) -> list[Any]:
    """``epoch`` is the incarnation of the worker the calls are for. The RAW
    payloads are pickled here, once for the whole batch."""
    if len(entries) == 1:  # the common case: one pickle, or the blob as it is
        kind, msg_id, actor_id, method, payload, nbufs = entries[0]
        name = _name_bytes(method)
        blob = type(payload) is bytes
        head = ENTRY.pack(kind, blob, msg_id, actor_id, nbufs, len(name))
        section = payload if blob else pickle.dumps(payload, 5)
        return pack(BATCH, b"".join((_ONE, head, name, section)), buffers, epoch)
    parts = [COUNT.pack(len(entries))]
    names = []
    for kind, msg_id, actor_id, method, payload, nbufs in entries:
        name = _name_bytes(method)
        parts.append(ENTRY.pack(kind, type(payload) is bytes, msg_id, actor_id, nbufs, len(name)))
        names.append(name)
    parts += names
    parts.append(pickle.dumps([entry[4] for entry in entries], 5))
    return pack(BATCH, b"".join(parts), buffers, epoch)


def decode_body(body: Any) -> list[RawEntry]:
    """A batch's entries, their RAW payloads decoded. Whatever is wrong with it, even
    SystemExit from a hostile pickle, becomes a ProtocolError."""
    try:
        return _decode_body(memoryview(body))
    except ProtocolError:
        raise
    except BaseException as exc:
        raise ProtocolError(f"body does not parse: {type(exc).__name__}: {exc}") from None


def _decode_body(body: memoryview) -> list[RawEntry]:
    (count,) = COUNT.unpack_from(body)
    if count == 1:  # a lone payload: RAW unpickled now, a BLOB's bytes when used
        kind, form, msg_id, actor_id, nbufs, size = ENTRY.unpack_from(body, _FIRST)
        end = _FIRST + ENTRY.size + size
        name = _name(body[_FIRST + ENTRY.size : end])
        payload = body[end:] if form == BLOB else _raw(pickle.loads(body[end:]))
        return [(kind, msg_id, actor_id, name, payload, nbufs)]
    heads = list(ENTRY.iter_unpack(body[_FIRST : _FIRST + count * ENTRY.size]))
    if len(heads) != count or not count:
        raise ProtocolError(f"a body of {len(body)} bytes for {count} entries")
    offset = _FIRST + count * ENTRY.size
    payloads = pickle.loads(body[offset + sum(head[5] for head in heads) :])
    if type(payloads) is not list or len(payloads) != count:
        raise ProtocolError(f"a batch of {count} entries with other payloads")
    entries: list[RawEntry] = []
    for (kind, form, msg_id, actor_id, nbufs, size), payload in zip(heads, payloads, strict=True):
        if type(payload) is not (bytes if form == BLOB else tuple):
            raise ProtocolError(f"an entry's payload of type {type(payload).__name__}")
        name = _name(body[offset : offset + size])
        entries.append((kind, msg_id, actor_id, name, payload, nbufs))
        offset += size
    return entries


def _raw(payload: Any) -> tuple[Any, ...]:
    if type(payload) is not tuple:
        raise ProtocolError(f"a payload of type {type(payload).__name__}")
    return payload


_ONE = COUNT.pack(1)
_FIRST = COUNT.size  # where the entries' structs start
_NAMES_MAX = 4096  # method names cached each way; a peer's odd names are not kept
_name_to_bytes: dict[str, bytes] = {}
_bytes_to_name: dict[bytes, str] = {}


def _name_bytes(method: str) -> bytes:
    name = _name_to_bytes.get(method)
    if name is None:
        name = method.encode()
        if len(_name_to_bytes) < _NAMES_MAX:
            _name_to_bytes[method] = name
    return name


def _name(raw: memoryview) -> str:
    """A method name, interned: the same str object for every message that names it."""
    key = raw.tobytes()
    name = _bytes_to_name.get(key)
    if name is None:
        name = key.decode()  # UnicodeDecodeError: the body is malformed
        if len(_bytes_to_name) < _NAMES_MAX:
            name = _bytes_to_name[key] = sys.intern(name)
    return name


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
