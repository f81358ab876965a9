"""``concurrent.futures.Executor`` over an actor system's workers.

``DovecoteExecutor`` drops into code written for ``ProcessPoolExecutor``: the
same ``submit``, ``map`` and ``shutdown``, a context manager, and futures that
``asyncio`` can await (``loop.run_in_executor``). Its tasks are the system's
stateless tasks: run at least once, their results seen once, re-sent if a
worker dies. Made with ``max_workers`` it owns a system of its own, shut down
with it; ``ActorSystem.executor()`` lends the system's workers instead.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from actors._future import ActorFuture

if TYPE_CHECKING:
    from runtime.driver._system import ActorSystem

__all__ = ["DovecoteExecutor"]


class DovecoteExecutor(concurrent.futures.Executor):
    """``DovecoteExecutor(max_workers=None, **options)`` starts an ``ActorSystem``
    of its own (``options`` as ``ActorSystem``'s) and shuts it down with itself;
    ``system.executor()`` uses that system's workers and leaves it running."""

    def __init__(
        self, max_workers: int | None = None, *, system: ActorSystem | None = None, **options: Any
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if system is None:
            from runtime.driver._system import ActorSystem

            system, self._owned = ActorSystem(max_workers, **options), True
        else:
            self._owned = False
        self.system = system
        self._lock = threading.Lock()
        self._futures: set[ActorFuture[Any]] = set()  # submitted, not yet done
        self._closed = False
        atexit.register(self.shutdown)  # as the stdlib's: submitted work is waited for

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ActorFuture[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self.system.submit(fn, *args, **kwargs)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``fn(*args)`` for the items of ``iterables`` taken together, as the
        stdlib's: every call is submitted now, results come in order, ``timeout``
        counts from this call, and a call that raised raises at its place."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        deadline = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in zip(*iterables, strict=False)]
            return _results(futures, deadline, False, self._abandon)
        chunks = _chunks(zip(*iterables, strict=False), chunksize)
        futures = [self.submit(functools.partial(_apply, fn), chunk) for chunk in chunks]
        return _results(futures, deadline, True, self._abandon)

    def _abandon(self, futures: list[ActorFuture[Any]]) -> None:
        self.system._transport.cancels.abandon(futures)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions. ``cancel_futures`` cancels the calls that have not
        started; ``wait`` waits for the others. An executor made with
        ``max_workers`` then shuts its system down."""
        with self._lock:
            self._closed = True
            pending = list(self._futures)
        atexit.unregister(self.shutdown)
        if cancel_futures:  # each worker drops those it has not started, and says so
            self._abandon(pending)
        if wait:
            concurrent.futures.wait(pending)
        if self._owned:
            self.system.shutdown()

    def __enter__(self) -> DovecoteExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)


def _apply(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """In a worker: one chunk of ``map``; an error fails the chunk, as the stdlib's."""
    return [fn(*args) for args in chunk]


def _chunks(items: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _results(
    futures: list[ActorFuture[Any]],
    deadline: float | None,
    flat: bool,
    abandon: Callable[[list[ActorFuture[Any]]], None],
) -> Iterator[Any]:
    """Yield each future's result in order, forgetting it once yielded; on an
    error, a timeout or an early close, the calls not yet started are cancelled."""
    futures.reverse()
    try:
        while futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not flat:  # nothing here keeps what was yielded, nor its future
                yield futures.pop().result(left)
                continue
            chunk = futures.pop().result(left)
            chunk.reverse()
            while chunk:
                yield chunk.pop()
    finally:
        abandon(futures)  # as the stdlib's cancel: without waiting for the workers
