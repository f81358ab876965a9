"""Every test is bounded and must leave no child process and no open socket behind.

The tests that take ``system`` share one system per module (starting one costs
two interpreter starts, most of a short test): each gets it clean, with no actor
and every worker ready, or a new one. Their sockets are counted for the module
as a whole: the shared system opens its connections lazily, as tests need them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
import zmq

from actors import ActorRef, ActorStoppedError
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


class SharedSystem:
    """The ``ActorSystem(workers=2)`` that the ``system`` tests of one module share.

    Started by the first test that needs it; after each test, ``clean`` stops the
    actors the test left and waits for its tasks and for every worker to be ready.
    A system that cannot be made clean (shut down by the test, an actor that does not
    stop, a worker that does not come back) is shut down: the next test gets a new one.
    """

    current: SharedSystem | None = None  # the module's, while its tests run

    def __init__(self) -> None:
        self.running: ActorSystem | None = None

    def get(self) -> ActorSystem:
        if self.running is None:
            self.running = ActorSystem(workers=2)
        return self.running

    def pids(self) -> set[int]:
        """Its supervisor and the supervisor's children (the workers): not a test's leak.
        What a worker forks is a grandchild, and still counted as the test's."""
        supervisor = _supervisor(self.running)
        return set() if supervisor is None else {supervisor.pid, *_children(supervisor)}

    def clean(self) -> None:
        running = self.running
        if running is None:
            return
        try:
            if running._closed:
                raise RuntimeError("the test shut the system down")
            tasks = running._tasks.inflight
            _wait_until(lambda: not any(tasks.values()), 10, "the test's tasks to end")
            stops = [
                ActorRef(running.system_id, actor.actor_id, actor.worker).stop()
                for actor in running.status().actors
            ]
            deadline = time.monotonic() + 10
            for stop in stops:  # one that ended meanwhile (a group given up) raises
                with contextlib.suppress(ActorStoppedError):
                    stop.result(timeout=max(0.0, deadline - time.monotonic()))
            _wait_until(lambda: _is_clean(running), 10, "no actor and both workers ready")
            supervisor = _supervisor(running)
            if supervisor is None or _children(supervisor, True) != _children(supervisor):
                raise RuntimeError("a worker has a child of its own (a test forked it)")
        except Exception:  # left dirty: the next test gets a new system, as before
            self.close()

    def close(self) -> None:
        if self.running is not None:
            self.running.shutdown()
            self.running = None


def _is_clean(running: ActorSystem) -> bool:
    status = running.status()
    return not status.actors and sorted(w.slot for w in status.workers if w.ready) == [0, 1]


def _supervisor(running: ActorSystem | None) -> psutil.Process | None:
    proc = getattr(running._link, "proc", None) if running is not None else None
    if running is None or running._closed or proc is None:
        return None
    try:
        return psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return None


def _children(process: psutil.Process, recursive: bool = False) -> set[int]:
    try:
        return {child.pid for child in process.children(recursive=recursive)}
    except psutil.NoSuchProcess:
        return set()


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.01)  # polling a condition with a deadline


def _kill_children(spare: set[int]) -> list[psutil.Process]:
    """Kill this process's descendants but ``spare``; return the killed ones."""
    children = [c for c in psutil.Process().children(recursive=True) if c.pid not in spare]
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=5)
    return children


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _open_channels()
    yield
    shared = SharedSystem.current
    children = _kill_children(shared.pids() if shared is not None else set())
    assert not children, f"the test left child processes behind: {children}"
    if getattr(request.node, "shares_a_system", False):
        return  # counted by ``shared_system`` for the module
    leaked = {fd: t for fd, t in _open_channels().items() if before.get(fd) != t}
    assert not leaked, f"the test left open sockets/pipes behind: {leaked}"


@pytest.fixture(scope="module")
def shared_system() -> Iterator[SharedSystem]:
    """The module's shared system; once it is shut down, the module's tests together
    must have left no child process and no socket behind."""
    before = _open_channels()
    shared = SharedSystem.current = SharedSystem()
    try:
        yield shared
    finally:
        SharedSystem.current = None
        shared.close()
    children = _kill_children(set())
    assert not children, f"the module's tests left child processes behind: {children}"
    leaked = {fd: t for fd, t in _open_channels().items() if before.get(fd) != t}
    assert not leaked, f"the module's system tests left open sockets/pipes behind: {leaked}"


@pytest.fixture
def system(shared_system: SharedSystem, request: pytest.FixtureRequest) -> Iterator[ActorSystem]:
    request.node.shares_a_system = True
    yield shared_system.get()
    shared_system.clean()
