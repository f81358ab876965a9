"""Stateless tasks: ``submit``, ``map``, ``imap_unordered`` and ``as_completed``.

A task is a call to a target every worker answers itself (``wire.TASK_ACTOR``): the
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

import collections
import concurrent.futures
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

from actors._errors import SerializationError
from actors._future import ActorFuture, describe
from actors._ref import ActorRef
from runtime import observe, wire
from runtime.client import Transport

__all__ = ["DEFAULT_RETRIES", "MapResults", "SendChunk", "Tasks", "as_completed"]

WaitAny = Callable[[list[ActorFuture[Any]], "float | None"], None]
SendChunk = Callable[[list[Any], int], ActorFuture[Any]]  # (chunk, its first item's index)
DEFAULT_RETRIES = 3  # re-sends after a worker death
WINDOW_PER_WORKER = 4  # chunks in flight per worker in map


class Tasks:
    """The task API of one driver. Internal: ActorSystem exposes it."""

    def __init__(
        self,
        transport: Transport,
        system_id: str,
        slots: Callable[[], Sequence[int]],
        wait_any: WaitAny,
    ) -> None:
        self.transport = transport
        self.system_id = system_id
        self.wait_any = wait_any
        self.slots = slots  # the workers now: a cluster's change as nodes come and go
        self.inflight: dict[int, int] = {}
        self._refs: dict[tuple[int, int], ActorRef] = {}

    def _ref(self, slot: int, retries: int) -> ActorRef:
        """The task target of a worker; its retry table re-sends tasks after a crash."""
        ref = self._refs.get((slot, retries))
        if ref is None:
            methods = ("run", "chunk", wire.STAGE_METHOD)  # a pipeline's first hop too
            table = tuple((method, retries) for method in methods) if retries else ()
            ref = ActorRef(self.system_id, wire.TASK_ACTOR, slot, "tasks", table)
            self._refs[slot, retries] = ref
        return ref

    def _send(
        self, method: str, args: tuple[Any, ...], retries: int, what: tuple[str, Any]
    ) -> ActorFuture[Any]:
        inflight = self.inflight
        slot = min(self.slots(), key=lambda s: inflight.get(s, 0))  # the least loaded
        future = self.transport.call(self._ref(slot, retries), method, args, {}, what)
        inflight[slot] = inflight.get(slot, 0) + 1
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
        what = ("submit", fn)  # labelled lazily: see ``describe``
        try:
            return self._send("run", (fn, args, kwargs), retries, what)
        except SerializationError as exc:
            named = [("the function", fn), *wire.named_arguments(args, kwargs)]
            raise _unpicklable(what, named, exc) from exc

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
    ) -> MapResults:
        """The results, item by item at C speed (a chunk's are one C iterator)."""
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        chunks, limit = self.chunks(fn, iterable, chunksize, window)
        report = observe.progress_for(progress, total)
        send = self.chunk_sender("chunk", (fn,), retries, ("map", fn))
        steps = self.chunk_results(send, chunks, limit, ordered, timeout, return_exceptions)
        return MapResults.over(steps, report)

    def chunk_results(
        self,
        send: SendChunk,
        chunks: Iterator[list[Any]],
        limit: int,
        ordered: bool,
        timeout: float | None,
        return_exceptions: bool,
    ) -> Iterator[tuple[Iterator[Any], int]]:
        """Each chunk's results as an iterator that forgets what it yields, and the
        chunk's length; chunks kept in flight up to ``limit``."""
        flying: deque[tuple[ActorFuture[Any], int]] = deque()  # (chunk, its length)
        sent = 0
        try:
            while True:
                sent = self._fill(flying, limit, chunks, send, sent)
                if not flying:
                    return
                future, length = flying.popleft() if ordered else self._first_done(flying, timeout)
                values = _chunk_outcome(future, timeout, length, return_exceptions)
                del future  # what was yielded is the caller's alone, as with the stdlib's map
                yield _drain(values), length
        finally:
            # stopped early: nobody wants these any more (nor waits for a verdict)
            self.transport.cancels.abandon([future for future, _ in flying])

    def chunks(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        window: int | None = None,
    ) -> tuple[Iterator[list[Any]], int]:
        """A map's input as chunks, checked, and how many may be in flight at once."""
        if not callable(fn):
            raise TypeError(f"map() takes a callable, not {fn!r}")
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        workers = len(self.slots())
        size = chunksize or _auto_chunksize(total, workers)
        if size < 1:
            raise ValueError(f"chunksize={chunksize!r} must be >= 1")
        return _chunked(iter(iterable), size), window or WINDOW_PER_WORKER * workers

    def _fill(
        self,
        flying: deque[tuple[ActorFuture[Any], int]],
        limit: int,
        chunks: Iterator[list[Any]],
        send: SendChunk,
        sent: int,
    ) -> int:
        """Send chunks until ``limit`` are in flight; the number of items sent so far."""
        while len(flying) < limit:
            chunk = next(chunks, None)
            if chunk is None:
                break
            flying.append((send(chunk, sent), len(chunk)))
            sent += len(chunk)
        return sent

    def chunk_sender(
        self,
        method: str,
        head: tuple[Any, ...],
        retries: int,
        what: tuple[str, Any],
        pack: Callable[[list[Any]], Any] | None = None,
    ) -> SendChunk:
        """What sends a chunk as the call ``method(*head, chunk)``, the chunk as
        ``pack`` makes it (raising SerializationError); a pickling error names the
        function (``head[0]``, when ``method`` is a map's) or the item."""
        named = [("the function", head[0])] if method == "chunk" else []

        def send(chunk: list[Any], first: int) -> ActorFuture[Any]:
            try:
                args = (*head, chunk if pack is None else pack(chunk))
                return self._send(method, args, retries, what)
            except SerializationError as exc:
                items = ((f"input item {first + i}", item) for i, item in enumerate(chunk))
                raise _unpicklable(what, [*named, *items], exc) from exc

        return send

    def _first_done(
        self, window: deque[tuple[ActorFuture[Any], int]], timeout: float | None
    ) -> tuple[ActorFuture[Any], int]:
        lengths = dict(window)
        future = next(as_completed(self.wait_any, lengths, timeout))
        window.remove((future, lengths[future]))
        return future, lengths[future]


class _Report(Protocol):
    """What a map reports its progress to (see ``observe.progress_for``)."""

    def update(self, done: int) -> None: ...
    def close(self) -> None: ...


class MapResults(itertools.chain):  # type: ignore[type-arg]
    """A map's results. Iterating is itertools.chain's C loop over each chunk's
    values (a Python generator would cost a frame resume per item); the generator
    behind it runs once per chunk. ``close()`` stops the map, as a generator's."""

    _chunks: Generator[Iterator[Any], None, None]
    _reading: list[Iterator[Any]]  # the chunk being read, once the first one came

    @classmethod
    def over(cls, steps: Iterator[tuple[Iterator[Any], int]], report: _Report) -> MapResults:
        reading: list[Iterator[Any]] = []
        chunks = _chunk_values(steps, report, reading)
        results = cast(MapResults, cls.from_iterable(chunks))  # an instance of cls
        results._chunks, results._reading = chunks, reading
        return results

    def close(self) -> None:
        """Stop the map: nothing more is sent, what is in flight is abandoned, and
        the rest of the chunk being read is dropped."""
        for values in self._reading:
            collections.deque(values, maxlen=0)
        self._chunks.close()


def _chunk_values(
    steps: Iterator[tuple[Iterator[Any], int]], report: _Report, reading: list[Iterator[Any]]
) -> Generator[Iterator[Any], None, None]:
    """Each chunk's values, the one being read kept in ``reading``; the progress
    counts a chunk once the caller has taken it all (when the next one is asked
    for). Closed, it closes ``steps`` and the report."""
    done = 0
    try:
        for values, length in steps:
            reading[:] = [values]
            yield values
            done += length
            report.update(done)
    finally:
        reading.clear()
        report.close()
        close = getattr(steps, "close", None)
        if close is not None:
            close()


def as_completed(
    wait_any: WaitAny, futures: Iterable[ActorFuture[Any]], timeout: float | None = None
) -> Iterator[ActorFuture[Any]]:
    """Yield ``futures`` as they complete, each once, keeping no reference to what
    it yielded (as the stdlib's); the waiting thread drives the sockets."""
    pending = dict.fromkeys(futures)  # in order, each once
    del futures  # the caller's iterable may hold them all
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        ready = [f for f in pending if f.settled()]
        if not ready:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{len(pending)} futures did not complete within {timeout} s")
            wait_any(list(pending), left)
            continue
        for future in ready:
            del pending[future]
        del future
        ready.reverse()
        while ready:
            yield ready.pop()


def _unpicklable(
    what: tuple[str, Any], named: list[tuple[str, Any]], exc: SerializationError
) -> SerializationError:
    """A task's pickling error, naming the user's function, argument or input item
    rather than the internal call that carries them."""
    culprit = wire.find_unpicklable(named)
    return SerializationError(f"{describe(what)}: cannot pickle {culprit}: {exc.__cause__}")


def _chunk_outcome(
    future: ActorFuture[Any], timeout: float | None, length: int, return_exceptions: bool
) -> list[Any]:
    """A chunk's results. A chunk lost whole (its worker died past its retries, a
    reply that does not unpickle) is, with ``return_exceptions``, that error in
    the place of each of its items."""
    try:
        values, failed = _unpacked(future.result(timeout), future)
    except TimeoutError:
        raise
    except Exception as exc:
        if not return_exceptions:
            raise
        return [exc] * length
    return values if not failed else [_outcome(v, return_exceptions) for v in values]


def _unpacked(result: Any, future: ActorFuture[Any]) -> tuple[list[Any], bool]:
    """A chunk's ``(values, failed)``; a pipeline's comes pickled by its last stage
    (relayed untouched by the workers before it)."""
    if type(result) is not bytes:
        return result  # type: ignore[no-any-return]
    try:
        return wire.loads(result)  # type: ignore[no-any-return]
    except Exception as exc:
        raise SerializationError(f"{future.label}: results do not unpickle: {exc!r}") from exc


def _drain(values: list[Any]) -> Iterator[Any]:
    """Yield and forget each value: once yielded, it is the caller's alone."""
    values.reverse()
    return map(values.pop, itertools.repeat(-1, len(values)))


def _outcome(value: Any, return_exceptions: bool) -> Any:
    if type(value) is not wire.TaskFailure:
        return value
    error = wire.decode_error(value.blob)
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
