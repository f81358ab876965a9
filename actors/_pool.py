"""ActorPool: spread calls over a fixed set of actors, as Ray's ``ActorPool``."""

from __future__ import annotations

import concurrent.futures
import copy
import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from actors._errors import ActorCrashedError, ActorStoppedError
from actors._future import ActorFuture
from actors._ref import ActorRef

__all__ = ["ActorPool"]

V = TypeVar("V")
R = TypeVar("R")
Call = Callable[[ActorRef, V], "concurrent.futures.Future[R]"]

DEFAULT_RETRIES = 3
WINDOW_PER_ACTOR = 4  # tasks of one map in the pool (running or waiting) per actor
_GONE = (ActorCrashedError, ActorStoppedError)  # the actor died or is gone: not its answer


class _Task(Generic[V, R]):
    """One value to run, the future the caller holds, and its re-submissions so far."""

    __slots__ = ("fn", "future", "tries", "value")

    def __init__(self, fn: Call[V, R], value: V, what: str) -> None:
        self.fn = fn
        self.value = value
        self.future: ActorFuture[R] = ActorFuture((what, fn))
        self.tries = 0


_Start = tuple[_Task[Any, Any], ActorRef]  # a task and the actor it goes to
_Settle = tuple[_Task[Any, Any], Any, "BaseException | None"]  # a task and its outcome


class _Moves:
    """What one change of the pool's state calls for, done once its lock is released."""

    __slots__ = ("settles", "starts")

    def __init__(self) -> None:
        self.starts: list[_Start] = []
        self.settles: list[_Settle] = []


