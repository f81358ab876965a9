"""Correctness, futures and tasks: concurrent.futures semantics (issue
"Correctness", items 9-13). Each test failed before its fix."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors import ActorCrashedError, SerializationError
from actors._future import ActorFuture, complete_all
from runtime import ActorSystem
from tests.helpers import (
    Probe,
    Recorder,
    die_on_two,
    hold_task,
    touch_file,
    wait_for_path,
)


class Box:
    """A result that can be watched with a weakref."""

    def __init__(self, n: int) -> None:
        self.n = n


def _hold_if_given(gate: tuple[str, str] | None) -> str | None:
    """None at once; given a gate (started, release), holds its worker until released."""
    return None if gate is None else hold_task(*gate)


def test_a_finished_tasks_result_does_not_wait_for_a_later_task(tmp_path: Path) -> None:
    with ActorSystem(workers=1) as system:
        release = str(tmp_path / "release")
        first = system.submit(abs, -1)
        later = system.submit(hold_task, str(tmp_path / "started"), release)  # same batch, likely
        try:
            assert first.result(timeout=2) == 1  # came with the later one's, when it ended
        finally:
            touch_file(release)
        assert later.result(timeout=10) == "held"
        gate = (str(tmp_path / "started-2"), str(tmp_path / "release-2"))
        results = system.map(_hold_if_given, [None, None, gate], timeout=1.5)
        try:
            assert [next(results), next(results)] == [None, None]
            with pytest.raises(TimeoutError):
                next(results)
        finally:
            touch_file(gate[1])


def test_a_reply_leaves_while_a_long_actor_call_runs(tmp_path: Path) -> None:
    with ActorSystem(workers=1) as system:
        probe, other = system.spawn(Probe), system.spawn(Probe)
        quick = probe.add(1)
        release = str(tmp_path / "release")
        held = other.hold(str(tmp_path / "started"), release)
        try:
            assert quick.result(timeout=5) == 1
        finally:
            touch_file(release)
        assert held.result(timeout=10) == "held"


def test_order_holds_while_the_keeper_reads_for_the_loop() -> None:
    with ActorSystem(workers=1) as system:
        recorders = [system.spawn(Recorder), system.spawn(Recorder)]
        calls = []
        for i in range(160):  # a stream of small messages, arriving while calls run
            calls.append(recorders[i % 2].record(i))
            if i >= 3:
                calls[i - 3].result(timeout=30)
        for call in calls:
            call.result(timeout=30)
        logs = [r.log().result(timeout=10) for r in recorders]
        assert logs == [list(range(0, 160, 2)), list(range(1, 160, 2))]


@contextlib.contextmanager
def _holding(
    call: Callable[[str, str], concurrent.futures.Future[str]], tmp_path: Path
) -> Iterator[concurrent.futures.Future[str]]:
    """A call that holds its worker until the block ends; it must then complete."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    held = call(started, release)
    wait_for_path(started)
    try:
        yield held
    finally:
        touch_file(release)
    assert held.result(timeout=10) == "held"


def test_a_running_call_cannot_be_cancelled(tmp_path: Path, system: ActorSystem) -> None:
    with _holding(system.spawn(Probe).hold, tmp_path) as held:
        assert held.cancel() is False
        assert held.running() and not held.cancelled()


def test_a_cancelled_queued_call_never_runs(tmp_path: Path, system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    with _holding(probe.hold, tmp_path):
        queued = probe.add(100)
        assert queued.cancel() is True
        assert queued.cancelled() and queued.done()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=1)
    assert probe.get().result(timeout=10) == 0  # add(100) was dropped by the worker


def test_a_cancelled_queued_task_never_runs(tmp_path: Path) -> None:
    with ActorSystem(workers=1) as system:
        marker = tmp_path / "ran"
        with _holding(functools.partial(system.submit, hold_task), tmp_path):
            queued = system.submit(touch_file, str(marker))
            assert queued.cancel() is True
        assert system.submit(abs, -2).result(timeout=10) == 2  # after the cancelled one
        assert not marker.exists()


