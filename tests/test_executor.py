"""DovecoteExecutor against the behaviour CPython's executor tests check
(Lib/test/test_concurrent_futures: executor.py, test_shutdown.py, test_wait.py,
test_as_completed.py), ported to dovecote where they apply."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import ActorSystem, DovecoteExecutor


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class Thing:
    def method(self) -> None:
        pass


def make_thing(_: int) -> Thing:
    return Thing()


@pytest.fixture
def executor(system: ActorSystem) -> Iterator[DovecoteExecutor]:
    with system.executor() as ex:
        yield ex


def test_submit_and_keywords(executor: DovecoteExecutor) -> None:
    assert executor.submit(pow, 2, 8).result(timeout=10) == 256
    assert executor.submit(mul, 2, y=8).result(timeout=10) == 16
    got = executor.submit(capture, 1, self=2, fn=3).result(timeout=10)
    assert got == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        executor.submit(fn=capture, arg=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        executor.submit(arg=1)  # type: ignore[call-arg]


def test_map_takes_several_iterables_and_chunks(executor: DovecoteExecutor) -> None:
    expected = list(map(pow, range(10), range(10)))
    assert list(executor.map(pow, range(10), range(10))) == expected
    assert list(executor.map(pow, range(10), range(10), chunksize=3)) == expected
    assert list(executor.map(pow, range(10), range(5))) == expected[:5]  # shortest wins
    with pytest.raises(ValueError):
        executor.map(pow, range(3), range(3), chunksize=0)


def test_map_raises_at_the_failing_item(executor: DovecoteExecutor) -> None:
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (1 // 3, 1 % 3)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout_counts_from_the_call(executor: DovecoteExecutor) -> None:
    results = []
    with pytest.raises(TimeoutError):
        for value in executor.map(time.sleep, [0, 0, 2], timeout=1.5):
            results.append(value)
    assert results == [None, None]


def test_shutdown_right_after_map_does_not_hang(system: ActorSystem) -> None:
    executor = system.executor()
    executor.map(str, [2] * (system.workers + 1))
    executor.shutdown()


def test_no_stale_reference_to_a_discarded_future(executor: DovecoteExecutor) -> None:
    thing = Thing()
    collected = threading.Event()
    ref = weakref.ref(thing, lambda _: collected.set())
    executor.submit(thing.method)  # the future is dropped at once
    del thing
    deadline = time.monotonic() + 10
    while not collected.is_set() and time.monotonic() < deadline:
        collected.wait(0.1)  # the reply drops the executor's own reference
    assert collected.is_set() and ref() is None


def test_max_workers_must_be_positive() -> None:
    for number in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            DovecoteExecutor(max_workers=number)


def test_map_keeps_no_reference_to_what_it_yielded(executor: DovecoteExecutor) -> None:
    for thing in executor.map(make_thing, range(10)):
        ref = weakref.ref(thing)
        del thing
        assert ref() is None


# -- shutdown (test_shutdown.py) ------------------------------------------------------


def test_submit_after_shutdown_raises(system: ActorSystem) -> None:
    executor = system.executor()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 5)


def test_shutdown_waits_for_what_was_submitted(system: ActorSystem) -> None:
    executor = system.executor()
    futures = [executor.submit(time.sleep, 0.02) for _ in range(20)]
    executor.shutdown()
    assert all(f.done() for f in futures)
    for future in futures:
        assert future.result(timeout=0) is None


def test_shutdown_cancel_futures_cancels_what_has_not_started(system: ActorSystem) -> None:
    executor = system.executor()
    futures = [executor.submit(time.sleep, 0.1) for _ in range(50)]
    futures[0].result(timeout=10)  # the work has begun: some calls run now
    executor.shutdown(cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    others = [f for f in futures if not f.cancelled()]
    assert len(cancelled) > 20  # two workers: most never started
    assert others, "those already running finish"
    for future in others:
        assert future.done() and future.exception() is None


def test_shutdown_after_a_cancelled_submit_does_not_hang(system: ActorSystem) -> None:
    executor = system.executor()
    executor.submit(int).result(timeout=10)
    executor.submit(int).cancel()
    executor.shutdown(wait=True)


def test_shutdown_without_waiting_leaves_the_work_to_finish(system: ActorSystem) -> None:
    executor = system.executor()
    results = executor.map(abs, range(-5, 5))
    executor.shutdown(wait=False)
    assert list(results) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert system.submit(abs, -1).result(timeout=10) == 1  # the system still runs


def test_own_system_ends_with_the_executor() -> None:
    with DovecoteExecutor(max_workers=2) as executor:
        assert list(executor.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        system = executor.system
    with pytest.raises(Exception, match="after shutdown"):
        system.submit(abs, 1)


def _run(script: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_interpreter_exit_waits_for_submitted_work() -> None:
    done = _run(
        """
        import sys, time
        from runtime import DovecoteExecutor

        def sleep_and_print(t, msg):
            time.sleep(t)
            print(msg)
            sys.stdout.flush()

        if __name__ == "__main__":
            executor = DovecoteExecutor(2)
            executor.submit(sleep_and_print, 0.5, "apple")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(") apple")  # forwarded by the driver, prefixed
    assert done.stdout.strip().startswith("(task w")
    assert "Traceback" not in done.stderr


def test_submit_after_interpreter_shutdown_raises() -> None:
    done = _run(
        """
        import atexit
        from runtime import DovecoteExecutor

        @atexit.register
        def run_last():
            try:
                executor.submit(id, None)
            except RuntimeError as exc:
                print("runtime-error:", exc)

        if __name__ == "__main__":
            executor = DovecoteExecutor(2)
            executor.submit(id, 42).result()
        """
    )
    assert done.stdout.strip() == "runtime-error: cannot schedule new futures after shutdown"


# -- the rest of the concurrent.futures world --------------------------------------------


def test_wait_and_as_completed_take_its_futures(executor: DovecoteExecutor) -> None:
    futures = [executor.submit(mul, i, 2) for i in range(10)]
    done, not_done = concurrent.futures.wait(futures, timeout=10)
    assert len(done) == 10 and not not_done
    results = {f.result() for f in concurrent.futures.as_completed(futures, timeout=10)}
    assert results == {i * 2 for i in range(10)}
    slow = executor.submit(time.sleep, 0.5)
    done, not_done = concurrent.futures.wait(
        [slow, futures[0]], return_when=concurrent.futures.FIRST_COMPLETED, timeout=10
    )
    assert futures[0] in done


def test_run_in_executor_from_asyncio(executor: DovecoteExecutor) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(executor, pow, 2, n) for n in range(5)]
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main()) == [1, 2, 4, 8, 16]


def test_errors_keep_their_type(executor: DovecoteExecutor) -> None:
    future = executor.submit(divmod, 1, 0)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=10)
    assert isinstance(future.exception(), ZeroDivisionError)
