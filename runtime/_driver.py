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

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from actors._future import ActorFuture
from runtime import _protocol as proto
from runtime import _sockets
from runtime._transport import Transport, TransportOptions, _Outbox

__all__ = ["DriverTransport"]

log = logging.getLogger("dovecote")

_RECV_BUDGET = 256  # messages read from one socket before the others get a turn


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
        self._cond = threading.Condition()
        self._lock = self._cond
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
        self.notices: dict[str, Callable[..., None]] = {}
        self._poller = zmq.Poller()
        self._poller.register(self.control, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._poller.register(self._sentinel, zmq.POLLIN)
        self._thread = threading.Thread(target=self._background, name="dovecote-io", daemon=True)
        self._thread.start()

    # -- token -----------------------------------------------------------------
    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drive(future.done, deadline)

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
        with self._cond:
            if not self._acquire(done, deadline):
                return
        try:
            self._pump(done, deadline)
        finally:
            with self._cond:
                self._owner = None
                self._cond.notify_all()

    def _acquire(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Take the token (``_cond`` held); False if done or timed out first."""
        self._waiters += 1
        try:
            while self._owner is not None and not done():
                self._wake_owner()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if done():
                return False
            self._owner = threading.get_ident()
            return True
        finally:
            self._waiters -= 1

    def _kick(self) -> None:
        if self._owner is None:
            self._cond.notify_all()
        elif self._owner != threading.get_ident():
            self._wake_owner()

    def _wake_owner(self) -> None:
        if not self._armed:
            self._armed = True
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def _has_work(self) -> bool:
        return bool(self._pending or self._control_pending or self._has_outgoing())

    def _background(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    self._owner is not None or self._waiters or not self._has_work()
                ):
                    self._cond.wait()
                if self._stopping:
                    return
                self._owner = threading.get_ident()
            try:
                self._pump(self._should_yield, None)
            except Exception:
                log.exception("dovecote I/O thread error")
            finally:
                with self._cond:
                    self._owner = None
                    self._cond.notify_all()

    def _should_yield(self) -> bool:
        return self._waiters > 0 or self._stopping or not self._has_work()

    # -- I/O, only by the token's owner -------------------------------------------
    def _pump(self, done: Callable[[], bool], deadline: float | None) -> None:
        while True:
            flushed = self._flush_all()
            if flushed and self._waiters:
                with self._cond:
                    self._cond.notify_all()  # senders blocked for room may go on
            if done():
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not flushed:  # a peer is full: try again shortly
                timeout = 1.0 if timeout is None else min(timeout, 1.0)
            for sock, _ in self._poller.poll(timeout):
                self._handle(sock)
            if done() or (deadline is not None and time.monotonic() >= deadline):
                return

    def _handle(self, sock: Any) -> None:
        if sock == self._wake_r:
            with self._cond:
                self._armed = False
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        elif sock == self._sentinel:
            self._poller.unregister(self._sentinel)
            self.fail_all(self._on_supervisor_exit(), crashed=True)
        elif sock is self.control:
            self._drain(sock, self._on_control)
        else:
            self._drain(sock, self._on_data)

    def _drain(self, sock: zmq.Socket, handler: Callable[[list[Any]], None]) -> None:
        for _ in range(_RECV_BUDGET):
            try:
                frames = _sockets.recv(sock, zmq.DONTWAIT)
            except zmq.Again:
                return
            handler(frames)

    def _on_control(self, frames: list[Any]) -> None:
        try:
            kind, body, _ = proto.unpack(frames)
            op, *fields = proto.decode_body(body)
        except (proto.ProtocolError, ValueError, TypeError) as exc:
            log.warning("dropped a malformed control message: %s", exc)
            return
        if op == "reply":
            self._on_control_reply(*fields)
        elif op == "worker_died":
            self.fail_slot(fields[0], fields[1])
        elif op in self.notices:
            self.notices[op](*fields)

    def _on_new_dealer(self, slot: int, sock: zmq.Socket) -> None:
        self._poller.register(sock, zmq.POLLIN)

    def _control_socket(self) -> zmq.Socket:
        return self.control

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background thread and close every socket. Idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            self._wake_owner()
        self._thread.join()
        with self._cond:  # wait out a thread that still pumps
            while self._owner is not None:
                self._wake_owner()
                self._cond.wait(0.1)
            self._owner = threading.get_ident()
        self.close_sockets()
        self.control.close(linger=0)
        os.close(self._wake_r)
        os.close(self._wake_w)