def test_result_raises_at_once_when_another_thread_cancels(
    tmp_path: Path, system: ActorSystem
) -> None:
    probe = system.spawn(Probe)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def wait(queued: concurrent.futures.Future[int]) -> None:
        waiting.set()
        try:
            queued.result(timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    with _holding(probe.hold, tmp_path):
        queued = probe.add(1)
        waiter = threading.Thread(target=wait, args=(queued,))
        waiter.start()
        try:
            assert waiting.wait(timeout=10)
            assert queued.cancel() is True
            waiter.join(timeout=5)  # held for 30 s otherwise
            assert not waiter.is_alive()
            assert [type(e) for e in outcome] == [concurrent.futures.CancelledError]
        finally:
            queued.cancel()
            waiter.join(timeout=30)


def test_wait_and_as_completed_count_cancelled_futures(tmp_path: Path, system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    with _holding(probe.hold, tmp_path):
        queued = probe.add(1)
        assert queued.cancel()
        done, not_done = concurrent.futures.wait([queued], timeout=5)
        assert (done, not_done) == ({queued}, set())
        assert list(concurrent.futures.as_completed([queued], timeout=5)) == [queued]


def test_as_completed_yields_each_future_once(system: ActorSystem) -> None:
    future = system.submit(abs, -1)
    assert list(system.as_completed(itertools.repeat(future, 3), timeout=10)) == [future]


def test_as_completed_keeps_no_reference_to_what_it_yielded(system: ActorSystem) -> None:
    futures = [system.submit(Box, i) for i in range(3)]
    for future in futures:
        future.result(timeout=10)
    watched = [weakref.ref(f) for f in futures]
    completed = system.as_completed(futures, timeout=10)
    del futures, future
    first = next(completed)
    index = [w() for w in watched].index(first)
    del first
    gc.collect()
    assert watched[index]() is None
    assert len(list(completed)) == 2


def test_map_keeps_no_reference_to_what_it_yielded(system: ActorSystem) -> None:
    results = system.map(Box, range(4), chunksize=4)
    first = next(results)
    watched = weakref.ref(first)
    del first
    gc.collect()
    assert watched() is None  # the chunk's list held it
    assert [box.n for box in results] == [1, 2, 3]


def test_an_unpicklable_task_argument_is_named(system: ActorSystem) -> None:
    with pytest.raises(SerializationError) as info:
        system.submit(abs, threading.Lock())
    message = str(info.value)
    assert message.startswith("submit(abs): cannot pickle argument 0 (lock)")
    assert "tasks" not in message and "#-1" not in message
    with pytest.raises(
        SerializationError, match=r"map\(abs\): cannot pickle input item 3 \(lock\)"
    ):
        list(system.map(abs, [1, 2, 3, threading.Lock()], chunksize=2))


def test_map_without_retries_yields_a_crash_in_place_of_each_lost_item() -> None:
    with ActorSystem(workers=1) as system:
        results = list(
            system.map(die_on_two, range(4), chunksize=1, retries=0, return_exceptions=True)
        )
        assert len(results) == 4
        assert isinstance(results[2], ActorCrashedError)
        for index, result in enumerate(results):
            assert result == index or isinstance(result, ActorCrashedError)
        assert system.submit(abs, -3).result(timeout=20) == 3  # and the worker was replaced


def test_a_batch_of_replies_completes_in_order_and_spares_a_cancelled_future() -> None:
    """``complete_all``: one lock for a batch's values, the stdlib's semantics kept."""
    shared = threading.Condition()
    futures = [ActorFuture(f"call {i}", None, shared) for i in range(4)]
    own = ActorFuture("barrier")  # a condition of its own
    futures[1].cancel()
    seen: list[str] = []
    for future in (*futures, own):
        future.add_done_callback(lambda f: seen.append(f.label))
    seen.clear()  # futures[1]'s callback ran at once: it was cancelled already
    complete_all(shared, [(futures[0], "a"), (futures[1], "b"), (futures[2], "c"), (own, "d")])
    assert [f.done() for f in futures] == [True, True, True, False]
    assert futures[1].cancelled() and futures[0].result() == "a" and own.result() == "d"
    assert seen == ["call 0", "call 2", "barrier"]


def test_a_future_without_waiters_or_callbacks_keeps_no_list_and_still_works() -> None:
    """ActorFuture makes Future's two lists on first use; the stdlib's functions that
    use them (wait, as_completed, callbacks) see no difference."""
    shared = threading.Condition()
    plain, waited, called = (ActorFuture(name, None, shared) for name in "abc")
    seen: list[object] = []
    called.add_done_callback(lambda f: seen.append(f.result()))
    assert plain._waiting is None and plain._callbacks is None
    _, not_done = concurrent.futures.wait([waited], timeout=0)  # installs, then removes
    assert not_done == {waited} and waited._waiting == []
    complete_all(shared, [(plain, 1), (waited, 2)])
    called.set_result(3)
    assert seen == [3]
    done, _ = concurrent.futures.wait([plain, waited, called], timeout=10)
    assert {f.result() for f in done} == {1, 2, 3}
    assert sorted(f.result() for f in concurrent.futures.as_completed([plain, waited])) == [1, 2]
    assert plain._callbacks is None
    assert repr(plain) == "<ActorFuture a: returned int>"


def test_a_callback_added_once_done_runs_at_once_and_a_raising_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ActorFuture.add_done_callback takes its lock once; it keeps Future's rules: a
    callback added to a done future runs at once, in the adding thread, and one
    that raises is logged by concurrent.futures' logger, the others still run."""
    future: ActorFuture[int] = ActorFuture("f")
    seen: list[object] = []

    def boom(_: object) -> None:
        raise ValueError("callback failed")

    future.add_done_callback(boom)
    future.add_done_callback(lambda f: seen.append(("before", f.result())))
    assert seen == []
    future.set_result(7)
    assert seen == [("before", 7)]
    future.add_done_callback(lambda f: seen.append(("after", threading.get_ident())))
    future.add_done_callback(boom)
    assert seen == [("before", 7), ("after", threading.get_ident())]
    errors = [r for r in caplog.records if r.name == "concurrent.futures"]
    assert len(errors) == 2 and all("callback failed" in r.exc_text for r in errors)
