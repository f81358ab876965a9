"""Stateless tasks: ``submit``, ``map``, ``imap_unordered`` and ``as_completed``.

A task is a call to a target every worker answers itself (``TASK_ACTOR``): the
function travels pickled (cloudpickle: lambdas and ``__main__`` functions work)
and runs in the worker's loop. The submitting process owns its tasks: it picks
the worker with the fewest of its tasks in flight (so a slow worker gets less),
and the transport re-sends the tasks a dead worker held (``retry`` in
``Transport.fail_slot``): execution is at-least-once, and each result reaches
the caller once. A task that kills its worker every time fails after its
retries with ActorCrashedError.

``map`` pulls its input lazily and keeps a bounded window of chunks in flight,
so an endless generator maps in bounded memory; closing the iterator early
stops it. Results come in input order (``imap_unordered``: completion order).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from actors._future import ActorFuture
from actors._ref import ActorRef
from runtime import _protocol as proto
from runtime._transport import Transport

__all__ = ["TASK_ACTOR", "TaskFailure", "Tasks", "run_chunk"]

TASK_ACTOR = -1  # answered by every worker: "run" one function, or a "chunk" of items
DEFAULT_RETRIES = 3  # re-sends after a worker death
WINDOW_PER_WORKER = 4  # chunks in flight per worker in map


class TaskFailure:
    """One item of a chunk that raised: its pickled error. Internal."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskFailure, (self.blob,))


def run_chunk(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], bool]:
    """In the worker: apply ``fn`` to each item; a failure does not stop the rest.
    The flag says whether any item failed, so the caller can skip looking."""
    out: list[Any] = []
    rest = iter(items)
    failed = False
    while True:
        try:
            out.extend(map(fn, rest))  # C speed; keeps what came before a failure
            return out, failed
        except BaseException as exc:  # SystemExit too; the failed item is consumed: go on
            out.append(TaskFailure(proto.encode_error(exc)))
            failed = True


class Tasks:
    """The task API of one driver. Internal: ActorSystem exposes it."""

    def __init__(self, transport: Transport, workers: int) -> None:
        self.transport = transport
        self.workers = workers
        self.inflight = [0] * workers
        self._refs: dict[tuple[int, int], ActorRef] = {}

    def _ref(self, slot: int, retries: int) -> ActorRef:
        """The task target of a worker; its retry table re-sends tasks after a crash."""
        ref = self._refs.get((slot, retries))
        if ref is None:
            table = (("run", retries), ("chunk", retries)) if retries else ()
            ref = ActorRef(self.transport.system_id, TASK_ACTOR, slot, "tasks", table)
            self._refs[slot, retries] = ref
        return ref

    def _send(self, method: str, args: tuple[Any, ...], retries: int) -> ActorFuture[Any]:
        slot = min(range(self.workers), key=self.inflight.__getitem__)  # least loaded
        self.inflight[slot] += 1
        future = self.transport.call(self._ref(slot, retries), method, args, {})
        concurrent.futures.Future.add_done_callback(future, lambda _: self._done(slot))
        return future

    def _done(self, slot: int) -> None:
        self.inflight[slot] -= 1

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int = DEFAULT_RETRIES,
    ) -> ActorFuture[Any]:
        if not callable(fn):
            raise TypeError(f"submit() takes a callable, not {fn!r}")
        return self._send("run", (fn, args, kwargs), retries)

    def map(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        ordered: bool = True,
        window: int | None = None,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        return_exceptions: bool = False,
        progress: bool | Callable[[int, int | None], None] = False,
    ) -> Iterator[Any]:
        if not callable(fn):
            raise TypeError(f"map() takes a callable, not {fn!r}")
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        size = chunksize or _auto_chunksize(total, self.workers)
        if size < 1:
            raise ValueError(f"chunksize={chunksize!r} must be >= 1")
        report = _progress(progress, total)
        chunks = _chunked(iter(iterable), size)
        flying: deque[ActorFuture[Any]] = deque()
        limit = window or WINDOW_PER_WORKER * self.workers
        done = 0
        try:
            while True:
                while len(flying) < limit:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    flying.append(self._send("chunk", (fn, chunk), retries))
                if not flying:
                    return
                future = flying.popleft() if ordered else self._first_done(flying, timeout)
                values, failed = future.result(timeout)
                if failed:
                    for value in values:
                        yield _outcome(value, return_exceptions)
                else:
                    yield from values  # the common case: no per-item work here
                done += len(values)
                report(done)
        finally:
            for future in flying:  # stopped early: nobody wants these any more
                future.cancel()

    def _first_done(
        self, window: deque[ActorFuture[Any]], timeout: float | None
    ) -> ActorFuture[Any]:
        future = next(as_completed(self.transport, list(window), timeout))
        window.remove(future)
        return future


def as_completed(
    transport: Transport, futures: Iterable[ActorFuture[Any]], timeout: float | None = None
) -> Iterator[ActorFuture[Any]]:
    """Yield ``futures`` as they complete; the waiting thread drives the sockets."""
    pending = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        ready = [f for f in pending if f.settled()]
        if not ready:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{len(pending)} futures did not complete within {timeout} s")
            transport.wait_any(pending, left)
            continue
        for future in ready:
            pending.remove(future)
            yield future


def _outcome(value: Any, return_exceptions: bool) -> Any:
    if type(value) is not TaskFailure:
        return value
    error = proto.decode_error(value.blob)
    if return_exceptions:
        return error
    raise error


def _chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _auto_chunksize(total: int | None, workers: int) -> int:
    """As multiprocessing.Pool: about four chunks per worker (at most 100,000 items
    each); 64 for a stream of unknown length."""
    if total is None:
        return 64
    return max(1, min(math.ceil(total / (WINDOW_PER_WORKER * workers)), 100_000))


def _progress(
    progress: bool | Callable[[int, int | None], None], total: int | None
) -> Callable[[int], None]:
    if callable(progress):
        return lambda done: progress(done, total)
    if progress and sys.stderr.isatty():
        return lambda done: _bar(done, total)
    return lambda done: None


def _bar(done: int, total: int | None) -> None:
    if total:
        filled = 30 * done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(f"\r{done} done")
    sys.stderr.flush()
