"""A worker's mailbox state, sans-IO: one cell per actor with its FIFO queue, the
stash of what was read but not yet delivered, and the backlog that decides
backpressure. The worker does the reading, the running and the replying."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from runtime.wire import CALL, RawEntry, Request

__all__ = ["Batch", "Cell", "Mailbox"]


class Batch:
    """The batch being run from its entries (see worker/_batch): those after
    ``next`` have not started, and a cancel may still withdraw them."""

    __slots__ = ("cancelled", "entries", "next", "peer")

    def __init__(self, peer: bytes, entries: Sequence[RawEntry]) -> None:
        self.peer = peer
        self.entries = entries
        self.next = 0
        self.cancelled: set[int] = set()

    def withdraw(self, peer: bytes | None, msg_id: int) -> bool:
        if peer != self.peer:
            return False
        for entry in itertools.islice(self.entries, self.next, None):
            if entry[1] == msg_id and entry[0] == CALL:
                self.cancelled.add(msg_id)
                return True
        return False


class Cell:
    """An actor and its queue of messages not yet handled.

    The cell is busy while it may start no message: its actor runs as many async
    methods as its ``max_concurrency`` allows (one by default), or the newest of
    them has not begun yet (so that messages begin in arrival order), or, while
    the actor is being (re)started, the cell holds none and its messages wait in
    its queue for the new incarnation.
    """

    __slots__ = ("actor", "busy", "fresh", "limit", "methods", "queue", "stop_after", "tasks")

    def __init__(self, actor: Any | None) -> None:
        self.actor = actor
        self.queue: deque[Request] = deque()
        self.limit = _limit(actor)
        self.busy = actor is None
        # The asyncio tasks of the async methods that run now, each with when it
        # started (0.0 once the hang check has reported it).
        self.tasks: dict[Any, float] = {}
        self.fresh: Any = None  # a task of a concurrent actor that has not begun
        self.methods: dict[str, Callable[..., Any]] = {}
        # The actor stopped itself: True while the sync method that asked runs, then
        # the task of the message that asked; the actor stops once that one ends.
        self.stop_after: Any = False

    def place(self, actor: Any) -> None:
        self.actor = actor
        self.limit = _limit(actor)
        self.methods.clear()
        self.busy = len(self.tasks) >= self.limit
        self.stop_after = False  # a stop asked by the incarnation before this one

    def vacate(self) -> None:
        """The actor is stopped for a restart; its queue waits for the next one."""
        self.actor = None
        self.take_tasks()
        self.busy = True

    def start(self, task: Any, now: float) -> None:
        """An async method runs on, as ``task``. The cell is busy: at its limit, or
        until ``begun(task)`` if it may run more than one."""
        self.tasks[task] = now
        self.busy = True
        if self.limit > 1:
            self.fresh = task
        if self.stop_after is True:  # the method that returned it stopped its actor
            self.stop_after = task

    def begun(self, task: Any) -> bool:
        """``task`` has run up to its first wait: True if the next message may start."""
        if self.fresh is not task:
            return False  # its actor was stopped or suspended meanwhile
        self.fresh = None
        self.busy = self.actor is None or len(self.tasks) >= self.limit
        return not self.busy

    def end(self, task: Any) -> bool:
        """``task`` completed: False if it no longer counts (its actor was stopped or
        suspended meanwhile)."""
        if self.tasks.pop(task, None) is None:
            return False
        if self.fresh is task:
            self.fresh = None
        self.busy = self.actor is None or self.fresh is not None
        return True

    def take_tasks(self) -> list[Any]:
        """The tasks that run now, for the caller to cancel; they no longer count."""
        tasks = list(self.tasks)
        self.tasks.clear()
        self.fresh = None
        return tasks


def _limit(actor: Any | None) -> int:
    """How many messages the actor may have in progress at once: its class's
    ``max_concurrency`` (validated where it is set), 1 by default."""
    limit = getattr(type(actor), "max_concurrency", 1)
    return limit if type(limit) is int and limit >= 1 else 1


class Mailbox:
    """The cells of one worker and how many messages wait in them. Past ``size``
    waiting, the worker stops reading its socket (the senders' pipes fill: that is
    the backpressure); it reads again once the backlog has halved."""

    def __init__(self, size: int, expect: Iterable[int] = ()) -> None:
        self.size = size
        self.cells: dict[int, Cell] = {actor_id: Cell(None) for actor_id in expect}
        self.stash: deque[Request] = deque()  # read (perhaps by the keeper), not delivered
        self.batch: Batch | None = None  # being run from its entries
        self.backlog = 0

    def waiting(self) -> bool:
        """Whether messages read have not begun: stashed, or later in the batch that runs."""
        batch = self.batch
        return bool(self.stash) or (batch is not None and batch.next < len(batch.entries))

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
        if self.batch is not None and self.batch.withdraw(peer, msg_id):
            return True
        waiting = itertools.chain(parsed, self.stash, *(c.queue for c in self.cells.values()))
        for request in waiting:
            if request.msg_id == msg_id and request.peer == peer and request.kind == CALL:
                request.cancelled = True
                return True
        return False
