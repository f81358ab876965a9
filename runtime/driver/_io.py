"""The driver's I/O: whichever thread waits does it.

Sockets are not thread-safe, so one thread at a time owns them (the I/O
token). A thread blocked in ``future.result()`` takes the token and polls the
sockets itself until its reply arrives: no thread hand-off sits on the
round trip. When nobody waits but calls are outstanding (pipelined asks,
callbacks, asyncio), the background thread holds the token and pumps; it
yields the token as soon as some thread wants to wait. A call made while
nothing else is pending or queued is sent by its own thread, the free token
taken for that moment (``_take_idle``). Other calls and tells go to an outbox and,
if another thread owns the sockets, wake it through a pipe.

The sending itself is the shared ``client.Transport``, handed this module's
``wake``, ``drive`` and ``waiter``; the event bus's end is ``net.Bus``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from actors._future import ActorFuture
from runtime import net, wire
from runtime.client import Transport
from runtime.net import Bus, Context, Socket, Subscription

__all__ = ["DriverIO"]

log = logging.getLogger("dovecote")

_RECV_BUDGET = 256  # messages read from one socket before the others get a turn
_EVENT_BUDGET = 4096  # events read from one subscription before the others get a turn
POLLIN = net.POLLIN
TICK = 0.005  # how late, at most, the background thread takes up work nobody waits for
LONE_SLICE = 10  # ms between a lone call's looks at the control socket (see _lone)
IDLE_AFTER = 0.2  # seconds without work before it sleeps until the next call wakes it


def _never() -> bool:
    return False


class _Token:
    """Who owns the sockets now, and the conditions threads wait on for them."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.waiting = threading.Condition(lock)  # threads waiting for the token
        self.background = threading.Condition(lock)  # the background thread
        self.owner: int | None = None
        self.waiters = 0
        self.bg_asleep = False
        self.bg_idle_since = time.monotonic()

    def release(self, background: bool = False) -> None:
        """Give the token back; ``background``: wake the background thread if it
        sleeps and no thread waits for the token, as ``DriverIO._kick`` would: after
        a direct send, the reply may be for a thread that never calls ``result()``
        (``concurrent.futures.wait``, a callback), or the call may be left queued."""
        with self.lock:
            self.owner = None
            if self.waiters:
                self.waiting.notify_all()
            elif background and self.bg_asleep:
                self.background.notify()


