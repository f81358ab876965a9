"""The event bus: topics matched by prefix, through an XSUB/XPUB proxy in the supervisor.

::

    publisher PUB ──▶ XSUB ┐  supervisor  ┌ XPUB ──▶ SUB subscriber
    publisher PUB ──▶      └──── proxy ───┘      ──▶ SUB subscriber

A message is one frame, ``topic NUL first count publisher NUL pickle``, and carries
a batch: the events one publisher published on one topic in a row, within one turn
of its process's loop (up to ``BATCH_MAX``), as one pickled list. Each publisher
numbers the events of each topic (``first`` is the batch's first number, ``count``
how many follow on), so a subscriber sees a gap on any topic it gets, a dropped
batch included. Plain values (int, float, str, bytes, bool, None) are pickled with
their batch; any other event is pickled when it is published, so that an event
that cannot be pickled raises in the publisher's call, and travels in the batch as
its bytes.

Three edges are closed here:

* **Publishers lose nothing.** A PUB drops what it sends before its connection
  is up, so a process holds its events until a sync message it published has
  come back through the proxy to one of its own subscriptions; and its PUB runs
  with XPUB_NODROP, so a full queue holds events back instead of dropping them.
  The proxy's XSUB subscribes to everything: no subscription has to travel back
  to each publisher.
* **A subscriber misses nothing published after subscribe() returns** (the slow
  joiner problem). subscribe() also subscribes to a private sync topic and
  publishes on it until the message comes back: from then on the proxy's XPUB
  holds the subscription, and every later event reaches it.
* **A slow subscriber is detected, not silently starved.** XPUB drops for a
  subscriber whose queue is full; every publisher numbers its events, so the
  subscriber sees the gap, counts it in ``missed`` and logs it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from actors import SerializationError
from runtime import wire
from runtime.net._security import secure_socket
from runtime.net._sockets import Context, Socket

__all__ = [
    "BATCH_MAX",
    "INPROC",
    "RESERVED",
    "SYNC",
    "Bus",
    "Gaps",
    "Publisher",
    "Subscription",
    "check_topic",
    "decode",
    "encode",
    "lifecycle_publisher",
    "portable",
    "run_proxy",
]

log = logging.getLogger("dovecote")

RESERVED = "dovecote."  # the runtime's own lifecycle topics
INPROC = "inproc://dovecote-bus"
SYNC = "\x01sync/"
BUS_HWM = 100_000
PROXY_LINGER_MS = 500  # what the proxy still sends once the supervisor ends its context
ASYNC_TURN = 0.25  # seconds a thread waits for an event for ``async for`` before looking again
_DONTWAIT = int(zmq.DONTWAIT)


BATCH_MAX = 1024  # events in one frame at most: a frame is read whole, in one go
HOLD_MAX = 0.005  # seconds an event waits for the end of its loop's turn, at most
_TOPICS_MAX = 10_000  # valid topics remembered, at most
_valid_topics: set[str] = set()


def check_topic(topic: object) -> str:
    """``topic``, if a user may publish on it (remembered: publish checks it per event)."""
    if type(topic) is str and topic in _valid_topics:
        return topic
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic is a non-empty string, not {topic!r}")
    if topic.startswith((RESERVED, SYNC[0])) or "\0" in topic:
        raise ValueError(
            f"topic {topic!r}: the prefix {RESERVED!r} is the runtime's own, and a topic has no NUL"
        )
    if type(topic) is str:  # not a subclass, whose equality could differ
        if len(_valid_topics) >= _TOPICS_MAX:
            _valid_topics.clear()
        _valid_topics.add(topic)
    return topic


_RANGE = struct.Struct("<QI")  # the batch's first sequence number, its number of events
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


class Pickled:
    """An event pickled when it was published; in its batch's pickle it is its bytes,
    and unpickling the batch unpickles it. Internal."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (wire.loads, (self.blob,))


