"""Tasks and maps: submit, map, imap_unordered, as_completed (the part of the jobs
issue built so far)."""

from __future__ import annotations

import itertools
import os
import signal

import psutil
import pytest

from actors import Actor, ActorCrashedError
from runtime import ActorSystem, Stage


def test_submit_runs_lambdas_and_keeps_exception_types(system: ActorSystem) -> None:
    assert system.submit(lambda x, y: x + y, 2, y=3).result(timeout=10) == 5
    with pytest.raises(ZeroDivisionError) as info:
        system.submit(lambda: 1 / 0).result(timeout=10)
    assert "RemoteTraceback" in type(info.value.__cause__).__name__
    with pytest.raises(TypeError, match="callable"):
        system.submit(42)  # type: ignore[arg-type]


def test_map_is_ordered_and_complete(system: ActorSystem) -> None:
    assert list(system.map(lambda x: x * x, range(10_000))) == [x * x for x in range(10_000)]
    assert list(system.map(str, range(7), chunksize=3)) == [str(x) for x in range(7)]
    assert list(system.map(str, [])) == []


def test_imap_unordered_and_as_completed_return_everything(system: ActorSystem) -> None:
    assert sorted(system.imap_unordered(abs, range(-500, 500), chunksize=7)) == sorted(
        abs(x) for x in range(-500, 500)
    )
    futures = [system.submit(pow, 2, i) for i in range(20)]
    assert sorted(f.result() for f in system.as_completed(futures, timeout=30)) == [
        2**i for i in range(20)
    ]


def test_an_endless_input_is_read_lazily_and_stopped_early(system: ActorSystem) -> None:
    pulled = itertools.count()
    source = (next(pulled) for _ in itertools.count())  # counts what map has read
    results = system.map(lambda x: x + 1, source, chunksize=10)
    assert [next(results) for _ in range(25)] == list(range(1, 26))
    results.close()
    assert next(pulled) <= 25 + 4 * 2 * 10 + 10  # a bounded window, not the whole stream


def test_return_exceptions_and_progress(system: ActorSystem) -> None:
    out = list(system.map(lambda x: 1 / x, [1, 0, 2], chunksize=1, return_exceptions=True))
    assert out[0] == 1.0 and isinstance(out[1], ZeroDivisionError) and out[2] == 0.5
    with pytest.raises(ZeroDivisionError):
        list(system.map(lambda x: 1 / x, [1, 0, 2]))
    seen: list[tuple[int, int | None]] = []
    list(system.map(str, range(100), chunksize=10, progress=lambda d, t: seen.append((d, t))))
    assert seen[-1] == (100, 100) and len(seen) == 10


def test_a_poison_task_fails_after_its_retries(system: ActorSystem) -> None:
    with pytest.raises(ActorCrashedError, match="exited with code 9"):
        system.submit(os._exit, 9).result(timeout=60)
    assert system.submit(abs, -1).result(timeout=10) == 1  # and the system goes on


def test_map_of_100k_items_while_workers_are_killed_is_exactly_once_in_order(
    system: ActorSystem,
) -> None:
    def slow_square(x: int) -> int:
        total = 0
        for i in range(200):  # enough work that the kills land mid-map
            total += i
        return x * x + total - total

    supervisor = psutil.Process(system._link.proc.pid)
    results = []
    kills_at = {10_000, 40_000, 70_000}
    for index, value in enumerate(
        system.map(slow_square, range(100_000), chunksize=500, retries=10)
    ):
        results.append(value)
        if index in kills_at:
            victim = supervisor.children()[index % 2]
            os.kill(victim.pid, signal.SIGKILL)
    assert results == [x * x for x in range(100_000)]


class Doubler(Actor):
    def double(self, x: int) -> int:
        return 2 * x


def test_a_pipeline_of_functions_and_actors_is_ordered(system: ActorSystem) -> None:
    actors = [system.spawn(Doubler) for _ in range(3)]
    stages = [
        Stage(lambda x: x + 1, parallelism=4, chunksize=10),
        Stage([a.double for a in actors], parallelism=6),  # fan-out over 3 actors
        str,
    ]
    assert list(system.pipeline(range(1000), *stages)) == [str(2 * (x + 1)) for x in range(1000)]
    unordered = system.pipeline(range(100), lambda x: x * 3, ordered=False)
    assert sorted(unordered) == [x * 3 for x in range(100)]


def test_a_pipeline_pulls_only_what_its_stages_have_room_for(system: ActorSystem) -> None:
    pulled = itertools.count()
    source = (next(pulled) for _ in itertools.count())
    out = system.pipeline(source, Stage(abs, parallelism=2), Stage(str, parallelism=2))
    assert [next(out) for _ in range(10)] == [str(x) for x in range(10)]
    out.close()
    assert next(pulled) <= 10 + 2 + 2 + 2  # what the windows hold, not the stream
