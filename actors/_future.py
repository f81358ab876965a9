"""The future returned by every call to an actor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["ActorFuture", "complete_all", "describe"]

T = TypeVar("T")
_FINISHED = "FINISHED"
_SETTLED = frozenset({"FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"})
_SET = object()  # complete_all: the value is set, the callbacks are to run
_LOGGER = logging.getLogger("concurrent.futures")  # where Future logs a callback's error

# Called by result()/exception() before waiting: the engine uses it to drive its
# sockets from the waiting thread, or to refuse to block an actor's event loop.
# A negative timeout means "a callback waits for this": deliver it, do not block.
Waiter = Callable[["ActorFuture[Any]", "float | None"], None]
# Called by cancel() while the call is pending: the engine withdraws the call if it
# has not started (and marks the future cancelled), or marks it running.
Canceller = Callable[["ActorFuture[Any]"], bool]


class ActorFuture(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` that can also be awaited in asyncio code.

    ``result(timeout)`` raises the builtin ``TimeoutError`` when the call has not
    completed in time; the call itself goes on and may still complete later.

    ``cancel()`` follows ``concurrent.futures``: it returns True, and the call never
    runs, only if the call had not started; once the actor or task has begun it
    returns False and the future is ``running()``. A cancelled future counts as done
    for ``concurrent.futures.wait`` and ``as_completed``.
    """

    # Future.__init__'s fields, made here: a condition shared by an engine's futures
    # (a Condition per call costs more than the rest of the call; sharing is safe:
    # waiters re-check their own future's state on wake-up), and its two lists made
    # on first use. The pipelined calls a program holds are the most numerous objects
    # in many drivers: the garbage collector's passes grow with every object each
    # keeps, and would cost more than the rest of the call.
    def __init__(
        self,
        what: object = "call",
        waiter: Waiter | None = None,
        condition: threading.Condition | None = None,
        canceller: Canceller | None = None,
        method: str | None = None,
    ) -> None:
        self._condition = threading.Condition() if condition is None else condition
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiting: list[Any] | None = None  # _waiters, once there is one
        self._callbacks: list[Callable[[Any], object]] | None = None  # _done_callbacks
        self._what = what  # with ``method``: an actor's call, labelled ``(what, method)``
        self._method = method
        self._waiter = waiter
        self._canceller = canceller
        self.call_id = 0  # the engine's id for the call, for its canceller

    @property
    def _waiters(self) -> list[Any]:  # concurrent.futures.wait appends to it
        if self._waiting is None:
            self._waiting = []
        return self._waiting

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:
        self._waiting = waiters

    @property
    def _done_callbacks(self) -> list[Callable[[Any], object]]:
        if self._callbacks is None:
            self._callbacks = []
        return self._callbacks

    @_done_callbacks.setter
    def _done_callbacks(self, callbacks: list[Callable[[Any], object]]) -> None:
        self._callbacks = callbacks

    def __repr__(self) -> str:  # Future's names the class: the engine's subclass here
        with self._condition:
            state, exc, result = self._state, self._exception, self._result
        if state == _FINISHED:
            outcome = f"raised {type(exc).__name__}" if exc else f"returned {type(result).__name__}"
        else:
            outcome = "cancelled" if state in _SETTLED else state.lower()
        return f"<ActorFuture {self.label}: {outcome}>"

    @property
    def label(self) -> str:
        """What this future waits for, as error messages name it."""
        return describe(self._what if self._method is None else (self._what, self._method))

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        """As ``Future.add_done_callback``, with its lock taken once, not twice."""
        condition = self._condition
        condition.acquire()  # as in _finish
        try:
            pending = self._state not in _SETTLED
            if pending:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
        finally:
            condition.release()
        if not pending:
            try:
                fn(self)
            except Exception:
                _LOGGER.exception("exception calling callback for %r", self)
        elif self._waiter is not None:
            self._waiter(self, -1.0)  # nobody will block on it: the engine must deliver it

    def result(self, timeout: float | None = None) -> T:
        if self._state not in _SETTLED:  # _wait, inline: two calls less
            if self._waiter is not None:
                self._waiter(self, timeout)
            else:
                concurrent.futures.wait([self], timeout=timeout)
        if self._state == _FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]  # final state
        try:
            return super().result(timeout=0)  # type: ignore[no-any-return]
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self.label} did not complete within {timeout} s") from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        try:
            return super().exception(timeout=0)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self.label} did not complete within {timeout} s") from None

    # set_result and set_exception are Future's, less its notify_all: nothing waits on
    # the condition of an ActorFuture (result() and exception() wait through the
    # engine, concurrent.futures.wait through _waiters), and it costs microseconds.
    def set_result(self, result: T) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        condition = self._condition
        condition.acquire()  # its lock's own method: ``with`` adds two Python calls
        try:
            if self._state in _SETTLED:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = _FINISHED
            for waiter in self._waiting or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
        finally:
            condition.release()
        if self._callbacks:
            self._invoke_callbacks()

    def _invoke_callbacks(self) -> None:
        """Future's, over the list as it is (its ``_done_callbacks`` is a property here)."""
        for callback in self._callbacks or ():
            try:
                callback(self)
            except Exception:
                _LOGGER.exception("exception calling callback for %r", self)

    def cancel(self) -> bool:
        if self._state == "PENDING" and self._canceller is not None:
            return self._canceller(self)
        return self.mark_cancelled() or self.cancelled()

    def mark_cancelled(self, late: bool = False) -> bool:
        """For the engine: the call will not run. False if it already ran or started.

        The future goes straight to the state ``set_running_or_notify_cancel`` would
        give it, so that ``wait`` and ``as_completed`` count it as done. ``late``: the
        worker dropped the call after ``cancel()`` had given up waiting for its
        answer and marked it running; it still ends cancelled, never pending."""
        with self._condition:
            if self._state != "PENDING" and not (late and self._state == "RUNNING"):
                return False
            self._state = "CANCELLED_AND_NOTIFIED"
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True

    def mark_running(self) -> None:
        """For the engine: the call has started; it can no longer be cancelled."""
        with self._condition:
            if self._state == "PENDING":
                self._state = "RUNNING"

    def decided(self) -> bool:
        """True once the future is no longer pending: running, cancelled or done."""
        return self._state != "PENDING"

    def settled(self) -> bool:
        """Like ``done()``, without taking the future's lock: for polling loops."""
        return self._state in _SETTLED

    def _wait(self, timeout: float | None) -> None:
        if self._state in _SETTLED:  # no lock needed to see a final state
            return
        if self._waiter is not None:
            self._waiter(self, timeout)
        else:
            concurrent.futures.wait([self], timeout=timeout)

    def __await__(self) -> Generator[Any, None, T]:
        if self._state not in _SETTLED:  # done(), without its lock
            yield from _bridge(self).__await__()
        return self.result()


