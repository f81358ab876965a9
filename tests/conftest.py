"""Every test is bounded and must leave no child process and no open socket behind."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator

import psutil
import pytest
import zmq

from runtime import ActorSystem

faulthandler.enable()  # a hang or a crash dumps every thread's stack


def _start_zero_copy_collector() -> None:
    """pyzmq releases zero-copy frames through a process-wide collector with a
    context of its own, made on first use and kept for the process's life: make
    it now, so that it is not taken for a leak of the first test that needs it."""
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://prime")
    b.connect("inproc://prime")
    a.send(bytearray(4 * zmq.COPY_THRESHOLD), copy=False)
    b.recv()
    a.close()
    b.close()
    ctx.term()


_start_zero_copy_collector()


def _open_channels() -> dict[int, str]:
    """This process's sockets, pipes and event fds (what a leaked context keeps)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:", "anon_inode:")):
            found[int(fd)] = target
    return found


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before = _open_channels()
    yield
    children = psutil.Process().children(recursive=True)
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=5)
    leaked = {fd: t for fd, t in _open_channels().items() if before.get(fd) != t}
    assert not children, f"the test left child processes behind: {children}"
    assert not leaked, f"the test left open sockets/pipes behind: {leaked}"


@pytest.fixture
def system() -> Iterator[ActorSystem]:
    with ActorSystem(workers=2) as running:
        yield running
