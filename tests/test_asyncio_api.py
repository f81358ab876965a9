"""``system.aio``: spawn, lookup, stop, tasks, maps and subscriptions awaited from a
running event loop, which stays free meanwhile (a ticker task keeps running)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from actors import ActorStoppedError
from runtime import ActorSystem
from tests.helpers import Counter

T = TypeVar("T")


def slow_square(x: int) -> int:
    time.sleep(0.01)
    return x * x


def square(x: int) -> int:
    return x * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def _with_ticker(make: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Run ``make()`` on a loop beside a ticker; its result and how often the ticker
    ran meanwhile (the loop was free if it ran)."""

    async def main() -> tuple[T, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        try:
            return await make(), ticks
        finally:
            stop.set()
            await task

    return asyncio.run(main())


def test_spawn_lookup_call_and_stop_are_awaited(system: ActorSystem) -> None:
    async def scenario() -> tuple[int, int]:
        ref = await system.aio.spawn(Counter, 10, name="acounter")
        same = await system.aio.lookup("acounter")
        added = await same.add(5)
        await system.aio.stop(ref)
        with pytest.raises(LookupError):
            await system.aio.lookup("acounter")
        return added, await system.aio.submit(square, 7)

    (added, squared), _ = _with_ticker(scenario)
    assert (added, squared) == (15, 49)


def test_spawn_does_not_block_the_loop(system: ActorSystem) -> None:
    async def scenario() -> list[Any]:
        refs = await asyncio.gather(*(system.aio.spawn(Counter) for _ in range(4)))
        return [await ref.add(1) for ref in refs]

    values, ticks = _with_ticker(scenario)
    assert values == [1, 1, 1, 1]
    assert ticks >= 1


def test_async_for_over_map_keeps_order_and_the_loop_free(system: ActorSystem) -> None:
    async def scenario() -> list[int]:
        return [x async for x in system.aio.map(slow_square, range(40), chunksize=2)]

    values, ticks = _with_ticker(scenario)
    assert values == [x * x for x in range(40)]
    assert ticks > 1  # 40 x 10 ms of work on 2 workers: the ticker ran in between


def test_async_for_over_imap_unordered(system: ActorSystem) -> None:
    async def scenario() -> list[int]:
        return [x async for x in system.aio.imap_unordered(square, range(100))]

    values, _ = _with_ticker(scenario)
    assert sorted(values) == [x * x for x in range(100)]


def test_async_map_errors_and_return_exceptions(system: ActorSystem) -> None:
    async def raising() -> list[int]:
        return [x async for x in system.aio.map(fails_on_three, range(6), chunksize=1)]

    with pytest.raises(ValueError, match="three"):
        asyncio.run(raising())

    async def kept() -> list[Any]:
        items = system.aio.map(fails_on_three, range(6), chunksize=1, return_exceptions=True)
        return [x async for x in items]

    values = asyncio.run(kept())
    assert values[:3] == [0, 1, 2] and isinstance(values[3], ValueError)
    assert values[4:] == [4, 5]


def test_async_map_timeout(system: ActorSystem) -> None:
    async def scenario() -> list[Any]:
        return [x async for x in system.aio.map(time.sleep, [1.0], timeout=0.2)]

    with pytest.raises(TimeoutError):
        asyncio.run(scenario())


def test_async_for_over_a_subscription(system: ActorSystem) -> None:
    async def scenario() -> list[tuple[str, Any]]:
        sub = await system.aio.subscribe("news.")
        for i in range(3):
            system.publish(f"news.{i}", i)
        got = []
        async for event in sub:
            got.append(event)
            if len(got) == 3:
                break
        sub.close()
        return got

    got, _ = _with_ticker(scenario)
    assert got == [("news.0", 0), ("news.1", 1), ("news.2", 2)]


def test_async_for_ends_when_the_subscription_closes(system: ActorSystem) -> None:
    async def scenario() -> list[Any]:
        sub = await system.aio.subscribe("quiet.")
        asyncio.get_running_loop().call_later(0.1, sub.close)
        return [event async for event in sub]

    assert asyncio.run(scenario()) == []


def test_aio_after_shutdown_raises() -> None:
    with ActorSystem(workers=1) as system:
        aio = system.aio
    with pytest.raises(ActorStoppedError):
        asyncio.run(aio.spawn(Counter))