def complete_all(
    condition: threading.Condition, outcomes: list[tuple[ActorFuture[Any], Any]]
) -> None:
    """Set the values of futures, in order: those that share ``condition`` (an
    engine's) under it, taken once rather than once each. One already cancelled
    keeps its state. Then the callbacks run, in the same order. For a batch of
    replies."""
    later: list[tuple[ActorFuture[Any], Any]] = []  # (future, value), or (future, _SET)
    condition.acquire()  # as in _finish
    try:
        for future, value in outcomes:
            if future._condition is not condition:
                later.append((future, value))  # set below, under its own condition
            elif future._state not in _SETTLED:  # else cancelled: nobody wants it
                future._result = value
                future._state = _FINISHED
                for waiter in future._waiting or ():
                    waiter.add_result(future)
                if future._callbacks:
                    later.append((future, _SET))
    finally:
        condition.release()
    for future, value in later:
        if value is _SET:
            future._invoke_callbacks()
        else:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled
                future.set_result(value)


def describe(what: object) -> str:
    """A call is labelled lazily, formatting costs on the hot path: ``(ref, method)``
    for an actor's, ``("submit", fn)`` or ``("map", fn)`` for a task."""
    if type(what) is not tuple:
        return str(what)
    subject, detail = what
    if type(subject) is str:
        return f"{subject}({getattr(detail, '__qualname__', None) or type(detail).__name__})"
    return f"{subject!r}.{detail}()"


def _bridge(future: ActorFuture[Any]) -> asyncio.Future[None]:
    """An asyncio future on the running loop that completes with ``future``."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    loop_thread = threading.get_ident()

    def wake(_: object) -> None:
        if threading.get_ident() == loop_thread:
            if not waiter.done():  # _set_once, inline: this is every await's wake-up
                waiter.set_result(None)
        else:
            loop.call_soon_threadsafe(_set_once, waiter)

    future.add_done_callback(wake)
    return waiter


def _set_once(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