class DriverIO:
    """The driver's sockets, the token that guards them, and the background thread."""

    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        identity: bytes,
        limits: tuple[int, float],
        supervisor: tuple[int, Callable[[], str]],
    ) -> None:
        self.ctx = ctx
        self.addresses = addresses
        self._token = _Token(threading.Lock())
        self._lock = self._token.lock
        self._stopping = False
        self._armed = False
        self._wake_r, self._wake_w = _wake_pipe()
        self._sentinel, self._on_supervisor_exit = supervisor
        release = self._token.release
        self.transport = Transport(
            ctx,
            addresses,
            identity,
            limits,
            (self._kick, self.drive, self._waiter),
            self._on_socket,
            self._lock,
            direct=(functools.partial(_take_idle, self), functools.partial(release, True)),
        )
        self.bus = Bus(
            ctx, addresses, identity.decode(), functools.partial(self._on_socket, bus=True)
        )
        self._events: list[tuple[str, Any]] = []  # published, not yet handed to the PUB
        self._sub_changes: list[tuple[bool, Subscription]] = []  # (add?, sub) for the owner
        # zmq_poll on prebuilt lists (zmq.Poller's wrapper costs microseconds a call):
        # every socket; and the pipes and SUBs, polled beside a DEALER by the direct path.
        fixed: list[tuple[Any, int]] = [(self._wake_r, POLLIN), (self._sentinel, POLLIN)]
        self._polled = [(self.transport.control.sock, POLLIN), *fixed]
        self._others = fixed
        self._thread = threading.Thread(target=self._background, name="dovecote-io", daemon=True)
        self._thread.start()

    # -- waiting ---------------------------------------------------------------
    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        if timeout is not None and timeout < 0:  # a callback waits: the background delivers
            with self._lock:
                self._token.bg_idle_since = time.monotonic()
                self._token.background.notify()
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        slot = _take_lone(self, future)
        if slot is None:
            self.drive(future.settled, deadline)
            return
        try:
            if not _lone(self.transport, self._others, future, slot, deadline):
                self._pump(future.settled, deadline)
        finally:
            self._token.release()

    def wait_any(self, futures: list[ActorFuture[Any]], timeout: float | None) -> None:
        """Drive the sockets from this thread until one of ``futures`` completes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.drive(lambda: any(f.settled() for f in futures), deadline)

    def drive(self, done: Callable[[], bool], deadline: float | None) -> None:
        """Pump the sockets from this thread until ``done()`` or the deadline."""
        if self._token.owner == threading.get_ident():  # a callback run while pumping
            self._pump(done, deadline)
            return
        with self._lock:
            if not self._acquire(done, deadline):
                return
        try:
            self._pump(done, deadline)
        finally:
            self._token.release()

    def _acquire(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Take the token (lock held); False if done or timed out first."""
        token = self._token
        token.waiters += 1
        try:
            while token.owner is not None and not done():
                self._wake_owner()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                token.waiting.wait(remaining)
            if done():
                return False
            token.owner = threading.get_ident()
            return True
        finally:
            token.waiters -= 1

    def _kick(self) -> None:
        """Make sure the sockets' owner flushes soon. Called with the lock held."""
        token = self._token
        if token.owner is None:
            if token.bg_asleep:
                token.background.notify()
        elif token.owner != threading.get_ident():
            self._wake_owner()

    def _wake_owner(self) -> None:
        if not self._armed:
            self._armed = True
            with contextlib.suppress(BlockingIOError):  # full of wake-ups already
                os.write(self._wake_w, b"\0")

    def _has_work(self) -> bool:
        transport = self.transport
        return bool(
            transport.has_pending()
            or transport.has_outgoing()
            or self._events
            or self._sub_changes
            or self.bus.busy()
        )

    def _listening(self) -> bool:
        """Notices or events may come that a callback waits for."""
        return self.transport.control.watching() or any(s.callback for s in self.bus.subs.values())

    # -- the event bus ------------------------------------------------------------------
    def publish(self, topic: str, obj: Any) -> None:
        obj = net.portable(topic, obj)  # an event that cannot be pickled raises here
        with self._lock:
            self.transport._check_open()
            self._events.append((topic, obj))
            self._kick()

    def subscribe(
        self, prefix: str, callback: Callable[[str, Any], None] | None, timeout: float
    ) -> Subscription:
        sub = Subscription(
            self.ctx, self.addresses, prefix, callback, self.drive, self._unsubscribe
        )
        self._change_subs(True, sub)
        self.drive(lambda: sub.synced, time.monotonic() + timeout)
        if not sub.synced:
            sub.close()
            raise TimeoutError(f"subscribe({prefix!r}) was not confirmed within {timeout} s")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._change_subs(False, sub)

    def _change_subs(self, added: bool, sub: Subscription) -> None:
        with self._lock:
            self._sub_changes.append((added, sub))
            self._kick()

    def _flush_bus(self) -> bool:
        """Hand events to the PUB, (un)register SUBs; False while a handshake runs."""
        with self._lock:
            events, self._events = self._events, []
            changes, self._sub_changes = self._sub_changes, []
        for added, sub in changes:
            self.bus.add(sub) if added else self.bus.remove(sub)
        for topic, obj in events:
            self.bus.publisher.publish(topic, obj)
        return self.bus.handshake(time.monotonic())

    def _on_socket(self, sock: Socket, added: bool, bus: bool = False) -> None:
        """A DEALER or (``bus``) a SUB: the direct path polls SUBs too, so that a
        thread that keeps calling does not hold their events back (see ``_lone``)."""
        for polled in (self._polled, self._others)[: 1 + bus]:
            (polled.append if added else polled.remove)((sock, POLLIN))

    # -- the background thread -------------------------------------------------------
    def _background(self) -> None:
        """Deliver what nobody waits for: pipelined calls, tells, callbacks, and
        watch notices. It looks every TICK while the system is in use rather than
        being woken by each call, so a thread that sends and then waits pays for
        no hand-off."""
        while self._take_token_for_background():
            try:
                if self._has_work():
                    self._pump(self._should_yield, None)
                else:  # only watches: one look at the sockets for notices
                    self._pump(_never, time.monotonic())
            except Exception:
                log.exception("dovecote I/O thread error")
            finally:
                self._token.release()

    def _take_token_for_background(self) -> bool:
        token = self._token
        with self._lock:
            waited = False
            while not self._stopping:
                free = token.owner is None and not token.waiters
                if free and (self._has_work() or (waited and self._listening())):
                    token.owner = threading.get_ident()
                    token.bg_idle_since = time.monotonic()
                    return True
                recently = time.monotonic() - token.bg_idle_since < IDLE_AFTER
                if recently or self._has_work() or self._listening():
                    token.background.wait(TICK)
                    waited = True
                else:
                    token.bg_asleep = True
                    token.background.wait()
                    token.bg_asleep = False
                    token.bg_idle_since = time.monotonic()
            return False

    def _should_yield(self) -> bool:
        return self._token.waiters > 0 or self._stopping or not self._has_work()

    # -- I/O, only by the token's owner -------------------------------------------
    def _flush(self) -> bool:
        flushed = self.transport.flush()
        if self._events or self._sub_changes or self.bus.busy():
            flushed = self._flush_bus() and flushed
        return flushed

    def _pump(self, done: Callable[[], bool], deadline: float | None) -> None:
        # Notices first: a worker's death changes where and how calls are sent.
        # (Later rounds handle them in the poll below, before the next flush.)
        control = self.transport.control
        if net.readable(control.sock):
            self._drain(control.sock, control.on_message)
        while True:
            flushed = self._flush()
            if done():
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not flushed:  # a peer is full: try again shortly
                timeout = 1.0 if timeout is None else min(timeout, 1.0)
            polled = zmq.zmq_poll(self._polled, -1 if timeout is None else math.ceil(timeout))
            for sock, _ in polled:
                self._handle(sock)
            if self._token.waiters:  # their replies may have come in: let them look
                with self._lock:
                    self._token.waiting.notify_all()
            if done() or (deadline is not None and time.monotonic() >= deadline):
                return

    def _handle(self, sock: Any) -> None:
        if getattr(sock, "closed", False):
            return  # a DEALER reset by a crash notice handled in this same round
        if sock == self._wake_r:
            with self._lock:  # writers hold it too: no wake-up is eaten unseen
                self._armed = False
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
        elif sock == self._sentinel:
            self._polled.remove((self._sentinel, POLLIN))
            self._others.remove((self._sentinel, POLLIN))
            self.transport.fail_all(self._on_supervisor_exit(), crashed=True)
        elif sock is self.transport.control.sock:
            self._drain(sock, self.transport.control.on_message)
        elif sock in self.bus.subs:
            deliver = self.bus.subs[sock].deliver
            with contextlib.suppress(zmq.Again):  # a burst: one Again, not a poll per event
                for _ in range(_EVENT_BUDGET):
                    deliver(sock.recv(net.DONTWAIT))
        else:
            self._drain(sock, self.transport.on_data)

    def _drain(self, sock: Socket, handler: Callable[[list[Any]], None]) -> None:
        """Handle what ``sock`` holds; zmq_poll said it is readable."""
        handler(net.recv_batch(sock, net.DONTWAIT))
        for _ in range(_RECV_BUDGET):
            if not net.readable(sock):
                return
            handler(net.recv_batch(sock, net.DONTWAIT))

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background thread and close every socket. Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._token.background.notify()
            self._wake_owner()
        self._thread.join()
        with self._lock:  # wait out a thread that still pumps
            while self._token.owner is not None:
                self._wake_owner()
                self._token.waiting.wait(0.1)
            self._token.owner = threading.get_ident()
        self.transport.close_sockets()
        self.bus.close()
        for _, sub in self._sub_changes:
            sub.sock.close()
        for fd in (self._wake_r, self._wake_w, self._sentinel):
            os.close(fd)