class ActorPool:
    """A pool of actors that each take one task at a time, as Ray's ``ActorPool``.

    ``fn(ref, value)`` makes the call, e.g. ``lambda a, v: a.double(v)``, and
    returns its future. Tasks wait in the pool until an actor is idle; the actor
    idle the longest takes the next one, so a busy or slow actor gets less.

    A task whose actor dies or is gone (``ActorCrashedError``,
    ``ActorStoppedError``) is re-submitted to another actor, at most ``retries``
    times, and that actor leaves the rotation: it gets a second chance only when
    no other actor is left (a restarted actor may have come back). Once every
    actor has failed even so, the waiting tasks fail with the last such error.
    (A method that lets such an error out of a call of its own counts as gone
    too.) Any other exception is the task's own outcome, raised where its result
    is taken; its actor stays. Tasks given to a pool whose actors were all taken
    out with :meth:`pop_idle` wait for :meth:`push`.

    The pool has no thread: its actors' done-callbacks move it on, so ``fn`` may
    run on a dovecote thread; keep it to making the call. The pool's state is
    guarded by a lock, so any thread may use it, but it serves one caller at a
    time: two threads taking results at once (``get_next``) may get each other's.
    """

    def __init__(self, refs: Iterable[ActorRef], retries: int = DEFAULT_RETRIES) -> None:
        actors = list(refs)
        if not actors:
            raise ValueError("ActorPool needs at least one actor")
        for ref in actors:
            _check_ref(ref)
        if len(set(actors)) != len(actors):
            raise ValueError(f"ActorPool: an actor is given twice in {actors!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries={retries!r} is not a whole number >= 0")
        self._retries = retries
        self._lock = threading.Lock()
        self._idle: deque[ActorRef] = deque(actors)  # in the order they became idle
        self._busy: set[ActorRef] = set()
        self._out: list[ActorRef] = []  # died or gone: out of rotation, oldest first
        self._spent: set[ActorRef] = set()  # of those, the ones that had a second chance
        self._queue: deque[_Task[Any, Any]] = deque()  # waiting for an actor
        self._results: deque[ActorFuture[Any]] = deque()  # submit()'s, for get_next
        self._last_error: BaseException | None = None

    # -- submitting and taking results, as Ray's ------------------------------------
    def submit(self, fn: Call[V, R], value: V) -> ActorFuture[R]:
        """Run ``fn(actor, value)`` on the next idle actor; a future of its result.

        The result is also kept for :meth:`get_next` and :meth:`get_next_unordered`
        until one of them returns it.
        """
        return self._submit(fn, value, "ActorPool.submit", keep=True)

    def has_next(self) -> bool:
        """Whether a result of :meth:`submit` is left for ``get_next``."""
        return bool(self._results)

    def get_next(self, timeout: float | None = None) -> Any:
        """The next result of :meth:`submit`, in submission order.

        Raises the task's exception if it failed, ``TimeoutError`` if it does not
        complete within ``timeout`` seconds (the result stays for a later call), and
        ``StopIteration`` if no result is left (see :meth:`has_next`).
        """
        with self._lock:
            if not self._results:
                raise StopIteration("ActorPool.get_next(): no result left")
            oldest = [self._results[0]]
        return self._take(oldest, timeout)

    def get_next_unordered(self, timeout: float | None = None) -> Any:
        """Like :meth:`get_next`, but the first result to complete."""
        with self._lock:
            if not self._results:
                raise StopIteration("ActorPool.get_next_unordered(): no result left")
            waiting = list(self._results)
        return self._take(waiting, timeout)

    def _take(self, futures: list[ActorFuture[Any]], timeout: float | None) -> Any:
        """The outcome of the first of ``futures`` to complete, taken from the results."""
        done, _ = concurrent.futures.wait(futures, timeout, concurrent.futures.FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"ActorPool: no result within {timeout} s")
        future = next(f for f in futures if f in done)  # in submission order
        with self._lock:
            if future in self._results:
                self._results.remove(future)
        return future.result()

    # -- maps ------------------------------------------------------------------------
    def map(self, fn: Call[V, R], values: Iterable[V]) -> Iterator[R]:
        """Yield the result of ``fn(actor, value)`` for each value, in input order.

        Values are taken lazily, a few per actor ahead; a task's exception is raised
        in its place and ends the map, as with the stdlib's ``Executor.map``.
        Closing the iterator early cancels the tasks that have not started. The
        results of :meth:`submit` are left alone.
        """
        _check_fn(fn)
        return self._map(fn, iter(values), "ActorPool.map", ordered=True)

    def map_unordered(self, fn: Call[V, R], values: Iterable[V]) -> Iterator[R]:
        """Like :meth:`map`, but yield the results as they complete."""
        _check_fn(fn)
        return self._map(fn, iter(values), "ActorPool.map_unordered", ordered=False)

    def _map(self, fn: Call[V, R], values: Iterator[V], what: str, ordered: bool) -> Iterator[R]:
        window: deque[ActorFuture[R]] = deque()
        try:
            while True:
                self._refill(window, fn, values, what)
                if not window:
                    return
                future = window.popleft() if ordered else _first_done(window)
                result = future.result()
                del future  # what was yielded is the caller's alone
                yield result
        finally:
            for waiting in window:
                waiting.cancel()  # only those no actor has taken
            with self._lock:
                self._queue = deque(t for t in self._queue if not t.future.cancelled())

    def _refill(
        self, window: deque[ActorFuture[R]], fn: Call[V, R], values: Iterator[V], what: str
    ) -> None:
        with self._lock:
            size = WINDOW_PER_ACTOR * max(1, len(self._idle) + len(self._busy))
        for value in itertools.islice(values, max(0, size - len(window))):
            window.append(self._submit(fn, value, what, keep=False))

    # -- the actors --------------------------------------------------------------------
    def has_free(self) -> bool:
        """Whether an actor is idle and no task waits."""
        with self._lock:
            return bool(self._idle) and not self._queue

    def pop_idle(self) -> ActorRef | None:
        """Take an idle actor out of the pool and return it; None if none is free."""
        with self._lock:
            return self._idle.pop() if self._idle and not self._queue else None

    def push(self, ref: ActorRef) -> None:
        """Add ``ref`` to the pool (again), idle; an actor taken out after a failure
        comes back into rotation. It takes a waiting task at once."""
        _check_ref(ref)
        with self._lock:
            if ref in self._busy or ref in self._idle:
                raise ValueError(f"ActorPool.push(): {ref!r} is in the pool already")
            if ref in self._out:
                self._out.remove(ref)
                self._spent.discard(ref)
            self._idle.append(ref)
            moves = self._assign(_Moves())
        self._drive(moves)

    def __repr__(self) -> str:
        return (
            f"ActorPool({len(self._idle)} idle, {len(self._busy)} busy, "
            f"{len(self._out)} out of rotation; {len(self._queue)} tasks waiting)"
        )

    # -- the engine: state changes under the lock, calls and settling outside it --------
    def _submit(self, fn: Call[V, R], value: V, what: str, keep: bool) -> ActorFuture[R]:
        _check_fn(fn)
        task = _Task(fn, value, what)
        with self._lock:
            if keep:
                self._results.append(task.future)
            self._queue.append(task)
            moves = self._assign(_Moves())
        self._drive(moves)
        return task.future

    def _assign(self, moves: _Moves) -> _Moves:
        """Hand waiting tasks to idle actors, oldest first (lock held)."""
        while self._queue and (self._idle or (not self._busy and self._revive())):
            task = self._queue.popleft()
            task.future.mark_running()
            if task.future.cancelled():
                continue  # cancelled while it waited: it never runs
            ref = self._idle.popleft()
            self._busy.add(ref)
            moves.starts.append((task, ref))
        if self._queue and not self._idle and not self._busy and self._out:
            last = self._last_error  # every actor has failed, even on a second chance
            moves.settles += [(task, None, copy.copy(last)) for task in self._queue]
            self._queue.clear()
        return moves

    def _revive(self) -> bool:
        """Give an actor out of rotation its second chance (lock held)."""
        for ref in self._out:
            if ref not in self._spent:
                self._out.remove(ref)
                self._spent.add(ref)
                self._idle.append(ref)
                return True
        return False

    def _record(
        self, task: _Task[Any, Any], ref: ActorRef, value: Any, error: BaseException | None
    ) -> _Moves:
        """An attempt of ``task`` on ``ref`` ended: free or retire the actor, settle
        or re-queue the task, and hand out the next tasks."""
        moves = _Moves()
        with self._lock:
            self._busy.discard(ref)
            if isinstance(error, _GONE):
                self._out.append(ref)
                self._last_error = error
                if task.tries < self._retries:
                    task.tries += 1
                    self._queue.appendleft(task)  # it has waited longest
                else:
                    moves.settles.append((task, None, error))
            else:
                self._spent.discard(ref)
                self._idle.append(ref)
                moves.settles.append((task, value, error))
            return self._assign(moves)

    def _drive(self, moves: _Moves) -> None:
        """Start the tasks, then settle the futures (no lock held: both run code)."""
        work = deque(moves.starts)
        settles = moves.settles
        while work:
            more = self._start(*work.popleft())
            if more is not None:
                work.extend(more.starts)
                settles.extend(more.settles)
        for task, value, error in settles:
            _settle(task.future, value, error)

    def _start(self, task: _Task[Any, Any], ref: ActorRef) -> _Moves | None:
        """Make the call; the moves it calls for at once if it is already over."""
        try:
            call = task.fn(ref, task.value)
            if not isinstance(call, concurrent.futures.Future):
                raise TypeError(f"ActorPool: fn returned {call!r}, not the future of a call")
        except Exception as exc:  # the task's outcome, as if the call had raised it
            return self._record(task, ref, None, exc)
        if call.done():
            return self._record_call(task, ref, call)
        call.add_done_callback(functools.partial(self._on_done, task, ref))
        return None

    def _on_done(
        self, task: _Task[Any, Any], ref: ActorRef, call: concurrent.futures.Future[Any]
    ) -> None:
        self._drive(self._record_call(task, ref, call))

    def _record_call(
        self, task: _Task[Any, Any], ref: ActorRef, call: concurrent.futures.Future[Any]
    ) -> _Moves:
        if call.cancelled():
            return self._record(task, ref, None, concurrent.futures.CancelledError())
        error = call.exception()
        return self._record(task, ref, None if error else call.result(), error)


def _check_ref(ref: object) -> None:
    if not isinstance(ref, ActorRef):
        raise TypeError(f"ActorPool takes ActorRefs, not {ref!r}")


def _check_fn(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"ActorPool takes fn(actor, value), not {fn!r}")


def _first_done(window: deque[ActorFuture[R]]) -> ActorFuture[R]:
    """Remove and return the first of ``window`` to complete."""
    done, _ = concurrent.futures.wait(window, return_when=concurrent.futures.FIRST_COMPLETED)
    future = next(f for f in window if f in done)
    window.remove(future)
    return future


def _settle(future: ActorFuture[Any], value: Any, error: BaseException | None) -> None:
    """Complete ``future`` unless its caller cancelled it first."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass
