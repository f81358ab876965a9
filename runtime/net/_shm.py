"""Large buffers through shared memory, between the processes of one host.

::

  sender: Pool.share(frames)                  receiver: attach(buffers)
    a buffer of SHM_MIN bytes or more            map the segment (kept mapped: warm)
    -> memcpy into a free pooled segment         check its lease, note this pid as holder
    -> its frame becomes a descriptor  ──zmq──▶  a view of the payload, for pickle
       (name, length, lease), kind |= SHARED     the view collected -> lease word := 0
    a segment whose lease word is 0 is free  ◀── (the "release": one word in the segment)

Segments are files in /dev/shm named ``dovecote.<owner pid>.<pool>.<n>``, mode
0600, pre-allocated and pre-faulted (``posix_fallocate``, ``MADV_POPULATE_WRITE``:
no page faults on the hot path, and no SIGBUS when /dev/shm is full), pooled by
size class (a size rounded up to an eighth of its power of two) and reused. A
segment's first page is its header: the lease (u64 at 0; 0 = free, else the
number of the message that owns it) and the holder (u64 at 8; the pid of the
receiver that mapped it, 0 until then). The payload starts at the next page.

A segment is reused only once its lease word is 0 again: the receiver's view is
valid as long as anything references it. A segment whose holder died, or that
was sent to a worker that died before mapping it (``lost``), is taken back. The
owner unlinks its segments on close; the supervisor unlinks a dead worker's
(``remove_segments``); a receiver's mapping keeps the memory valid until its last
view is gone. When no segment can be had (the pool is at its limit with every
segment in use, /dev/shm is full or absent) a buffer travels as a zmq frame,
sent without a copy, as it does to another host.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import logging
import mmap
import os
import pickle
import re
import secrets
import struct
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from runtime import wire
from runtime.net._sockets import DONTWAIT, Socket, send

__all__ = [
    "SHM_MIN",
    "Pool",
    "Sharing",
    "attach",
    "forget_segments",
    "remove_segments",
    "size_class",
]

log = logging.getLogger("dovecote")

SHM_DIR = "/dev/shm"
SHM_MIN = 1 << 19  # measured: an echo of 512 KiB is 15% faster through a segment, 256 KiB even
PAGE = 4096  # the header; the payload starts page-aligned after it
POOL_MAX = 2 << 30  # bytes of segments per process, by default (see Pool.open)
MAPS_MAX = 32  # segments of other processes a receiver keeps mapped
_WORD = struct.Struct("<Q")
_LEASE, _HOLDER = 0, 8  # offsets in the header
# Pages are mapped ahead and buffers copied a chunk at a time: mmap(MAP_POPULATE)
# and a slice assignment hold the GIL throughout (0.7 s and 0.4 s for a GiB), long
# enough to starve a worker's heartbeat thread. Between chunks, other threads run.
_CHUNK = 16 << 20
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14
_NAME = re.compile(r"dovecote\.[0-9]+\.[0-9a-f]+\.[0-9]+\Z")


def size_class(nbytes: int) -> int:
    """The capacity of the segments a buffer of ``nbytes`` goes in: at most 12.5% more."""
    step = max(PAGE, 1 << max(0, nbytes.bit_length() - 4))
    return -(-nbytes // step) * step


def _word(mm: mmap.mmap, offset: int) -> int:
    return int(_WORD.unpack_from(mm, offset)[0])


class Segment:
    """One file of the pool, mapped. Internal."""

    __slots__ = ("capacity", "key", "mm", "name")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.key: object = None  # where its last message went (see Pool.lost)
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, PAGE + capacity)
            self.mm = _mapped(fd, PAGE + capacity)
        except BaseException:
            os.unlink(os.path.join(SHM_DIR, name))
            raise
        finally:
            os.close(fd)

    def free(self) -> bool:
        return _word(self.mm, _LEASE) == 0

    def claim(self, lease: int, key: object) -> None:
        self.key = key
        _WORD.pack_into(self.mm, _HOLDER, 0)
        _WORD.pack_into(self.mm, _LEASE, lease)

    def release(self) -> None:
        _WORD.pack_into(self.mm, _LEASE, 0)

    def copy(self, view: memoryview) -> None:
        """``view`` into the payload, a chunk at a time (see ``_CHUNK``)."""
        mm, n = self.mm, view.nbytes
        for offset in range(0, n, _CHUNK):
            end = min(n, offset + _CHUNK)
            mm[PAGE + offset : PAGE + end] = view[offset:end]

    def holder(self) -> int:
        return _word(self.mm, _HOLDER)

    def destroy(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, self.name))
        with contextlib.suppress(BufferError):  # a view still exported: unmapped when collected
            self.mm.close()


class Pool:
    """This process's segments, by size class, each reused once its receiver let go.
    Thread-safe: the driver's threads and a worker's loop and keeper share one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0  # bytes of segments, headers included
        self.fallbacks = 0  # buffers that went as zmq frames: no segment to be had
        self._prefix = f"dovecote.{os.getpid()}.{secrets.token_hex(4)}."
        self._classes: dict[int, list[Segment]] = {}
        self._names = itertools.count(1)
        self._leases = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls) -> Pool | None:
        """A pool, or None where shared memory is off: ``DOVECOTE_SHM=0``, no /dev/shm
        (not Linux). ``DOVECOTE_SHM_POOL`` sets the limit in MiB (default 2 GiB, at
        most a quarter of /dev/shm)."""
        if os.environ.get("DOVECOTE_SHM", "1") in ("0", "off", "false", "no"):
            return None
        if not hasattr(os, "posix_fallocate") or not os.path.isdir(SHM_DIR):
            return None
        try:
            stat = os.statvfs(SHM_DIR)
        except OSError:
            return None
        limit = min(POOL_MAX, stat.f_blocks * stat.f_frsize // 4)
        setting = os.environ.get("DOVECOTE_SHM_POOL")
        if setting:
            limit = int(setting) << 20
        return cls(limit)

    def share(self, frames: list[Any], first: int, key: object) -> list[Segment]:
        """Move the large buffers of a message for a peer on this host into segments.

        ``frames[first]`` is the header frame, the buffers follow it. Each buffer of
        ``SHM_MIN`` bytes or more is copied into a segment and its frame replaced by
        a descriptor; a buffer that finds no segment stays a frame. ``key`` names
        the destination (see ``lost``). Returns the segments taken: ``release``
        them if the message is not sent after all."""
        views = [_payload(frame) for frame in frames[first + 1 :]]
        if (
            not any(views)
            or any(
                view is None and wire.looks_like_descriptor(frame)  # no codec makes those
                for view, frame in zip(views, frames[first + 1 :], strict=True)
            )
        ):
            return []
        taken: list[Segment] = []
        for i, view in enumerate(views, first + 1):
            if view is None:
                continue
            segment, lease = self._take(view.nbytes, key)
            if segment is None:
                continue
            segment.copy(view)
            frames[i] = wire.describe(segment.name, view.nbytes, lease)
            taken.append(segment)
        if taken:
            frames[first] = wire.mark_shared(frames[first])
        return taken

    def release(self, segments: Sequence[Segment]) -> None:
        """A message that was not sent: its segments are free again."""
        for segment in segments:
            segment.release()

    def lost(self, key: object) -> None:
        """The peer ``key`` died: what was sent to it is free, unless a process
        still alive mapped it (a view it handed on)."""
        with self._lock:
            for segments in self._classes.values():
                for segment in segments:
                    if segment.key != key or segment.free():
                        continue
                    holder = segment.holder()
                    if not holder or not _alive(holder):
                        segment.release()

    def close(self) -> None:
        """Unlink every segment: receivers' views of them stay valid."""
        with self._lock:
            self._closed = True
            for segments in self._classes.values():
                for segment in segments:
                    segment.destroy()
            self._classes.clear()
            self.size = 0

    def segments(self) -> int:
        with self._lock:
            return sum(len(segments) for segments in self._classes.values())

    def _take(self, nbytes: int, key: object) -> tuple[Segment | None, int]:
        """A free segment for ``nbytes``, claimed, with its lease; None, 0 if none."""
        capacity = size_class(nbytes)
        with self._lock:
            if self._closed:
                return None, 0
            lease = next(self._leases)
            segment = self._free(capacity)
            if segment is None and self.size + PAGE + capacity > self.limit:
                self._reclaim()
                segment = self._free(capacity)
                if segment is None:
                    self._evict(capacity)
            if segment is None and self.size + PAGE + capacity <= self.limit:
                segment = self._create(capacity)
            if segment is None:
                self.fallbacks += 1
                return None, 0
            segment.claim(lease, key)
            return segment, lease

    def _free(self, capacity: int) -> Segment | None:
        for segment in self._classes.get(capacity, ()):
            if segment.free():
                return segment
        return None

    def _create(self, capacity: int) -> Segment | None:
        try:
            segment = Segment(f"{self._prefix}{next(self._names)}", capacity)
        except OSError as exc:  # /dev/shm full, or not writable
            log.info("no shared-memory segment of %d bytes: %s; zmq frames instead", capacity, exc)
            return None
        self._classes.setdefault(capacity, []).append(segment)
        self.size += PAGE + capacity
        return segment

    def _reclaim(self) -> None:
        """Segments whose receiver died holding them are free."""
        for segments in self._classes.values():
            for segment in segments:
                holder = segment.holder()
                if holder and not segment.free() and not _alive(holder):
                    segment.release()

    def _evict(self, capacity: int) -> None:
        """Unlink free segments of other sizes until one of ``capacity`` fits."""
        for size, segments in self._classes.items():
            for segment in [s for s in segments if size != capacity and s.free()]:
                if self.size + PAGE + capacity <= self.limit:
                    return
                segments.remove(segment)
                segment.destroy()
                self.size -= PAGE + segment.capacity


class Sharing:
    """How a sender's messages go out: large buffers for a peer on this host
    (``near(key)``) through ``pool``; the rest, or everything when the pool is
    None (shared memory off) or full, as zmq frames."""

    __slots__ = ("near", "pool")

    def __init__(self, near: Callable[[Any], bool], pool: Pool | None) -> None:
        self.near = near
        self.pool = pool

    def send(self, sock: Socket, frames: list[Any], key: Any, first: int = 0) -> None:
        """``net.send`` with DONTWAIT, to the peer ``key``; ``frames[first]`` is the
        header frame. A message not sent (zmq.Again and all) frees its segments."""
        pool = self.pool
        if pool is None or len(frames) <= first + 1 or not self.near(key):
            send(sock, frames, DONTWAIT)
            return
        shared = pool.share(frames, first, key)
        try:
            send(sock, frames, DONTWAIT)
        except BaseException:
            pool.release(shared)
            raise

    def lost(self, key: Any) -> None:
        """The peer ``key`` died (see ``Pool.lost``)."""
        if self.pool is not None:
            self.pool.lost(key)

    def close(self) -> None:
        """Unlink this process's segments and let go of the others' mappings."""
        if self.pool is not None:
            self.pool.close()
        forget_segments()


def _mapped(fd: int, size: int) -> mmap.mmap:
    """The file ``fd`` mapped shared, its pages mapped now, a chunk at a time: no
    page faults when it is used, and the GIL let go of between chunks."""
    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    try:
        for offset in range(0, size, _CHUNK):
            mm.madvise(_POPULATE_WRITE, offset, min(_CHUNK, size - offset))
    except OSError:  # a kernel before 5.14: the first use faults them in
        pass
    return mm


def _payload(frame: Any) -> memoryview | None:
    """A buffer frame's bytes, if it is large enough to go through a segment."""
    try:
        view = frame.raw() if type(frame) is pickle.PickleBuffer else memoryview(frame).cast("B")
    except (TypeError, ValueError, BufferError):  # not contiguous, or an odd format
        return None
    return view if view.nbytes >= SHM_MIN else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Maps:
    """The segments of other processes this one has mapped, the most recent last:
    kept mapped, so that a reused segment costs no page faults. Internal."""

    def __init__(self) -> None:
        self._maps: collections.OrderedDict[str, mmap.mmap] = collections.OrderedDict()
        self._lock = threading.Lock()

    def view(self, descriptor: wire.Descriptor) -> Any:
        name, length, lease = descriptor
        if not _NAME.match(name):
            raise wire.ProtocolError(f"{name!r} is not a segment's name")
        mm = self._map(name)
        if length > len(mm) - PAGE or _word(mm, _LEASE) != lease:
            raise wire.ProtocolError(f"segment {name} does not hold lease {lease}")
        _WORD.pack_into(mm, _HOLDER, os.getpid())
        view = (ctypes.c_ubyte * length).from_buffer(mm, PAGE)
        weakref.finalize(view, _release, mm, lease)
        return view

    def _map(self, name: str) -> mmap.mmap:
        with self._lock:
            mm = self._maps.get(name)
            if mm is not None:
                self._maps.move_to_end(name)
                return mm
            for gone in [n for n in self._maps if not os.path.exists(f"{SHM_DIR}/{n}")]:
                del self._maps[gone]  # unlinked by its owner: unmapped with its last view
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
            try:
                mm = _mapped(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            self._maps[name] = mm
            if len(self._maps) > MAPS_MAX:
                self._maps.popitem(last=False)
            return mm

    def clear(self) -> None:
        with self._lock:
            self._maps.clear()


def _release(mm: mmap.mmap, lease: int) -> None:
    """A view was collected: its segment is free for its owner to reuse."""
    if not mm.closed and _word(mm, _LEASE) == lease:
        _WORD.pack_into(mm, _LEASE, 0)


_MAPS = _Maps()


class UnmappedSharedMemory:
    """Stands for a buffer whose segment this process could not map (logged): the
    value it belongs to does not unpickle (a TypeError naming this class), so the
    call or the reply fails at its caller instead of vanishing. Internal."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def attach(buffers: Sequence[Any], near: bool = True) -> Sequence[Any]:
    """A received batch's buffers as pickle takes them: each descriptor becomes a
    view of its segment, valid while referenced, or an ``UnmappedSharedMemory``.
    ProtocolError for descriptors from a peer on another host (not ``near``)."""
    if not buffers or not any(type(b) is wire.Descriptor for b in buffers):
        return buffers  # the common case, on every message: no shared memory
    if not near:
        raise wire.ProtocolError("shared-memory descriptors from another host")
    out: list[Any] = []
    for buffer in buffers:
        if type(buffer) is wire.Descriptor:
            try:
                buffer = _MAPS.view(buffer)
            except (OSError, ValueError) as exc:  # ProtocolError is a ValueError
                log.warning("a shared-memory buffer cannot be mapped: %s", exc)
                buffer = UnmappedSharedMemory(str(exc))
        out.append(buffer)
    return out


def forget_segments() -> None:
    """Let go of the mappings kept for reuse (a driver's system closed)."""
    _MAPS.clear()


def remove_segments(pid: int) -> int:
    """Unlink the segments of process ``pid`` (it died): how many there were."""
    prefix = f"dovecote.{pid}."
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except OSError:
        return 0
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))
    return len(names)