def _take_idle(io: DriverIO) -> bool:
    """The transport's ``direct`` hook: take the token for a call that its own
    thread sends at once, if the token is free and nothing else is to do: no
    reply awaited, nothing queued (the order holds), no events or subscriptions
    to hand over. One function where three were: this runs before each such send."""
    token, transport = io._token, io.transport
    with token.lock:
        if (
            token.owner is not None
            or token.waiters
            or transport.calls.pending
            or transport.control.closed
            or io._events
            or io._sub_changes
            or transport.has_outgoing()
            or io.bus.busy()
        ):
            return False
        token.owner = threading.get_ident()
        return True


def _take_lone(io: DriverIO, future: ActorFuture[Any]) -> int | None:
    """Take the token if it is free and ``future``'s call is all there is to send
    or await: the slot it goes to (see ``_lone``), else None."""
    token, transport = io._token, io.transport
    with token.lock:
        if (
            token.owner is not None
            or token.waiters
            or io._events
            or io._sub_changes
            or transport.control.has_outgoing()
            or io.bus.busy()
        ):
            return None
        slot = transport.calls.lone(future.call_id)
        if slot is not None:
            token.owner = threading.get_ident()
        return slot


def _lone(
    transport: Transport,
    others: list[tuple[Any, int]],
    future: ActorFuture[Any],
    slot: int,
    deadline: float | None,
) -> bool:
    """The direct path of a thread that holds the token for its lone call: send it,
    then poll only its DEALER and ``others`` (the wake pipe, the supervisor's
    sentinel, the subscriptions) and read only the reply. False as soon as anything
    else needs doing (a notice, another thread's call, an event, a full peer): the
    general pump then takes over, the token still held.

    The control socket is looked at every LONE_SLICE ms rather than polled: each
    ZeroMQ socket in a zmq_poll costs a getpid and two polls, and the notices it
    brings (a worker's death) may wait that long. A notice that came before the
    send is seen at the next look, as if it had come just after: the call is then
    failed or re-sent like any other sent to that worker."""
    sock = transport.flush_slot(slot)
    if sock is None:
        return False
    polled = [(sock, POLLIN), *others]
    while True:
        timeout = LONE_SLICE
        if deadline is not None:
            timeout = min(timeout, math.ceil(max(0.0, deadline - time.monotonic()) * 1e3))
        ready = zmq.zmq_poll(polled, timeout)
        if not ready:
            if net.readable(transport.control.sock):
                return False  # notices first, in the pump
            if deadline is not None and time.monotonic() >= deadline:
                return True  # result() raises TimeoutError
            continue
        if len(ready) > 1 or ready[0][0] is not sock:
            return False
        transport.on_data(net.recv_batch(sock, net.DONTWAIT))
        if future.settled():  # a callback may have made a call: the pump sends it
            return not transport.has_outgoing()


def _wake_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end
