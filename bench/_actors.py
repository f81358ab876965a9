"""The benchmark's actor, in a module of its own so workers import little."""

import asyncio
import collections
import os
import time
from typing import Any

from actors import Actor, ActorRef


class Echo(Actor):
    def __init__(self) -> None:
        self.n = 0

    def echo(self, x: Any) -> Any:
        return x

    def inc(self) -> None:
        self.n += 1

    def count(self) -> int:
        return self.n

    def pid(self) -> int:
        """The worker process hosting this actor: a new one after a restart."""
        return os.getpid()

    def shout(self, topic: str, n: int) -> None:
        """Publish ``n`` events on ``topic`` (the bus metric)."""
        for i in range(n):
            self.system.publish(topic, i)

    async def turns(self, n: int) -> float:
        """Turns a second of this worker's loop with nothing else to do: ``n`` awaits
        of ``asyncio.sleep(0)``, the bound of a publisher of one event a turn."""
        t0 = time.perf_counter()
        for _ in range(n):
            await asyncio.sleep(0)
        return n / (time.perf_counter() - t0)

    async def shout_turns(self, topic: str, n: int, per: int) -> None:
        """Publish ``n`` events, ``per`` in each turn of the worker's loop (events per frame)."""
        for start in range(0, n, per):
            for i in range(start, min(n, start + per)):
                self.system.publish(topic, i)
            await asyncio.sleep(0)  # the bus flushes what this turn published


class Caller(Actor):
    """Calls other actors from inside a worker: the actor-to-actor metrics."""

    async def asks(self, other: ActorRef, n: int) -> list[int]:
        """Round-trip times in ns of ``n`` sequential asks of ``other.echo``."""
        samples = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            await other.echo(i)
            samples.append(time.perf_counter_ns() - t0)
        return samples

    async def fan(self, callees: list[ActorRef], n: int, window: int) -> int:
        """``n`` asks spread over ``callees``, at most ``window`` outstanding; their sum."""
        total, pending = 0, collections.deque()
        for i in range(n):
            if len(pending) >= window:
                total += await pending.popleft()
            pending.append(callees[i % len(callees)].echo(1))
        while pending:
            total += await pending.popleft()
        return total