def portable(topic: str, obj: Any) -> Any:
    """``obj`` as its batch will carry it: plain values as they are, anything else
    pickled now (cloudpickle), so that a failure raises in the publisher's call."""
    if type(obj) in _PLAIN or type(obj) is Pickled:
        return obj
    try:
        return Pickled(wire.dumps(obj, out_of_band=False)[0])
    except Exception as exc:
        raise SerializationError(f"publish({topic!r}): cannot pickle {obj!r}: {exc}") from exc


def encode(topic: str, publisher: bytes, first: int, events: list[Any]) -> bytes:
    """One frame, topic first (the SUB filters on its prefix): topic NUL first count
    publisher NUL pickle; ``events`` are plain values or ``Pickled``."""
    head = _RANGE.pack(first, len(events))
    body = pickle.dumps(events, 5)
    return b"".join((topic.encode(), b"\0", head, publisher, b"\0", body))


def decode(frame: bytes) -> tuple[str, bytes, int, list[Any]]:
    """``(topic, publisher, first, events)`` of a frame that ``encode`` made."""
    try:
        end_topic = frame.index(b"\0")
        start = end_topic + 1 + _RANGE.size
        end_publisher = frame.index(b"\0", start)
    except ValueError:
        raise wire.ProtocolError("an event frame without its fields") from None
    first, count = _RANGE.unpack_from(frame, end_topic + 1)
    events = wire.loads(memoryview(frame)[end_publisher + 1 :])
    if type(events) is not list or len(events) != count:
        raise wire.ProtocolError(f"an event frame announced {count} events and held others")
    return frame[:end_topic].decode(), frame[start:end_publisher], first, events


