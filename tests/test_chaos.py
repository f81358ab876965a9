"""Chaos: a stateful workload while workers are SIGKILLed over and over."""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors import ActorCrashedError, ActorStoppedError
from runtime import ActorSystem
from tests.helpers import Incarnation

KILLS = [0, 1, 0, 1, 0] + [random.Random(7).randrange(2) for _ in range(7)]


def _worker_pids(system: ActorSystem) -> dict[int, int]:
    return {worker.slot: worker.pid for worker in system.status().workers}


def _replaced(system: ActorSystem, slot: int, pid: int) -> bool:
    return _worker_pids(system).get(slot, pid) != pid


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition with a deadline, not hoping


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_asks_end_and_the_system_heals_while_workers_are_killed(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with ActorSystem(workers=2) as system:
        steady = [
            system.spawn(Incarnation, f"s{i}", log, worker=i % 2, max_restarts=100, period=60)
            for i in range(6)
        ]
        fragile = system.spawn(Incarnation, "f", log, worker=0, max_restarts=2, period=60)
        done = threading.Event()
        progress = [0]
        errors: list[BaseException] = []

        def killer() -> None:
            try:
                for slot in KILLS:
                    before = progress[0]
                    pid = _worker_pids(system)[slot]
                    os.kill(pid, signal.SIGKILL)
                    replaced = functools.partial(_replaced, system, slot, pid)
                    _wait_for(replaced, 10, "respawn")
                    _wait_for(lambda: progress[0] >= before + 50, 20, "progress after a kill")  # noqa: B023 -- runs within the iteration
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=killer)
        thread.start()
        outcomes = {"ok": 0, "crashed": 0, "stopped": 0}
        rng = random.Random(1)
        while not done.is_set():
            targets = [rng.choice([*steady, fragile]) for _ in range(40)]
            for ref, future in [(ref, ref.add_once(1)) for ref in targets]:
                try:
                    future.result(timeout=30)  # never a hang: an outcome within bounds
                    outcomes["ok"] += 1
                except ActorCrashedError:
                    outcomes["crashed"] += 1
                except ActorStoppedError:
                    assert ref is fragile, "only the fragile actor may be given up on"
                    outcomes["stopped"] += 1
                progress[0] += 1
        thread.join(timeout=30)
        assert not errors, errors
        assert outcomes["ok"] > 0 and outcomes["crashed"] > 0
        assert len(_worker_pids(system)) == 2  # the worker count is back at its target
        for ref in steady:  # restarted actors answer
            for _ in range(50):
                try:
                    ref.incarnation().result(timeout=10)
                    break
                except ActorCrashedError:
                    continue
        with pytest.raises(ActorStoppedError):  # killed 3+ times: past its intensity
            fragile.incarnation().result(timeout=10)
