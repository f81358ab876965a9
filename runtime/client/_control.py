"""The control channel of a process: its DEALER to the supervisor, requests that
a reply completes, notices that expect none, and the watches whose notices
come back on it. Messages are typed records (``wire``), dispatched by type."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

import zmq

from actors._errors import ActorStoppedError
from actors._future import ActorFuture, Waiter
from actors._ref import ActorRef
from runtime import net, wire
from runtime.net import Context

__all__ = ["Control", "settle"]

log = logging.getLogger("dovecote")

Handler = Callable[[Any], None]


class Control:
    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        identity: bytes,
        lock: threading.Lock,
        wake: Callable[[], None],
        waiter: Waiter,
        ids: itertools.count[int],
    ) -> None:
        self.sock = net.dealer(ctx, addresses.control, identity, hwm=10_000)
        self._lock = lock
        self._wake = wake
        self._waiter = waiter
        self._ids = ids
        self.closed: str | None = None
        self._watches: dict[int, tuple[ActorRef, Callable[[ActorRef, str], None]]] = {}
        self._requests: dict[int, tuple[ActorFuture[Any], Callable[[Any], Any]]] = {}
        self._out: list[list[Any]] = []
        self.handlers: dict[type, Handler] = {wire.Reply: self._on_reply, wire.Down: self._on_down}

    def request(
        self, label: str, decode: Callable[[Any], Any], make: Callable[[int], Any]
    ) -> ActorFuture[Any]:
        """Send ``make(req_id)`` to the supervisor; its reply completes the future."""
        future: ActorFuture[Any] = ActorFuture(label, self._waiter)
        req_id = next(self._ids)
        frames = wire.encode_control(make(req_id))
        with self._lock:
            if self.closed is not None:
                raise ActorStoppedError(self.closed)
            self._requests[req_id] = (future, decode)
            self._out.append(frames)
            self._wake()
        return future

    def notify(self, message: Any) -> None:
        """Send a control message that expects no reply."""
        frames = wire.encode_control(message)
        with self._lock:
            self._out.append(frames)
            self._wake()

    def _on_reply(self, reply: wire.Reply) -> None:
        with self._lock:
            pending = self._requests.pop(reply.req_id, None)
        if pending is None:
            return
        future, decode = pending
        if not reply.ok:
            settle(future, exc=wire.decode_error(reply.payload))
            return
        try:
            settle(future, value=decode(reply.payload))
        except Exception as exc:
            settle(future, exc=exc)

    def on_message(self, frames: list[Any]) -> None:
        """Decode a control message and run its handler; log what goes wrong."""
        try:
            kind, body, buffers, _ = wire.unpack(frames)
            if kind != wire.CONTROL:
                raise wire.ProtocolError(f"kind {kind} on a control socket")
            message = wire.decode_control(body, buffers)
            handler = self.handlers.get(type(message))
            if handler is None:
                raise wire.ProtocolError(f"{wire.op_name(type(message))!r} is not for this process")
        except wire.ProtocolError as exc:
            log.warning("dropped a malformed control message: %s", exc)
            return
        try:
            handler(message)
        except KeyboardInterrupt:
            raise
        except BaseException:  # SystemExit from an actor's hook, say: the process goes on
            log.exception("control message %r failed", message)

    def add_watch(self, ref: ActorRef, on_down: Callable[[ActorRef, str], None]) -> int:
        watch_id = next(self._ids)
        with self._lock:
            self._watches[watch_id] = (ref, on_down)
            self._wake()  # the driver's background thread now also looks for notices
        return watch_id

    def watching(self) -> bool:
        return bool(self._watches)

    def _on_down(self, notice: wire.Down) -> None:
        """A watched actor crashed or ended."""
        with self._lock:
            watches = self._watches
            watch = (
                watches.pop(notice.watch_id, None) if notice.final else watches.get(notice.watch_id)
            )
        if watch is None:
            return
        ref, on_down = watch
        try:
            on_down(ref, notice.reason)
        except Exception:
            log.exception("the watch callback for %r raised", ref)

    def flush(self) -> bool:
        """Send what waits; False if the supervisor is not reading."""
        while self._out:
            try:
                net.send(self.sock, self._out[0], net.DONTWAIT)
            except zmq.Again:
                return False
            with self._lock:
                del self._out[0]
        return True

    def has_outgoing(self) -> bool:
        return bool(self._out)

    def has_pending(self) -> bool:
        return bool(self._requests)

    def forget(self) -> list[ActorFuture[Any]]:
        """The futures of every request still pending, forgotten (lock held)."""
        futures = [future for future, _ in self._requests.values()]
        self._requests.clear()
        return futures

    def close(self) -> None:
        self.sock.close(linger=0)


def settle(future: Any, value: Any = None, exc: BaseException | None = None) -> None:
    """Complete a future unless a cancel got there first."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass  # cancelled by its caller: nobody wants the outcome
