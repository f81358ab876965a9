"""Calls from a worker's actors to actors of the same worker: delivered on the
loop without sockets, and cancellable until they start (``client.Local``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from actors._future import ActorFuture
from actors._ref import STOP_METHOD
from runtime import wire
from runtime.core import Mailbox
from runtime.wire import Request
from runtime.worker._actors import Actors
from runtime.worker._batch import run_lone

__all__ = ["LocalCalls"]

log = logging.getLogger("dovecote")


class LocalCalls:
    def __init__(self, slot: int, loop: asyncio.AbstractEventLoop, mailbox: Mailbox) -> None:
        self.slot = slot
        self.loop = loop
        self.mailbox = mailbox
        self.actors: Actors | None = None  # set once the worker has assembled them
        self._waiting: dict[int, Request] = {}  # calls not yet delivered, by msg id
        self._queued: list[tuple[Request, wire.RawEntry]] = []  # for the next turn, in order

    def submit(
        self, entry: wire.RawEntry, bufs: Sequence[Any], future: ActorFuture[Any] | None
    ) -> bool:
        """Deliver on the loop's next turn; False for a self-stop, which completes now
        (awaiting it must not deadlock)."""
        assert self.actors is not None
        kind, msg_id, actor_id, method, blob, _ = entry
        if method == STOP_METHOD and self.actors.stop_self(actor_id):
            return False
        # A local call must not share memory with the caller: copy large buffers.
        copies = [bytes(memoryview(b)) for b in bufs]
        request = Request(None, kind, msg_id, actor_id, method, blob, copies)
        if kind == wire.CALL:
            self._waiting[msg_id] = request
        if not self._queued:  # one handle delivers the turn's local calls, not one each
            self.loop.call_soon(self._deliver)
        self._queued.append((request, entry))
        return True

    def claim(self, msg_id: int) -> bool:
        """Withdraw a call made from this worker to itself, if it has not started."""
        request = self._waiting.pop(msg_id, None)  # not yet delivered
        if request is None:
            return self.mailbox.withdraw(None, msg_id)
        request.cancelled = True
        return True

    def _deliver(self) -> None:
        """Deliver what was submitted since, in order. A failure to deliver one is
        logged and the others still go, as each in a handle of its own would."""
        assert self.actors is not None
        actors = self.actors
        queued, self._queued = self._queued, []
        waiting = self._waiting
        for request, entry in queued:
            waiting.pop(request.msg_id, None)
            try:
                if request.cancelled or request.bufs:
                    actors.deliver(request)  # drops it if cancelled
                else:  # as a lone call from a socket: no queue if its actor is idle
                    run_lone(actors, None, entry)
            except Exception:
                log.exception("worker %d: delivering to #%d failed", self.slot, request.actor_id)
