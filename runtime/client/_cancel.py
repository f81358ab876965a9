"""Cancelling a call: withdrawn from its outbox if it is still there; once sent,
only its worker knows whether it started, so it is asked (a CANCEL entry
behind the call on the same connection) and its verdict awaited where waiting
is allowed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from actors._future import ActorFuture
from runtime import wire
from runtime.client._call import Call
from runtime.core import Calls

__all__ = ["CANCEL_TIMEOUT", "Cancels", "Local"]

CANCEL_TIMEOUT = 5.0  # seconds cancel() waits for a worker's verdict before saying False


class Local(Protocol):
    """Calls from a worker's actors to the worker's own mailbox skip the sockets."""

    slot: int

    def submit(
        self, entry: wire.RawEntry, bufs: Sequence[Any], future: ActorFuture[Any] | None
    ) -> bool:
        """Deliver on the loop; False if the call needs no delivery (a self-stop)."""

    def claim(self, msg_id: int) -> bool:
        """Withdraw a call to this worker if it has not started."""


class Cancels:
    def __init__(
        self,
        calls: Calls[Call],
        lock: threading.Lock,
        wake: Callable[[], None],
        wait: Callable[[Callable[[], bool], float], None],
        clock: Callable[[], float],
        local: Local | None,
    ) -> None:
        self.calls = calls
        self._lock = lock
        self._wake = wake
        self._wait = wait
        self._clock = clock
        self._local = local

    def cancel(self, future: ActorFuture[Any]) -> bool:
        """``future.cancel()`` of a pending call: True if it will not run.

        A call still in its outbox is withdrawn here. Once sent, only its worker
        knows whether it started: it is asked, and its verdict awaited where
        waiting is allowed. Without one in time (a worker whose inbox is paused by
        backpressure, or stuck) the call may still run: it is marked running and
        cancel() says False; should the worker drop it after all, the future ends
        cancelled rather than pending for ever."""
        withdrawn, slot = self._withdraw(future)
        if withdrawn:
            self._wake_waiters()
            return True
        if slot is None:
            return future.cancelled()  # its outcome is being set right now
        local = self._local
        if local is not None and slot == local.slot:
            return self._cancel_local(local, future)
        self._send_cancel(slot, future.call_id)
        self._wait(future.decided, self._clock() + CANCEL_TIMEOUT)
        if not future.decided():
            future.mark_running()
        return future.cancelled()

    def _cancel_local(self, local: Local, future: ActorFuture[Any]) -> bool:
        if not local.claim(future.call_id):
            future.mark_running()  # not waiting to start: it runs, or has run
            return future.cancelled()
        with self._lock:
            self.calls.pending.pop(future.call_id, None)
        return future.mark_cancelled()

    def abandon(self, futures: list[ActorFuture[Any]]) -> None:
        """Nobody wants these any more: withdraw or cancel each, without waiting."""
        for future in futures:
            if not future.decided():
                withdrawn, slot = self._withdraw(future)
                if not withdrawn and slot is not None:
                    self._send_cancel(slot, future.call_id)

    def _withdraw(self, future: ActorFuture[Any]) -> tuple[bool, int | None]:
        with self._lock:
            withdrawn, slot = self.calls.withdraw(future.call_id)
        if withdrawn:
            future.mark_cancelled()
        return withdrawn, slot

    def _send_cancel(self, slot: int, msg_id: int) -> None:
        """Ask the worker to drop a call it has not started: behind the call on the
        same connection, so the worker has it by the time it reads this."""
        with self._lock:
            self.calls.outbox(slot).add((wire.CANCEL, msg_id, 0, "", b"", 0), [])
            self._wake()

    def on_verdict(self, kind: int, msg_id: int) -> None:
        """The worker's answer to a cancel: dropped before it started, or started."""
        with self._lock:
            pending = self.calls.pending.get(msg_id)
            if pending is not None and kind == wire.CANCELLED:
                del self.calls.pending[msg_id]
        if pending is None:
            return  # its reply came first: the call had run
        if kind == wire.CANCELLED:
            pending.mark_cancelled(late=True)
        else:
            pending.mark_running()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """A future changed state without a reply: let the thread waiting on it see."""
        with self._lock:
            self._wake()
