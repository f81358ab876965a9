"""A worker's mailbox state, sans-IO: one cell per actor with its FIFO queue, the
stash of what was read but not yet delivered, and the backlog that decides
backpressure. The worker does the reading, the running and the replying."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from runtime.wire import CALL, Request

__all__ = ["Cell", "Mailbox"]


class Cell:
    """An actor and its queue of messages not yet handled.

    While its actor is being (re)started the cell holds no actor and stays busy:
    messages wait in its queue for the new incarnation.
    """

    __slots__ = ("actor", "busy", "methods", "queue", "stop_after", "task", "task_since")

    def __init__(self, actor: Any | None) -> None:
        self.actor = actor
        self.queue: deque[Request] = deque()
        self.busy = actor is None
        self.task: Any = None  # the asyncio task of an async method that runs now
        self.task_since = 0.0
        self.methods: dict[str, Callable[..., Any]] = {}
        self.stop_after = False  # the actor stopped itself: stop once this message ends

    def place(self, actor: Any) -> None:
        self.actor = actor
        self.methods.clear()
        self.busy = False
        self.stop_after = False  # a stop asked by the incarnation before this one

    def vacate(self) -> None:
        """The actor is stopped for a restart; its queue waits for the next one."""
        self.actor = None
        self.task = None
        self.busy = True


class Mailbox:
    """The cells of one worker and how many messages wait in them. Past ``size``
    waiting, the worker stops reading its socket (the senders' pipes fill: that is
    the backpressure); it reads again once the backlog has halved."""

    def __init__(self, size: int, expect: Iterable[int] = ()) -> None:
        self.size = size
        self.cells: dict[int, Cell] = {actor_id: Cell(None) for actor_id in expect}
        self.stash: deque[Request] = deque()  # read (perhaps by the keeper), not delivered
        self.backlog = 0

    def room(self) -> int:
        """How many more messages may be read now."""
        return self.size - self.backlog - len(self.stash)

    def queue(self, cell: Cell, request: Request) -> bool:
        """Queue behind the cell's running message; True if the mailbox is now full."""
        cell.queue.append(request)
        self.backlog += 1
        return self.backlog >= self.size

    def next(self, cell: Cell) -> Request:
        self.backlog -= 1
        return cell.queue.popleft()

    def may_resume(self) -> bool:
        return self.backlog < self.size // 2

    def remove(self, actor_id: int) -> Cell:
        """Take a cell out; what its queue holds no longer counts."""
        cell = self.cells.pop(actor_id)
        self.backlog -= len(cell.queue)
        return cell

    def withdraw(self, peer: bytes | None, msg_id: int, parsed: Sequence[Request] = ()) -> bool:
        """Mark a call that has not started as cancelled. It waits in ``parsed`` (the
        batch being read), the stash, or a cell's queue: found there, or it has
        started. A search, rare, rather than a table kept for every call."""
        waiting = itertools.chain(parsed, self.stash, *(c.queue for c in self.cells.values()))
        for request in waiting:
            if request.msg_id == msg_id and request.peer == peer and request.kind == CALL:
                request.cancelled = True
                return True
        return False
