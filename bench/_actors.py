"""The benchmark's actor, in a module of its own so workers import little."""

import asyncio
import collections
import os
import sys
import time
from types import FrameType
from typing import Any

from actors import Actor, ActorRef


class Tally:
    """The Python function calls (a coroutine's resumption counts as one) and the
    bytecodes one thread runs while it counts (``sys.settrace``): figures that do
    not move with the machine's speed, unlike a time. Tracing slows what it counts."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytecodes = 0

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.bytecodes += 1
        elif event == "call":
            self.calls += 1
            frame.f_trace_opcodes = True
        return self.trace

    def start(self) -> None:
        sys.settrace(self.trace)

    def stop(self) -> None:
        sys.settrace(None)

    def __enter__(self) -> "Tally":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Echo(Actor):
    def __init__(self) -> None:
        self.n = 0
        self.tally: Tally | None = None

    def echo(self, x: Any) -> Any:
        return x

    def inc(self) -> None:
        self.n += 1

    def count(self) -> int:
        return self.n

    def count_from_now(self) -> None:
        """Count what this worker's loop thread runs until ``counted`` (the counts metric)."""
        self.tally = Tally()
        self.tally.start()

    def counted(self) -> tuple[int, int]:
        """The Python calls and bytecodes since ``count_from_now``; counting stops."""
        assert self.tally is not None, "count_from_now() first"
        self.tally.stop()
        return self.tally.calls, self.tally.bytecodes

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