class Gaps:
    """The last sequence number seen per (topic, publisher): what a subscriber missed.
    Sans-IO; internal to ``Subscription``."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, bytes], int] = {}

    def see(self, topic: str, publisher: bytes, first: int, count: int) -> int:
        """Record a batch of ``count`` events numbered from ``first``; the number of
        events missed just before it (0 for the first batch of a publisher's topic)."""
        key = (topic, publisher)
        last = self._last.get(key)
        self._last[key] = first + count - 1
        return 0 if last is None or first <= last + 1 else first - last - 1


def run_proxy(ctx: Context, addresses: wire.Addresses, bound: threading.Event) -> None:
    """The supervisor's bus thread: a C-level XSUB/XPUB proxy (the GIL is free)."""
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    try:
        xpub.setsockopt(zmq.SNDHWM, BUS_HWM)
        xsub.setsockopt(zmq.RCVHWM, BUS_HWM)
        for sock, endpoint in ((xsub, addresses.bus_in), (xpub, addresses.bus_out)):
            sock.setsockopt(zmq.LINGER, 0)
            secure_socket(sock, endpoint, server=True)
            sock.bind(endpoint)
        xpub.setsockopt(zmq.LINGER, PROXY_LINGER_MS)  # the last events out at shutdown
        xsub.bind(INPROC)  # the supervisor's own lifecycle events
        xsub.send(b"\x01")  # every publisher sends everything: the XPUB filters
        bound.set()
        zmq.proxy(xsub, xpub)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close()
        xpub.close()


def lifecycle_publisher(ctx: Context) -> Socket:
    """The supervisor's PUB for the runtime's own events, into the proxy in-process."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(INPROC)
    return sock


class Publisher:
    """One process's PUB socket and its numbering. Internal: the engine owns it.

    Its events are held until ``ready``: until one of this process's subscriptions
    has seen a sync message come back through the proxy, proving the connection.
    """

    def __init__(self, ctx: Context, endpoint: str, name: str) -> None:
        self.name = name.encode()
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, BUS_HWM)
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)  # full: EAGAIN, never a silent drop
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        secure_socket(self.sock, endpoint, server=False)
        self.sock.connect(endpoint)
        self.seqs: dict[str, int] = {}  # per topic: a subscriber sees the topics it wants
        self.ready = False
        self.pending: list[tuple[str, list[Any]]] = []  # runs of one topic, not framed yet
        self.held: list[bytes] = []  # frames not sent yet
        self._since = 0.0  # when the oldest pending event was published (monotonic)

    def sync(self, topic: str) -> None:
        """A handshake message: sent now, or not at all (it is repeated)."""
        with contextlib.suppress(zmq.Again):
            self.sock.send(encode(topic, self.name, 0, [None]), zmq.DONTWAIT)

    def publish(self, topic: str, obj: Any) -> None:
        """Queue an event; ``flush`` (at the end of the loop's turn) frames it with the
        events beside it on its topic. Events held ``HOLD_MAX`` s go out at once: a
        long method that publishes as it goes is not held back to its end."""
        if type(obj) not in _PLAIN:  # portable's first test, inline: most events pass it
            obj = portable(topic, obj)
        pending = self.pending
        if not pending:
            self._since = time.monotonic()
            pending.append((topic, [obj]))
            return
        if pending[-1][0] == topic:
            pending[-1][1].append(obj)
        else:
            pending.append((topic, [obj]))
        if time.monotonic() - self._since >= HOLD_MAX:
            self.flush()

    def flush(self) -> bool:
        """Frame what is pending and send what is held; False while not ready or the
        proxy takes no more."""
        if not self.ready:
            return False
        if self.pending:
            self._frame()
        sent = 0
        try:
            send = self.sock.send
            for frame in self.held:
                send(frame, _DONTWAIT)
                sent += 1
        except zmq.Again:
            return False  # backpressure: the rest waits for the next flush
        finally:
            del self.held[:sent]
        return True

    def _frame(self) -> None:
        """One frame per run of a topic (``BATCH_MAX`` events at most), numbered."""
        pending, self.pending = self.pending, []
        seqs, held, name = self.seqs, self.held, self.name
        for topic, events in pending:
            for start in range(0, len(events), BATCH_MAX):
                batch = events[start : start + BATCH_MAX] if len(events) > BATCH_MAX else events
                first = seqs.get(topic, 0) + 1
                seqs[topic] = first + len(batch) - 1
                held.append(encode(topic, name, first, batch))

    def close(self) -> None:
        self.sock.close(linger=200)


class Subscription:
    """Events whose topic starts with ``prefix``, as ``(topic, obj)`` pairs.

    Iterate it, or ``get(timeout=...)``; with a callback the events go to the
    callback instead. ``missed`` counts events lost because this subscriber
    fell behind (each publisher numbers its events; a gap is logged).
    """

    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        prefix: str,
        callback: Callable[[str, Any], None] | None,
        wait: Callable[[Callable[[], bool], float | None], None],
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.prefix = prefix
        self.callback = callback
        self.missed = 0
        self.sync_topic = f"{SYNC}{os.getpid()}/{id(self)}"
        self.synced = False
        self.closed = False
        self._wait = wait
        self._on_close = on_close
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._gaps = Gaps()
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, BUS_HWM)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, self.sync_topic)
        secure_socket(self.sock, addresses.bus_out, server=False)
        self.sock.connect(addresses.bus_out)

    def deliver(self, frame: bytes) -> None:
        """From the engine's I/O: one message from the proxy, a batch of events."""
        try:
            topic, publisher, first, events = decode(frame)
        except Exception as exc:
            log.warning("subscription %r dropped a malformed event: %r", self.prefix, exc)
            return
        if topic == self.sync_topic:
            self.synced = True
            return
        if topic.startswith(SYNC):
            return  # another subscriber's handshake on a shared prefix
        missed = self._gaps.see(topic, publisher, first, len(events))
        if missed:
            self.missed += missed
            log.warning(
                "subscription %r missed %d events on %r from %r: it is too slow",
                self.prefix,
                missed,
                topic,
                publisher,
            )
        if self.callback is None:  # one C call: a reader sees the batch whole
            self._queue.extend(zip(itertools.repeat(topic), events))
            return
        for obj in events:
            try:
                self.callback(topic, obj)
            except Exception:
                log.exception("the callback of subscription %r raised", self.prefix)

    def get(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next ``(topic, obj)``; TimeoutError if none comes in time."""
        queue = self._queue
        if not queue:
            deadline = None if timeout is None else time.monotonic() + timeout
            self._wait(lambda: bool(queue) or self.closed, deadline)
        if queue:
            return queue.popleft()
        if self.closed:
            raise StopIteration
        raise TimeoutError(f"no event for {self.prefix!r} within {timeout} s")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        """``async for topic, obj in sub``: the next event, the loop free meanwhile
        (a worker thread waits in short turns, so a cancelled wait ends soon)."""
        while True:
            event = await asyncio.to_thread(self._get_or_none, ASYNC_TURN)
            if event is not None:
                return event
            if self.closed and not self._queue:
                raise StopAsyncIteration

    def _get_or_none(self, timeout: float) -> tuple[str, Any] | None:
        """``get``, with None for a timeout or the end (an executor's future cannot
        carry StopIteration)."""
        try:
            return self.get(timeout)
        except (TimeoutError, StopIteration):
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bus:
    """One process's end of the bus: its publisher, its subscriptions, and the sync
    handshake that proves their paths through the proxy (the same in every process).

    Used by whoever owns the process's sockets (the driver's I/O token, a worker's
    loop); ``on_socket(sock, added)`` registers a SUB with that owner's poll.
    """

    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        name: str,
        on_socket: Callable[[Socket, bool], None],
    ) -> None:
        self.ctx = ctx
        self.addresses = addresses
        self.name = name
        self._on_socket = on_socket
        self._publisher: Publisher | None = None
        self.subs: dict[Socket, Subscription] = {}
        self._on_synced: dict[Subscription, Callable[[], None]] = {}
        self._hello: Subscription | None = None  # proves the PUB's path, if nothing else does
        self._synced_at = 0.0

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(self.ctx, self.addresses.bus_in, self.name)
        return self._publisher

    def add(self, sub: Subscription, on_synced: Callable[[], None] | None = None) -> None:
        self.subs[sub.sock] = sub
        if on_synced is not None:
            self._on_synced[sub] = on_synced
        self._on_socket(sub.sock, True)

    def remove(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sock, None) is not None:
            self._on_synced.pop(sub, None)
            self._on_socket(sub.sock, False)
            sub.sock.close()

    def busy(self) -> bool:
        """Events held, or subscriptions not yet synced."""
        if self._publisher is None and not self.subs:
            return False  # the bus is not used here: the common case, checked per pump
        publisher = self._publisher
        held = publisher is not None and bool(publisher.held or publisher.pending)
        return held or not all(sub.synced for sub in self.subs.values())

    def handshake(self, now: float) -> bool:
        """Publish sync messages until they come back; then the held events go out.
        True once nothing waits for a sync and every event is handed to the PUB."""
        publisher = self.publisher
        for sub in [s for s in self._on_synced if s.synced]:
            self._on_synced.pop(sub)()
        if not publisher.ready:
            if any(sub.synced for sub in self.subs.values()):
                publisher.ready = True  # our PUB's events reach the proxy
            elif not self.subs:  # only publishes: prove the path
                self._hello = Subscription(
                    self.ctx, self.addresses, SYNC, None, _no_wait, self.remove
                )
                self.add(self._hello)
        if publisher.ready and self._hello is not None:
            self._hello.close()
            self._hello = None
        unsynced = [sub for sub in self.subs.values() if not sub.synced]
        if unsynced and now - self._synced_at > 0.01:
            self._synced_at = now
            for sub in unsynced:
                publisher.sync(sub.sync_topic)
        return not unsynced and publisher.flush()

    def close(self) -> None:
        for sub in list(self.subs.values()):
            sub.sock.close()
        self.subs.clear()
        if self._publisher is not None:
            self._publisher.close()


def _no_wait(done: Callable[[], bool], deadline: float | None) -> None:
    raise RuntimeError("the bus's own handshake subscription is not read")
