"""The worker's event-loop plumbing: socket readers, and the guard against a
child forked by an actor's code running the worker's loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import zmq

from runtime import net
from runtime.net import Socket

__all__ = ["BUDGET", "Reader", "forked", "leave_if_forked", "noop"]

BUDGET = 64  # messages taken from one socket before the loop serves anything else


class Reader:
    """Feeds one ZeroMQ socket to the event loop.

    A socket's FD is edge-triggered and any send may consume the edge, so the
    socket is drained until EAGAIN and checked again after every send.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: Socket,
        handler: Callable[[list[Any]], None],
        after: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.after = after
        self.paused = False
        self._scheduled = False
        loop.add_reader(sock.FD, self.run)

    def check(self) -> None:
        if not self._scheduled and not self.sock.closed and net.readable(self.sock):
            self._scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        leave_if_forked()
        self._scheduled = False
        if self.paused or self.sock.closed:
            return
        sock, handler, recv, dontwait = self.sock, self.handler, net.recv, net.DONTWAIT
        try:
            for i in range(BUDGET):
                # The first read is tried at once: the loop woke for it, and a message is
                # almost always there. After it, a zero-timeout poll asks whether another
                # waits: 2.6 us, where a read that fails costs 7 us in pyzmq (it raises).
                if i and not net.readable(sock):
                    return
                try:
                    frames = recv(sock, dontwait)
                except zmq.Again:
                    return
                handler(frames)
                if self.paused:
                    return
            self._scheduled = True  # more may be queued: let the loop breathe first
            self.loop.call_soon(self.run)
        finally:
            self.after()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.FD)
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
