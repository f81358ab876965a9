"""``system.aio``: the actor system for asyncio code. Every call hands control back
to the event loop at once and awaits the outcome: spawning, looking up and
stopping actors, tasks, and ``async for`` over maps and subscriptions. The
loop is never blocked by the runtime's own waiting."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from actors._actor import Actor
from actors._future import ActorFuture
from actors._ref import ActorRef
from actors._spec import MAX_RESTARTS, PERIOD, Child, RestartPolicy
from runtime.driver import _tasks
from runtime.net import Subscription

if TYPE_CHECKING:
    from runtime.driver._system import ActorSystem

__all__ = ["AsyncActorSystem"]

A = TypeVar("A", bound=Actor)


class AsyncActorSystem:
    """The asyncio face of an ``ActorSystem`` (``system.aio``); it shares the
    system, its actors and its workers."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    async def spawn(
        self,
        cls: type[A],
        *args: Any,
        name: str | None = None,
        worker: int | None = None,
        restart: str = "permanent",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
        **kwargs: Any,
    ) -> ActorRef:
        """As ``ActorSystem.spawn``, awaited."""
        system = self._system
        system._check_open()
        policy = RestartPolicy(restart, max_restarts, period)
        return await system._requests.spawn(cls, args, kwargs, name, worker, policy)

    async def spawn_group(
        self,
        children: Sequence[Child],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
    ) -> list[ActorRef]:
        self._system._check_open()
        return await self._system._requests.spawn_group(children, strategy, max_restarts, period)

    async def lookup(self, name: str) -> ActorRef:
        self._system._check_open()
        return await self._system._requests.lookup(name)

    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` after the messages already sent to it; runs its ``on_stop``."""
        self._system._check_open()
        await ref.stop()

    async def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker; its result."""
        return await self._system.submit(fn, *args, **kwargs)

    def map(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = _tasks.DEFAULT_RETRIES,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """``async for`` over ``ActorSystem.map``: results in input order."""
        self._system._check_open()
        tasks = self._system._tasks
        return _amap(tasks, fn, iterable, chunksize, True, timeout, retries, return_exceptions)

    def imap_unordered(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = _tasks.DEFAULT_RETRIES,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """``async for`` over ``ActorSystem.imap_unordered``: results as they come."""
        self._system._check_open()
        tasks = self._system._tasks
        return _amap(tasks, fn, iterable, chunksize, False, timeout, retries, return_exceptions)

    async def subscribe(self, prefix: str, *, timeout: float = 10.0) -> Subscription:
        """As ``ActorSystem.subscribe``, awaited; iterate it with ``async for``."""
        return await asyncio.to_thread(self._system.subscribe, prefix, timeout=timeout)


async def _amap(
    tasks: _tasks.Tasks,
    fn: Callable[[Any], Any],
    iterable: Iterable[Any],
    chunksize: int | None,
    ordered: bool,
    timeout: float | None,
    retries: int,
    return_exceptions: bool,
) -> AsyncIterator[Any]:
    """The windowed map of ``Tasks.map``, awaiting chunks instead of blocking."""
    chunks, limit = tasks.chunks(fn, iterable, chunksize)
    send = tasks.chunk_sender("chunk", (fn,), retries, ("map", fn))
    flying: deque[tuple[ActorFuture[Any], int]] = deque()
    sent = 0
    try:
        while True:
            sent = tasks._fill(flying, limit, chunks, send, sent)
            if not flying:
                return
            future, length = await _next_done(flying, ordered, timeout)
            for value in _tasks._drain(_tasks._chunk_outcome(future, 0, length, return_exceptions)):
                yield value
    finally:
        tasks.transport.cancels.abandon([future for future, _ in flying])


async def _next_done(
    flying: deque[tuple[ActorFuture[Any], int]], ordered: bool, timeout: float | None
) -> tuple[ActorFuture[Any], int]:
    """The next chunk to yield (the oldest, or the first done), once it is done."""
    candidates = [flying[0]] if ordered else list(flying)
    # wrap_future: a done-callback on each, which the driver's I/O thread delivers.
    waiting = {asyncio.wrap_future(future): (future, length) for future, length in candidates}
    done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if not done:
        raise TimeoutError(f"no chunk of the map completed within {timeout} s")
    chosen = waiting[next(iter(done))]
    flying.remove(chosen)
    return chosen
