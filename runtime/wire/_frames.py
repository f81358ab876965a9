"""Frames, the fixed header, and the entries of a batch. Pure: no sockets, no clock.

A message is a list of frames: ``[header + body, *buffers]`` (a ROUTER adds the
peer's routing id in front). The header is fixed, 12 bytes: magic, version, kind,
the number of buffer frames that follow, and the epoch of the worker a batch is
for (a restarted worker drops what was meant for the process before it). A batch
whose large buffers went through shared memory has the ``SHARED`` bit set in its
kind, and descriptors among its buffer frames (see ``_shm``).

A ``BATCH`` body is one pickle: the list of its entries (see :class:`Entry`),
calls, tells, cancels and replies, with their payloads inside. A payload is a
tuple, pickled with the batch at its flush (a call's plain ``(args, kwargs)``,
a reply's ``(value,)``), or the ``bytes`` of a pickle made at the call site
(what needs cloudpickle or has buffers: a bad argument fails where it was
passed), unpickled where it is used. One C ``pickle.loads`` decodes a batch:
measured, a struct per entry parsed in Python costs twice as much. A
``CONTROL`` body is JSON (see ``_control``).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from runtime.wire._shm import SHARED, read_descriptors

__all__ = [
    "BARRIER_ACTOR",
    "BATCH",
    "BUFFER_COUNT",
    "CALL",
    "CANCEL",
    "CANCELLED",
    "CONTROL",
    "ERR",
    "HEADER",
    "MAGIC",
    "OK",
    "STARTED",
    "TASK_ACTOR",
    "TELL",
    "VERSION",
    "Buffer",
    "Entry",
    "ProtocolError",
    "RawEntry",
    "batch_head",
    "decode_body",
    "encode_batch",
    "pack",
    "peer_name",
    "plain_body",
    "unpack",
]

MAGIC = b"dc"
VERSION = 3  # 3: a call's raw payload is its args tuple, or [args, kwargs] (wire.dumps_call)
HEADER = struct.Struct("<2sBBII")  # magic, version, kind, buffer count, epoch
BUFFER_COUNT = slice(4, 8)  # where a header's bytes hold its buffer count

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
    (a call's plain ``(args, kwargs)``, a reply's ``(value,)``) or the ``bytes``
    of a pickle made at the call site so that a bad argument fails there; its
    out-of-band buffers are the batch's next ``nbufs`` buffer frames.

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
    """``epoch`` is the incarnation of the worker the calls are for. Plain payloads
    are pickled here, once for the whole batch."""
    if buffers:
        return pack(BATCH, pickle.dumps(entries, 5), buffers, epoch)
    return [(_HEADS.get(epoch) or _head(epoch)) + pickle.dumps(entries, 5)]


def plain_body(frame: Any, epoch: int) -> bytes | memoryview | None:
    """The body of a one-frame BATCH for ``epoch``, the usual message, found by one
    comparison of its header's bytes; None for anything else (see ``unpack``). A
    part read as bytes (a DEALER's: ``net.recv_batch``) gives bytes: a copy of a
    reply's few dozen bytes, which pickle reads in half the time it takes a view."""
    head = _HEADS.get(epoch) or _head(epoch)
    if type(frame) is bytes:
        return frame[_SIZE:] if len(frame) > _SIZE and frame.startswith(head) else None
    view = memoryview(frame)
    if view[:_SIZE] == head and len(view) > _SIZE:
        return view[_SIZE:]
    return None


_HEADS: dict[int, bytes] = {}  # the header of a BATCH without buffers, by epoch
_SIZE = HEADER.size


def batch_head(epoch: int) -> bytes:
    """The header of a BATCH for ``epoch`` with no buffers: a plain body follows it."""
    return _HEADS.get(epoch) or _head(epoch)


def _head(epoch: int) -> bytes:
    head = _HEADS[epoch] = HEADER.pack(MAGIC, VERSION, BATCH, 0, epoch)
    return head


def decode_body(body: Any) -> Any:
    """A batch's list of entries, unchecked. Whatever its unpickling raises, even
    SystemExit from a hostile pickle, becomes a ProtocolError."""
    try:
        return pickle.loads(body)
    except BaseException as exc:
        raise ProtocolError(f"body does not unpickle: {type(exc).__name__}") from None


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
