"""The event bus: topics matched by prefix, through an XSUB/XPUB proxy in the supervisor.

::

    publisher PUB ──▶ XSUB ┐  supervisor  ┌ XPUB ──▶ SUB subscriber
    publisher PUB ──▶      └──── proxy ───┘      ──▶ SUB subscriber

A message is ``[topic, seq + publisher + NUL + pickle]``: each publisher numbers
the events of each topic, so a subscriber can see a gap on any topic it gets.

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
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from runtime import wire
from runtime.net._security import secure_socket
from runtime.net._sockets import Context, Socket

__all__ = [
    "INPROC",
    "RESERVED",
    "SYNC",
    "Bus",
    "Publisher",
    "Subscription",
    "check_topic",
    "decode",
    "encode",
    "lifecycle_publisher",
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


def check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic is a non-empty string, not {topic!r}")
    if topic.startswith((RESERVED, SYNC[0])) or "\0" in topic:
        raise ValueError(
            f"topic {topic!r}: the prefix {RESERVED!r} is the runtime's own, and a topic has no NUL"
        )
    return topic


_SEQ = struct.Struct("<Q")


def encode(topic: str, publisher: bytes, seq: int, obj: Any) -> bytes:
    """One frame, topic first (the SUB filters on its prefix): topic NUL seq
    publisher NUL pickle."""
    body = wire.dumps(obj, out_of_band=False)[0]
    return b"".join((topic.encode(), b"\0", _SEQ.pack(seq), publisher, b"\0", body))


def decode(frame: bytes) -> tuple[str, bytes, int, Any]:
    try:
        end_topic = frame.index(b"\0")
        start = end_topic + 1 + _SEQ.size
        end_publisher = frame.index(b"\0", start)
    except ValueError:
        raise wire.ProtocolError("an event frame without its fields") from None
    (seq,) = _SEQ.unpack_from(frame, end_topic + 1)
    obj = wire.loads(memoryview(frame)[end_publisher + 1 :])
    return frame[:end_topic].decode(), frame[start:end_publisher], seq, obj


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
        self.held: list[bytes] = []  # events not sent yet

    def sync(self, topic: str) -> None:
        """A handshake message: sent now, or not at all (it is repeated)."""
        with contextlib.suppress(zmq.Again):
            self.sock.send(encode(topic, self.name, 0, None), zmq.DONTWAIT)

    def publish(self, topic: str, obj: Any) -> None:
        seq = self.seqs[topic] = self.seqs.get(topic, 0) + 1
        self.held.append(encode(topic, self.name, seq, obj))
        self.flush()

    def flush(self) -> bool:
        """Send what is held; False while not ready or the proxy takes no more."""
        if not self.ready:
            return False
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
        self._last: dict[tuple[str, bytes], int] = {}  # (topic, publisher) -> last seq
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, BUS_HWM)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, self.sync_topic)
        secure_socket(self.sock, addresses.bus_out, server=False)
        self.sock.connect(addresses.bus_out)

    def deliver(self, frame: bytes) -> None:
        """From the engine's I/O: one message from the proxy."""
        try:
            topic, publisher, seq, obj = decode(frame)
        except Exception as exc:
            log.warning("subscription %r dropped a malformed event: %r", self.prefix, exc)
            return
        if topic == self.sync_topic:
            self.synced = True
            return
        if topic.startswith(SYNC):
            return  # another subscriber's handshake on a shared prefix
        key = (topic, publisher)
        last = self._last.get(key)
        if last is not None and seq > last + 1:
            self.missed += seq - last - 1
            log.warning(
                "subscription %r missed %d events on %r from %r: it is too slow",
                self.prefix,
                seq - last - 1,
                topic,
                publisher,
            )
        self._last[key] = seq
        if self.callback is not None:
            try:
                self.callback(topic, obj)
            except Exception:
                log.exception("the callback of subscription %r raised", self.prefix)
        else:
            self._queue.append((topic, obj))  # deque: appends and pops are atomic

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
        held = self._publisher is not None and bool(self._publisher.held)
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
