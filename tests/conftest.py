"""Every test is bounded and must leave no child process and no open socket behind."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator

import psutil
import pytest
from zmq.utils.garbage import gc as zmq_gc

from runtime import ActorSystem

faulthandler.enable()  # a hang or a crash dumps every thread's stack

# pyzmq releases zero-copy frames through a process-wide collector with a context
# of its own, started on first use and kept for the process's life: start it now
# so that it is not taken for a leak of the first test that sends a large frame.
zmq_gc.start()


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
