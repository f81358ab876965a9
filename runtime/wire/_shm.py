"""Descriptors of buffers that travel through shared memory. Pure: no files, no mmap.

A message whose large buffers went into shared-memory segments (one host only)
has the ``SHARED`` bit set in its header's kind byte, and each such buffer frame
is replaced by a small descriptor: which segment, how many bytes, and the lease
(the number the segment's header holds while this message owns it). The
receiver maps the segment and hands pickle a view of it instead of the frame.

A descriptor frame is ``MAGIC + <length, lease> + name``, at most
``DESCRIPTOR_MAX`` bytes. With the bit set, a buffer frame that short starting
with ``MAGIC`` is a descriptor; a sender never sets the bit on a message whose
other buffers look like one (see ``looks_like_descriptor``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "DESCRIPTOR_MAX",
    "SHARED",
    "Descriptor",
    "describe",
    "looks_like_descriptor",
    "mark_shared",
    "read_descriptors",
]

SHARED = 0x80  # a bit of the header's kind byte: some buffer frames are descriptors
_KIND_BYTE = 3  # in HEADER: magic (2 bytes), version, kind, ...
MAGIC = b"dcsm"
_FIELDS = struct.Struct("<QQ")  # length, lease
DESCRIPTOR_MAX = 255


class Descriptor(NamedTuple):
    """A buffer in the segment ``name`` (a file name under /dev/shm): its first
    ``length`` bytes of payload, owned by the message whose lease is ``lease``."""

    name: str
    length: int
    lease: int


def describe(name: str, length: int, lease: int) -> bytes:
    return MAGIC + _FIELDS.pack(length, lease) + name.encode("ascii")


def looks_like_descriptor(frame: Any) -> bool:
    view = memoryview(frame)
    return view.nbytes <= DESCRIPTOR_MAX and bytes(view[: len(MAGIC)]) == MAGIC


def mark_shared(first: bytes) -> bytes:
    """Frame 0 (header and body) with the SHARED bit set in its kind."""
    kind = first[_KIND_BYTE] | SHARED
    return first[:_KIND_BYTE] + bytes((kind,)) + first[_KIND_BYTE + 1 :]


def read_descriptors(frames: Sequence[Any]) -> list[Any]:
    """The buffer frames of a SHARED message, its descriptors parsed; ValueError
    for a descriptor that does not parse."""
    out: list[Any] = []
    for frame in frames:
        if not looks_like_descriptor(frame):
            out.append(frame)
            continue
        raw = bytes(memoryview(frame))
        length, lease = _FIELDS.unpack_from(raw, len(MAGIC))
        name = raw[len(MAGIC) + _FIELDS.size :].decode("ascii")
        out.append(Descriptor(name, length, lease))
    return out
