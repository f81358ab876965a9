"""Pipelines streamed worker to worker (runtime.worker._stages): results, order,
errors, early close, backpressure, actor stages, and a worker killed mid-stream.

Each behaviour is checked on the three paths ``DOVECOTE_PIPELINE`` selects where
it matters: the default (a chunk's stages chained on a free worker, sent on to a
peer when work waits), ``hops`` (every function stage a hop to another worker)
and ``driver`` (the former path, each stage a map through the driver).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from actors import Actor, SerializationError
from runtime import ActorSystem, Stage

PATHS = ["", "hops", "driver"]


@pytest.fixture(params=PATHS, ids=["chained", "hops", "driver"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DOVECOTE_PIPELINE", request.param)
    yield request.param


class Scaler(Actor):
    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.seen = 0

    def scale(self, x: int) -> int:
        self.seen += 1
        if x == -1:
            raise KeyError("no scale for -1")
        return self.factor * x

    def count(self) -> int:
        return self.seen


def test_three_stages_equal_a_local_computation(system: ActorSystem, path: str) -> None:
    stages = [
        Stage(lambda x: x + 1, parallelism=4, chunksize=16),
        Stage(lambda x: x * 3, parallelism=2),
        Stage(str, parallelism=3),
    ]
    expected = [str((x + 1) * 3) for x in range(2000)]  # 125 chunks of the first stage
    assert list(system.pipeline(range(2000), *stages)) == expected
    assert sorted(system.pipeline(range(2000), *stages, ordered=False), key=int) == expected
    assert list(system.pipeline([], *stages)) == []
    assert list(system.pipeline(range(5))) == [0, 1, 2, 3, 4]  # no stages: the source


def test_an_item_that_raises_surfaces_where_its_result_would_be(
    system: ActorSystem, path: str
) -> None:
    out = system.pipeline(
        range(100), Stage(lambda x: x, chunksize=10), lambda x: 1 // (x - 42), str
    )
    taken: list[str] = []
    with pytest.raises(ZeroDivisionError) as info:
        taken.extend(out)
    assert "RemoteTraceback" in type(info.value.__cause__).__name__
    assert taken == [str(1 // (x - 42)) for x in range(len(taken))]
    if path != "driver":  # its chunk's turn: 40 to 49 (the driver's maps raise ahead)
        assert len(taken) == 40
    assert list(system.pipeline(range(3), abs)) == [0, 1, 2]  # and the system goes on


def test_an_unpicklable_item_is_named(system: ActorSystem) -> None:
    with pytest.raises(SerializationError, match="input item 1"):
        list(system.pipeline([1, threading.Lock(), 3], abs))


def test_closing_early_stops_reading_the_source(system: ActorSystem, path: str) -> None:
    pulled = itertools.count()
    source = (next(pulled) for _ in itertools.count())  # counts what was read
    out = system.pipeline(source, Stage(abs, parallelism=2), Stage(str, parallelism=2), str)
    assert [next(out) for _ in range(10)] == [str(x) for x in range(10)]
    out.close()
    # What the windows hold (2 + 2 + 8 chunks of one item), not the stream.
    assert next(pulled) <= 10 + 2 + 2 + 8 + 1
    assert list(system.pipeline(range(3), abs, str)) == ["0", "1", "2"]


def test_the_source_is_read_only_as_chunks_come_back(system: ActorSystem, path: str) -> None:
    pulled = [0]
    largest_lead = [0]
    taken = [0]

    def source() -> Iterator[int]:
        for x in range(2000):
            pulled[0] += 1
            largest_lead[0] = max(largest_lead[0], pulled[0] - taken[0])
            yield x

    stages = [Stage(lambda x: x + 1, parallelism=2, chunksize=10), Stage(abs, parallelism=2)]
    for value in system.pipeline(source(), *stages):
        taken[0] += 1
        assert value == taken[0]
    assert taken[0] == 2000
    assert largest_lead[0] <= (2 + 2 + 1) * 10  # the window of 4 chunks, and the one read


def test_actor_stages_are_called_from_the_workers(system: ActorSystem, path: str) -> None:
    scalers = [system.spawn(Scaler, 10, worker=i % 2) for i in range(3)]
    stages = [
        Stage([s.scale for s in scalers], parallelism=4),  # first: a worker calls them
        Stage(lambda x: x + 1, chunksize=5),
        Stage(scalers[0].scale),
        str,
    ]
    assert list(system.pipeline(range(500), *stages, ordered=True)) == [
        str(10 * (10 * x + 1)) for x in range(500)
    ]
    counts = [s.count().result(timeout=10) for s in scalers]
    assert sum(counts) == 1000 and all(counts[1:])  # spread over the three
    with pytest.raises(KeyError, match="no scale for -1"):
        list(system.pipeline([1, 2, -1, 4], abs, lambda x: -x, scalers[1].scale))


def test_a_worker_killed_mid_pipeline_loses_and_repeats_nothing(
    system: ActorSystem, path: str, tmp_path: os.PathLike[str]
) -> None:
    marker = os.path.join(os.fspath(tmp_path), "killed")

    def kill_once(x: int) -> int:
        if x == 1500:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return x  # the re-sent chunk, on the new worker
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    stages = [Stage(lambda x: x * 2, parallelism=4, chunksize=50), Stage(kill_once), str]
    out = list(system.pipeline(range(5000), *stages))  # 100 chunks: the kill is mid-stream
    assert out == [str(2 * x) for x in range(5000)]
    assert os.path.exists(marker)  # the kill did happen
    assert list(system.pipeline(range(100), abs, str)) == [str(x) for x in range(100)]


def test_an_unknown_path_is_refused(system: ActorSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOVECOTE_PIPELINE", "sideways")
    with pytest.raises(ValueError, match="sideways"):
        system.pipeline(range(3), abs)
