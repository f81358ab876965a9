"""The worker's event loop: asyncio's, with the ZeroMQ sockets polled beside it
rather than through it; and the guard against a child forked by an actor's code
running the worker's loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import selectors
import sys
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any, Protocol

import zmq

from runtime import net
from runtime.net import Socket

__all__ = ["MailboxReader", "Reader", "WorkerLoop", "forked", "leave_if_forked", "noop"]

BUDGET = 64  # messages taken from a DEALER or SUB before the loop serves anything else
POLLIN = net.POLLIN
DONTWAIT = net.DONTWAIT
_recv_part = net.recv_part
BUSY_POLL = 0.0002  # s: while asyncio has work, the mailbox is polled once in this long


if not hasattr(asyncio.BaseEventLoop, "_run_once"):  # checked on 3.10 to 3.13
    raise ImportError("dovecote's worker loop needs asyncio.BaseEventLoop._run_once (CPython)")


class _QuietSelector(selectors.DefaultSelector):
    """asyncio's selector, which never waits (the loop waits in its zmq_poll, which
    polls this selector's own fd) and skips the system call of a turn's select
    unless that zmq_poll found one of its files ready, and it has not selected
    since. A busy loop (a task's step every turn) then takes no epoll_wait a turn,
    nor does the turn that runs the step a reply woke; a file that becomes ready
    meanwhile is seen at the next poll, within BUSY_POLL."""

    quiet = False

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if self.quiet:
            return []
        self.quiet = True  # looked now: the loop's next zmq_poll says when again
        return super().select(0)


class _Timer(Protocol):
    """An asyncio.TimerHandle as the loop reads it: ``_when`` is what its ``when()``
    returns, without a method call (two a turn)."""

    _when: float


class WorkerLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, with the mailbox read outside it.

    Each turn one ``zmq_poll`` waits on the mailbox (see :class:`MailboxReader`)
    and on asyncio's own selector (its epoll fd is readable when a DEALER, a
    SUB, a pipe or a stream that asyncio watches is), for as long as asyncio has
    nothing to run before its next timer. A call is handled at once, with no
    handle or callback made for it, and asyncio takes its turn only when it has
    something to do: a callback, a task's step, a due timer, a file it watches.
    So a lone call costs one poll and one read, as in a plain pyzmq loop, and
    the mailbox needs no look after a send: zmq_poll reads ZMQ_EVENTS first.
    While asyncio has work turn after turn, the mailbox is polled once every
    BUSY_POLL: a turn of asyncio's costs tens of microseconds here, a poll a
    few, and a call waits no longer than that for a busy loop.
    """

    # asyncio's own state, read here (CPython's BaseEventLoop, 3.10 to 3.13)
    _ready: deque[asyncio.Handle]
    _scheduled: list[_Timer]
    _selector: Any  # a _QuietSelector: epoll or kqueue, with a fileno() of its own
    _stopping: bool

    def __init__(self) -> None:
        super().__init__(_QuietSelector())
        self._turn_end: list[Callable[[], None]] = []
        self._before_poll: list[Callable[[], None]] = []
        self._polled_at = 0.0  # when the mailbox was last looked at
        self._readers: dict[Any, MailboxReader] = {}
        self._items: list[tuple[Any, int]] | None = None  # None: rebuild before the poll

    def watch(self, reader: MailboxReader) -> None:
        self._readers[reader.sock] = reader
        self._items = None

    def unwatch(self, reader: MailboxReader) -> None:
        self._readers.pop(reader.sock, None)
        self._items = None

    def at_turn_end(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once this turn's messages and callbacks have run, before the loop
        waits again: a flush of what they queued, without a turn of its own."""
        self._turn_end.append(fn)

    def before_poll(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once, before the loop next polls its sockets: as it is about to
        wait, or within BUSY_POLL while asyncio has work turn after turn. For what
        may go out a little later in fewer, larger messages: the bus's events, which
        a task that publishes one a turn would otherwise send one frame each."""
        self._before_poll.append(fn)

    def changed(self) -> None:
        """A reader paused or resumed."""
        self._items = None

    def _run_once(self) -> None:
        if _in_forked_child:
            leave_if_forked()
        scheduled = self._scheduled
        now = monotonic()  # asyncio's clock (loop.time), without its method call
        busy = self._ready or self._stopping or self._turn_end
        if busy and now - self._polled_at < BUSY_POLL:  # asyncio's turn alone, mailbox unread
            if self._ready or self._stopping:
                super()._run_once()  # type: ignore[misc]  # it will not block
            if self._turn_end:
                self._end_turn()
            return
        if self._before_poll:
            self._run_before_poll()  # first: what it schedules decides the timeout
        if self._ready or self._stopping or self._turn_end:
            timeout = 0
        elif scheduled:  # wait no longer than asyncio's next timer
            timeout = max(0, math.ceil((scheduled[0]._when - now) * 1e3))
        else:
            timeout = -1
        asyncio_turn = timeout == 0
        selector = self._selector
        selector.quiet = True  # unless the poll finds one of its files ready
        for sock, _ in zmq.zmq_poll(self._items or self._poll_items(), timeout):
            if type(sock) is int:  # asyncio's selector: a file it watches is ready
                asyncio_turn = True
                selector.quiet = False
                continue
            reader = self._readers.get(sock)
            if reader is not None:  # None: closed by a handler earlier in this turn
                reader.run()
        self._polled_at = monotonic()
        if asyncio_turn or self._ready or (scheduled and scheduled[0]._when <= self._polled_at):
            self._asyncio_turn()
        elif self._turn_end:
            self._end_turn()

    def _asyncio_turn(self) -> None:
        super()._run_once()  # type: ignore[misc]  # it will not block: work is there
        self._end_turn()

    def _run_before_poll(self) -> None:
        before, self._before_poll = self._before_poll, []
        for fn in before:
            fn()

    def _end_turn(self) -> None:
        turn_end = self._turn_end
        while turn_end:
            turn_end.pop(0)()

    def _poll_items(self) -> list[tuple[Any, int]]:
        items = [(sock, POLLIN) for sock, reader in self._readers.items() if not reader.paused]
        items.append((self._selector.fileno(), POLLIN))
        self._items = items
        return items


class Reader:
    """Feeds one ZeroMQ socket to its handler from asyncio's selector, for a socket
    that is seldom busy (a DEALER, a SUB): its poll costs nothing while it is quiet.

    A socket's FD is edge-triggered and any send may consume the edge, so the
    socket is drained until nothing waits, and its owner calls ``check`` after
    every send on it. ``recv`` reads one message (``net.recv_batch`` for a DEALER).
    """

    def __init__(
        self,
        loop: WorkerLoop,
        sock: Socket,
        handler: Callable[[list[Any]], None],
        after: Callable[[], None],
        recv: Callable[[Socket, int], list[Any]] = net.recv,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.recv = recv
        self.after = after
        self._scheduled = False
        self._start()

    def _start(self) -> None:
        self.loop.add_reader(self.sock.FD, self.run)

    def check(self) -> None:
        if not self._scheduled and not self.sock.closed and net.readable(self.sock):
            self._scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        self._scheduled = False
        if self.sock.closed:
            return
        sock, handler, recv, dontwait = self.sock, self.handler, self.recv, net.DONTWAIT
        try:
            for i in range(BUDGET):
                # The first read is tried at once: the socket's FD fired, or a look found
                # a message. After it, a zero-timeout poll asks whether another waits:
                # 2.3 us, where a read that fails costs 7 us in pyzmq (it raises).
                if i and not net.readable(sock):
                    return
                try:
                    frames = recv(sock, dontwait)
                except zmq.Again:
                    return  # the FD fired for something else than a message
                handler(frames)
            self._scheduled = True  # more may be queued: let the loop breathe first
            self.loop.call_soon(self.run)
        finally:
            self.after()

    def stop(self) -> None:
        """Read no more; the socket stays open for its owner to close."""
        self.loop.remove_reader(self.sock.FD)

    def close(self) -> None:
        self.stop()
        self.sock.close(linger=0)


class MailboxReader(Reader):
    """A mailbox ROUTER's reader: polled by the loop itself (see :class:`WorkerLoop`),
    one message at a time, and paused under backpressure. A message of one part
    after its sender's routing id (a batch with no buffers: the usual message)
    goes to ``one`` (its owner's to set), as that id and that part; any other to
    the handler."""

    def _start(self) -> None:
        self._paused = False
        self.one: Callable[[bytes, Any], None] = lambda peer, part: self.handler([peer, part])
        self.loop.watch(self)

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        """Not read while paused: the senders' pipes fill (backpressure)."""
        self._paused = paused
        self.loop.changed()

    def run(self) -> None:
        """Handle one message; the poll said one is there. The loop's next poll comes
        back at once if another waits, so the sockets take turns."""
        sock = self.sock
        if self._paused or sock.closed:
            return
        try:
            peer = _recv_part(sock, DONTWAIT)
        except zmq.Again:
            return
        part = _recv_part(sock, 0, False)  # a Frame: it knows whether more follow
        try:
            if part.more:
                self.handler([peer, part, *net.recv(sock)])
            else:
                self.one(peer, part)
        finally:
            self.after()

    def stop(self) -> None:
        self.loop.unwatch(self)


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
