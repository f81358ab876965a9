"""The worker's event loop: asyncio's, with the ZeroMQ sockets polled beside it
rather than through it; and the guard against a child forked by an actor's code
running the worker's loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from runtime import net
from runtime.net import Socket

__all__ = ["Reader", "WorkerLoop", "forked", "leave_if_forked", "noop"]

POLLIN = net.POLLIN


class WorkerLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, with every ZeroMQ socket of the worker read outside it.

    Each turn one ``zmq_poll`` waits on the sockets that have a :class:`Reader`
    and on asyncio's own selector (its epoll fd is readable when a pipe or a
    stream that asyncio watches is), for as long as asyncio has nothing to run
    before its next timer. A message is handled at once, with no handle or
    callback made for it, and asyncio takes its turn only when it has something
    to do: a callback, a task's step, a due timer, a file it watches. So a lone
    call costs one poll and one read, as in a plain pyzmq loop. zmq_poll looks
    at each socket's ZMQ_EVENTS, so the edge-triggered FD of a ZeroMQ socket
    needs no look after a send.
    """

    # asyncio's own state, read here (CPython's BaseEventLoop, 3.10 to 3.13)
    _ready: deque[asyncio.Handle]
    _scheduled: list[asyncio.TimerHandle]
    _selector: Any  # epoll or kqueue: a selector with a fileno() of its own
    _stopping: bool

    def __init__(self) -> None:
        super().__init__()
        self._readers: dict[Any, Reader] = {}
        self._items: list[tuple[Any, int]] | None = None  # None: rebuild before the poll

    def watch(self, reader: Reader) -> None:
        self._readers[reader.sock] = reader
        self._items = None

    def unwatch(self, reader: Reader) -> None:
        self._readers.pop(reader.sock, None)
        self._items = None

    def changed(self) -> None:
        """A reader paused or resumed."""
        self._items = None

    def _run_once(self) -> None:
        leave_if_forked()
        items = self._items or self._poll_items()
        scheduled = self._scheduled
        asyncio_turn = bool(self._ready) or self._stopping
        if asyncio_turn:
            timeout = 0
        elif scheduled:  # wait no longer than asyncio's next timer
            timeout = max(0, math.ceil((scheduled[0].when() - self.time()) * 1e3))
        else:
            timeout = -1
        for sock, _ in zmq.zmq_poll(items, timeout):
            if type(sock) is int:  # asyncio's selector: a file it watches is ready
                asyncio_turn = True
                continue
            reader = self._readers.get(sock)
            if reader is not None:  # None: closed by a handler earlier in this turn
                reader.run()
        if asyncio_turn or self._ready or (scheduled and scheduled[0].when() <= self.time()):
            super()._run_once()  # type: ignore[misc]  # it will not block: work is there

    def _poll_items(self) -> list[tuple[Any, int]]:
        items = [(sock, POLLIN) for sock, reader in self._readers.items() if not reader.paused]
        items.append((self._selector.fileno(), POLLIN))
        self._items = items
        return items


class Reader:
    """Feeds one ZeroMQ socket to its handler, from the worker's loop."""

    def __init__(
        self,
        loop: WorkerLoop,
        sock: Socket,
        handler: Callable[[list[Any]], None],
        after: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.after = after
        self._paused = False
        loop.watch(self)

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        """Not read while paused: the senders' pipes fill (backpressure)."""
        self._paused = paused
        self.loop.changed()

    def run(self) -> None:
        """Handle one message; the poll said the socket is readable. The loop's next
        poll comes back at once if another waits, so the sockets take turns."""
        if self._paused or self.sock.closed:
            return
        try:
            frames = net.recv(self.sock, net.DONTWAIT)
        except zmq.Again:
            return
        try:
            self.handler(frames)
        finally:
            self.after()

    def stop(self) -> None:
        """Read no more; the socket stays open for its owner to close."""
        self.loop.unwatch(self)

    def close(self) -> None:
        self.stop()
        self.sock.close(linger=0)


def noop() -> None:
    pass


_in_forked_child = False


def forked() -> None:
    """After os.fork() in an actor, in the child: see ``leave_if_forked``."""
    global _in_forked_child
    _in_forked_child = True


def leave_if_forked() -> None:
    """A child forked by an actor's code that comes back into the runtime exits at
    once: it holds copies of the worker's sockets and loop, which must not run."""
    if _in_forked_child:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
