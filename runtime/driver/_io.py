"""The driver's transport: whichever thread waits does the I/O.

Sockets are not thread-safe, so one thread at a time owns them (the I/O
token). A thread blocked in ``future.result()`` takes the token and polls the
sockets itself until its reply arrives: no thread hand-off sits on the
round trip. When nobody waits but calls are outstanding (pipelined asks,
callbacks, asyncio), the background thread holds the token and pumps; it
yields the token as soon as some thread wants to wait. Threads that only send
append to an outbox and, if another thread owns the sockets, wake it through a
pipe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from actors._future import ActorFuture
from runtime import _sockets
from runtime._bus import SYNC, Publisher, Subscription, bus_endpoints
from runtime._transport import Transport, TransportOptions, _Outbox

__all__ = ["DriverTransport"]

log = logging.getLogger("dovecote")

_RECV_BUDGET = 256  # messages read from one socket before the others get a turn
_EVENT_BUDGET = 4096  # events read from one subscription before the others get a turn
POLLIN = int(zmq.POLLIN)
TICK = 0.005  # how late, at most, the background thread takes up work nobody waits for
IDLE_AFTER = 0.2  # seconds without work before it sleeps until the next call wakes it
CANCEL_TIMEOUT = 5.0  # seconds cancel() waits for a worker's verdict before saying False


def _never() -> bool:
    return False


class DriverTransport(Transport):
    def __init__(
        self,
        ctx: zmq.Context,
        system_id: str,
        run_dir: str,
        options: TransportOptions,
        supervisor_sentinel: int,
        on_supervisor_exit: Callable[[], str],
    ) -> None:
        super().__init__(ctx, system_id, run_dir, options)
        self._lock = threading.Lock()
        self._token_cond = threading.Condition(self._lock)  # threads waiting for the token
        self._bg_cond = threading.Condition(self._lock)  # the background thread
        self._bg_asleep = False
        self._bg_idle_since = time.monotonic()
        self._owner: int | None = None
        self._waiters = 0
        self._stopping = False
        self._armed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sentinel = supervisor_sentinel
        self._on_supervisor_exit = on_supervisor_exit
        identity = f"d{os.getpid()}-{system_id}".encode()
        self.control = _sockets.dealer(
            ctx, _sockets.control_endpoint(run_dir), identity, hwm=10_000
        )
        self._control_handlers: dict[str, Callable[..., None]] = {
            "reply": self._on_control_reply,
            "worker_died": self.fail_slot,
            "down": self.on_down,
        }
        self._identity = identity
        self.publisher = Publisher(ctx, bus_endpoints(run_dir)[0], identity.decode())
        self._hello: Subscription | None = None  # proves the PUB's path, if nothing else does
        self._hello_at = 0.0
        self._events: list[tuple[str, Any]] = []  # published, not yet handed to the PUB
        self._subs: dict[Any, Subscription] = {}  # SUB socket -> subscription
        self._sub_changes: list[tuple[bool, Subscription]] = []  # (add?, sub) for the owner
        # zmq_poll on a prebuilt list: zmq.Poller's wrapper costs microseconds a call.
        self._polled: list[tuple[Any, int]] = [
            (self.control, POLLIN),
            (self._wake_r, POLLIN),
            (self._sentinel, POLLIN),
        ]
        self._thread = threading.Thread(target=self._background, name="dovecote-io", daemon=True)
        self._thread.start()

    # -- token -----------------------------------------------------------------
    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        if timeout is not None and timeout < 0:  # a callback waits: the background delivers
            with self._lock:
                self._bg_idle_since = time.monotonic()
                self._bg_cond.notify()
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drive(future.settled, deadline)

    def wait_any(self, futures: list[ActorFuture[Any]], timeout: float | None) -> None:
        """Drive the sockets from this thread until one of ``futures`` completes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drive(lambda: any(f.settled() for f in futures), deadline)

    def _cancel_sent(self, future: ActorFuture[Any], slot: int) -> bool:
        """Ask the worker, and wait for its verdict (its keeper thread answers soon
        even while an actor's code runs). Without one in time (a worker whose inbox
        is paused by backpressure, or stuck), the call may still run: it is marked
        running and cancel() says False; should the worker drop it after all, the
        future ends cancelled rather than pending for ever."""
        self._send_cancel(slot, future.call_id)
        self._drive(future.decided, time.monotonic() + CANCEL_TIMEOUT)
        if not future.decided():
            future.mark_running()
        return future.cancelled()

    def _wait_for_room(self, outbox: _Outbox) -> None:
        limit = self.options.outbox_limit
        deadline = time.monotonic() + self.options.send_timeout

        def room() -> bool:
            return len(outbox.entries) < limit or self.closed is not None

        self._drive(room, deadline)
        if not room():
            raise self._full_error()

    def _drive(self, done: Callable[[], bool], deadline: float | None) -> None:
        """Pump the sockets from this thread until ``done()`` or the deadline."""
        if self._owner == threading.get_ident():  # a callback run while pumping
            self._pump(done, deadline)
            return
        with self._lock:
            if not self._acquire(done, deadline):
                return
        try:
            self._pump(done, deadline)
        finally:
            self._release()

    def _acquire(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Take the token (``_lock`` held); False if done or timed out first."""
        self._waiters += 1
        try:
            while self._owner is not None and not done():
                self._wake_owner()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._token_cond.wait(remaining)
            if done():
                return False
            self._owner = threading.get_ident()
            return True
        finally:
            self._waiters -= 1

    def _release(self) -> None:
        with self._lock:
            self._owner = None
            if self._waiters:
                self._token_cond.notify_all()

    def _kick(self) -> None:
        if self._owner is None:
            if self._bg_asleep:
                self._bg_cond.notify()
        elif self._owner != threading.get_ident():
            self._wake_owner()

    def _wake_owner(self) -> None:
        if not self._armed:
            self._armed = True
            with contextlib.suppress(BlockingIOError):  # full of wake-ups already
                os.write(self._wake_w, b"\0")

    def _has_work(self) -> bool:
        return bool(
            self._pending
            or self._control_pending
            or self._has_outgoing()
            or self._events
            or self._sub_changes
            or self.publisher.held
        )

    def _listening(self) -> bool:
        """Notices or events may come that a callback waits for."""
        return bool(self._watches) or any(s.callback for s in self._subs.values())

    # -- the event bus ------------------------------------------------------------------
    def publish(self, topic: str, obj: Any) -> None:
        with self._lock:
            self._check_open()
            self._events.append((topic, obj))
            self._kick()

    def subscribe(
        self, prefix: str, callback: Callable[[str, Any], None] | None, timeout: float
    ) -> Subscription:
        sub = Subscription(self.ctx, self.run_dir, prefix, callback, self._drive, self._unsubscribe)
        with self._lock:
            self._sub_changes.append((True, sub))
            self._kick()
        self._drive(lambda: sub.synced, time.monotonic() + timeout)
        if not sub.synced:
            sub.close()
            raise TimeoutError(f"subscribe({prefix!r}) was not confirmed within {timeout} s")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._sub_changes.append((False, sub))
            self._kick()

    def _flush_bus(self) -> bool:
        """Hand events to the PUB, (un)register SUBs; False while a handshake runs."""
        with self._lock:
            events, self._events = self._events, []
            changes, self._sub_changes = self._sub_changes, []
        for added, sub in changes:
            if added:
                self._subs[sub.sock] = sub
                self._polled.append((sub.sock, POLLIN))
            elif self._subs.pop(sub.sock, None) is not None:
                self._polled.remove((sub.sock, POLLIN))
                sub.sock.close()
        for topic, obj in events:
            self.publisher.publish(topic, obj)
        return self._handshake() and self.publisher.flush()

    def _handshake(self) -> bool:
        """Publish sync messages until they come back; True once nothing waits for one."""
        publisher = self.publisher
        if not publisher.ready:
            if any(sub.synced for sub in self._subs.values()):
                publisher.ready = True  # our PUB's events reach the proxy
            elif not self._subs and self._hello is None:
                self._hello = Subscription(
                    self.ctx, self.run_dir, SYNC, None, self._drive, self._unsubscribe
                )
                self._subs[self._hello.sock] = self._hello
                self._polled.append((self._hello.sock, POLLIN))
        if publisher.ready and self._hello is not None:
            self._hello.close()
            self._hello = None
        unsynced = [sub for sub in self._subs.values() if not sub.synced]
        now = time.monotonic()
        if unsynced and now - self._hello_at > 0.01:
            self._hello_at = now
            for sub in unsynced:
                publisher.sync(sub.sync_topic)
        return publisher.ready and not unsynced

    def _background(self) -> None:
        """Deliver what nobody waits for: pipelined calls, tells, callbacks, and
        watch notices.

        It looks every TICK while the system is in use rather than being woken by
        each call, so a thread that sends and then waits pays for no hand-off.
        """
        while self._take_token_for_background():
            try:
                if self._has_work():
                    self._pump(self._should_yield, None)
                else:  # only watches: one look at the sockets for notices
                    self._pump(_never, time.monotonic())
            except Exception:
                log.exception("dovecote I/O thread error")
            finally:
                self._release()

    def _take_token_for_background(self) -> bool:
        with self._lock:
            waited = False
            while not self._stopping:
                if (
                    self._owner is None
                    and not self._waiters
                    and (self._has_work() or (waited and self._listening()))
                ):
                    self._owner = threading.get_ident()
                    self._bg_idle_since = time.monotonic()
                    return True
                recently = time.monotonic() - self._bg_idle_since < IDLE_AFTER
                if recently or self._has_work() or self._listening():
                    self._bg_cond.wait(TICK)
                    waited = True
                else:
                    self._bg_asleep = True
                    self._bg_cond.wait()
                    self._bg_asleep = False
                    self._bg_idle_since = time.monotonic()
            return False

    def _flush_all(self) -> bool:
        flushed = super()._flush_all()
        if (
            self._events
            or self._sub_changes
            or self.publisher.held
            or not all(sub.synced for sub in self._subs.values())
        ):
            flushed = self._flush_bus() and flushed
        return flushed

    def _should_yield(self) -> bool:
        return self._waiters > 0 or self._stopping or not self._has_work()

    # -- I/O, only by the token's owner -------------------------------------------
    def _pump(self, done: Callable[[], bool], deadline: float | None) -> None:
        # Notices first: a worker's death changes where and how calls are sent.
        # (Later rounds handle them in the poll below, before the next flush.)
        if _sockets.readable(self.control):
            self._drain(self.control, self._on_control)
        while True:
            flushed = self._flush_all()
            if done():
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not flushed:  # a peer is full: try again shortly
                timeout = 1.0 if timeout is None else min(timeout, 1.0)
            for sock, _ in zmq.zmq_poll(
                self._polled, -1 if timeout is None else math.ceil(timeout)
            ):
                self._handle(sock)
            if self._waiters:  # their replies may have come in: let them look
                with self._lock:
                    self._token_cond.notify_all()
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
            self.fail_all(self._on_supervisor_exit(), crashed=True)
        elif sock is self.control:
            self._drain(sock, self._on_control)
        elif sock in self._subs:
            deliver = self._subs[sock].deliver
            with contextlib.suppress(zmq.Again):  # a burst: one Again, not a poll per event
                for _ in range(_EVENT_BUDGET):
                    deliver(sock.recv(_sockets.DONTWAIT))
        else:
            self._drain(sock, self._on_data)

    def _drain(self, sock: zmq.Socket, handler: Callable[[list[Any]], None]) -> None:
        """Handle what ``sock`` holds; zmq_poll said it is readable."""
        handler(_sockets.recv(sock, _sockets.DONTWAIT))
        for _ in range(_RECV_BUDGET):
            if not _sockets.readable(sock):
                return
            handler(_sockets.recv(sock, _sockets.DONTWAIT))

    def _on_control(self, frames: list[Any]) -> None:
        self.dispatch_control(frames, self._control_handlers)

    def _on_new_dealer(self, slot: int, sock: zmq.Socket) -> None:
        self._polled.append((sock, POLLIN))

    def _on_dealer_closed(self, sock: zmq.Socket) -> None:
        self._polled.remove((sock, POLLIN))

    def _control_socket(self) -> zmq.Socket:
        return self.control

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background thread and close every socket. Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._bg_cond.notify()
            self._wake_owner()
        self._thread.join()
        with self._lock:  # wait out a thread that still pumps
            while self._owner is not None:
                self._wake_owner()
                self._token_cond.wait(0.1)
            self._owner = threading.get_ident()
        self.close_sockets()
        self.control.close(linger=0)
        self.publisher.close()
        for sock in self._subs:
            sock.close()
        for _, sub in self._sub_changes:
            sub.sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._sentinel)
