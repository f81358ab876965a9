"""Failures found in review and by the chaos test, kept from coming back."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from actors import ActorCrashedError, ActorStoppedError
from runtime import ActorSystem
from tests.helpers import Counter, Probe, RefusesRestart, Waiter, touch_file
from tests.test_supervision import _after_crash


def test_a_waiting_thread_gets_its_reply_while_another_thread_pumps(
    system: ActorSystem, tmp_path: Path
) -> None:
    slow = system.spawn(Probe, worker=0)
    fast = system.spawn(Counter, 7, worker=1)
    started = threading.Event()
    release = str(tmp_path / "release")

    def wait_long() -> None:
        call = slow.hold(str(tmp_path / "holding"), release)
        started.set()
        call.result(timeout=20)  # this thread now drives the sockets until the release

    other = threading.Thread(target=wait_long)
    other.start()
    try:
        assert started.wait(timeout=10)
        assert fast.get().result(timeout=1.5) == 7  # not held until the long call ends
    finally:
        touch_file(release)
        other.join(timeout=20)
    assert not other.is_alive()


def test_calls_between_workers_after_both_restarted(system: ActorSystem) -> None:
    waiter = system.spawn(Waiter, worker=0)
    counter = system.spawn(Counter, worker=1)
    assert waiter.relay(counter, 1).result(timeout=10) == 1
    pids = [system.spawn(Counter, worker=0).pid().result(timeout=5), counter.pid().result()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # the new worker 0 must learn the new worker 1's epoch, or its calls are dropped
    assert _after_crash(lambda: waiter.relay(counter, 1)) == 1


def test_the_mailbox_reads_again_after_an_actor_is_given_up(tmp_path: Path) -> None:
    with ActorSystem(workers=1, mailbox_size=10) as system:
        doomed = system.spawn(RefusesRestart, str(tmp_path / "marker"), max_restarts=2)
        neighbour = system.spawn(Counter, 42)
        with pytest.raises(ActorCrashedError):
            doomed.exit().result(timeout=10)
        queued = [doomed.noop() for _ in range(30)]  # held, then failed with it
        for future in queued:
            assert isinstance(future.exception(timeout=20), ActorStoppedError | ActorCrashedError)
        assert neighbour.get().result(timeout=10) == 42
