"""ActorPool: a fixed set of actors, one task each at a time, that avoids a failing
or busy actor (issue 10)."""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import signal
from pathlib import Path
from typing import Any

import pytest

from actors import Actor, ActorCrashedError, ActorPool, ActorRef, ActorStoppedError
from runtime import ActorSystem
from tests.helpers import Waiter, wait_for_path, write_whole


class Doubler(Actor):
    """Doubles a value after ``delay`` seconds (awaited: its worker goes on meanwhile)
    and says which actor did it."""

    def __init__(self, label: str, delay: float = 0.0) -> None:
        self.label = label
        self.delay = delay

    async def double(self, value: int) -> tuple[str, int]:
        await asyncio.sleep(self.delay)
        return self.label, 2 * value

    async def double_after(self, value: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return 2 * value

    def double_unless(self, value: int, bad: int) -> int:
        if value == bad:
            raise ValueError(f"bad value {value}")
        return 2 * value

    async def double_or_hang(self, value: int, started: str, go: str) -> int:
        """Hangs (until killed) unless ``go`` exists when it starts."""
        if not os.path.exists(go):
            pathlib.Path(started).touch()
            await asyncio.sleep(60)
        return 2 * value

    def pid(self) -> int:
        return os.getpid()


def _doublers(system: ActorSystem, n: int, delay: float = 0.0, **options: Any) -> list[ActorRef]:
    return [system.spawn(Doubler, f"d{i}", delay, worker=i % 2, **options) for i in range(n)]


def _double(ref: ActorRef, value: int) -> Any:
    return ref.double(value)


def _pid(ref: ActorRef) -> int:
    return ref.pid().result(timeout=10)  # asked first: a busy actor answers late


def test_map_yields_results_in_input_order(system: ActorSystem) -> None:
    pool = ActorPool(_doublers(system, 3))
    # later values finish sooner: the order comes from the pool, not from the timing
    results = pool.map(lambda a, v: a.double_after(v, (30 - v) % 4 * 0.005), range(30))
    assert list(results) == [2 * v for v in range(30)]
    assert pool.has_free()


def test_map_unordered_yields_every_result(system: ActorSystem) -> None:
    pool = ActorPool(_doublers(system, 3))
    results = list(pool.map_unordered(_double, range(30)))
    assert sorted(value for _, value in results) == [2 * v for v in range(30)]
    assert {label for label, _ in results} <= {"d0", "d1", "d2"}


def test_submit_and_get_next_follow_submission_order(system: ActorSystem) -> None:
    pool = ActorPool(_doublers(system, 2))
    futures = [pool.submit(lambda a, v: a.double_after(v, (5 - v) * 0.01), v) for v in range(6)]
    assert pool.has_next()
    assert [pool.get_next(timeout=10) for _ in range(6)] == [2 * v for v in range(6)]
    assert [f.result(timeout=0) for f in futures] == [2 * v for v in range(6)]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    for v in range(6):
        pool.submit(lambda a, v: a.double_after(v, 0.0), v)
    unordered = [pool.get_next_unordered(timeout=10) for _ in range(6)]
    assert sorted(unordered) == [2 * v for v in range(6)]
    assert not pool.has_next()


def test_get_next_times_out_and_keeps_the_result(system: ActorSystem, tmp_path: Path) -> None:
    pool = ActorPool([system.spawn(Waiter)])
    gate = tmp_path / "gate"
    pool.submit(lambda a, path: a.wait_for_file(path), str(gate))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    assert pool.has_next()
    write_whole(gate, "open")
    assert pool.get_next(timeout=10) == "open"


def test_a_slow_actor_gets_fewer_tasks(system: ActorSystem) -> None:
    slow = system.spawn(Doubler, "slow", 0.2, worker=0)
    fast = system.spawn(Doubler, "fast", 0.0, worker=1)
    results = list(ActorPool([slow, fast]).map(_double, range(20)))
    assert [value for _, value in results] == [2 * v for v in range(20)]
    done = collections.Counter(label for label, _ in results)
    assert done["fast"] > done["slow"], done


def test_a_killed_actor_loses_no_task(system: ActorSystem) -> None:
    victim = system.spawn(Doubler, "victim", 60.0, worker=0, restart="temporary")
    others = [system.spawn(Doubler, f"d{i}", 0.0, worker=1) for i in range(2)]
    pool = ActorPool([victim, *others])
    pid = _pid(victim)
    results = pool.map_unordered(_double, range(30))
    first = next(results)  # the victim holds a task by now, and never answers it
    os.kill(pid, signal.SIGKILL)
    done = [first, *results]
    assert sorted(value for _, value in done) == [2 * v for v in range(30)]
    assert {label for label, _ in done} <= {"d0", "d1"}
    assert "1 out of rotation" in repr(pool)


def test_when_every_actor_is_dead_the_waiting_tasks_fail(system: ActorSystem) -> None:
    only = system.spawn(Doubler, "only", 60.0, worker=0, restart="temporary")
    pool = ActorPool([only])
    pid = _pid(only)
    futures = [pool.submit(_double, v) for v in range(3)]  # one running, two waiting
    os.kill(pid, signal.SIGKILL)
    for future in futures:
        with pytest.raises((ActorCrashedError, ActorStoppedError)):
            future.result(timeout=30)
    with pytest.raises((ActorCrashedError, ActorStoppedError)):
        pool.submit(_double, 3).result(timeout=30)  # nobody left: it fails at once
    pool.push(system.spawn(Doubler, "new", 0.0))
    assert pool.submit(_double, 4).result(timeout=10) == ("new", 8)


def test_a_lone_restarted_actor_gets_a_second_chance(system: ActorSystem, tmp_path: Path) -> None:
    only = system.spawn(Doubler, "only", 0.0)  # permanent: restarted after a crash
    pool = ActorPool([only])
    pid = _pid(only)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    held = pool.submit(lambda a, v: a.double_or_hang(v, started, go), 1)
    queued = pool.submit(_double, 2)
    wait_for_path(started)
    pathlib.Path(go).touch()  # for the next incarnation: this one hangs
    os.kill(pid, signal.SIGKILL)
    assert held.result(timeout=30) == 2  # re-sent to the same actor, come back
    assert queued.result(timeout=30) == ("only", 4)
    assert "0 out of rotation" in repr(pool)


def test_a_method_exception_is_that_tasks_result(system: ActorSystem) -> None:
    pool = ActorPool(_doublers(system, 2))
    results = pool.map(lambda a, v: a.double_unless(v, 3), range(10))
    assert [next(results) for _ in range(3)] == [0, 2, 4]
    with pytest.raises(ValueError, match="bad value 3"):
        next(results)
    with pytest.raises(StopIteration):
        next(results)  # the map ends there, as the stdlib's
    failed = pool.submit(lambda a, v: a.double_unless(v, 1), 1)
    with pytest.raises(ValueError, match="bad value 1"):
        pool.get_next(timeout=10)
    assert isinstance(failed.exception(timeout=0), ValueError)
    assert list(pool.map(lambda a, v: a.double_unless(v, -1), range(10))) == [
        2 * v for v in range(10)
    ]
    assert "0 out of rotation" in repr(pool)


def test_pop_idle_and_push(system: ActorSystem) -> None:
    refs = _doublers(system, 2)
    pool = ActorPool(refs)
    assert pool.has_free()
    taken = pool.pop_idle()
    assert taken in refs
    assert pool.pop_idle() is not None
    assert pool.pop_idle() is None and not pool.has_free()
    future = pool.submit(_double, 5)  # waits for an actor
    assert not future.done()
    assert taken is not None
    pool.push(taken)
    assert future.result(timeout=10)[1] == 10
    with pytest.raises(ValueError, match="in the pool already"):
        pool.push(taken)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one actor"):
        ActorPool([])
    ref = ActorRef("no-system", 1, 0)
    with pytest.raises(ValueError, match="twice"):
        ActorPool([ref, ref])
    with pytest.raises(TypeError):
        ActorPool(["not a ref"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="retries"):
        ActorPool([ref], retries=-1)
    with pytest.raises(TypeError):
        ActorPool([ref]).map(None, [1])  # type: ignore[arg-type]
