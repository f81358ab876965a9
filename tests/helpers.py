"""Actor classes the tests share. Workers import this module by name: they see the
driver's sys.path, which is part of what the tests check."""

from __future__ import annotations

import asyncio
import os
import pathlib
import threading
from typing import Any

from actors import Actor, ActorRef


class Counter(Actor):
    def __init__(self, start: int = 0, stop_marker: str | None = None) -> None:
        self.value = start
        self.stop_marker = stop_marker
        self.started = False

    def on_start(self) -> None:
        self.started = True

    def on_stop(self) -> None:
        if self.stop_marker:
            pathlib.Path(self.stop_marker).write_text(str(self.value))

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def was_started(self) -> bool:
        return self.started

    def receive(self, message: Any) -> Any:
        if message == "value":
            return self.value
        self.value += message
        return None

    def pid(self) -> int:
        return os.getpid()

    def fail(self, exc: BaseException) -> None:
        raise exc

    def exit(self, code: int) -> None:
        os._exit(code)

    def block_on(self, fifo: str) -> str:
        """Blocks this worker until someone writes a line into ``fifo``."""
        with open(fifo) as pipe:
            return pipe.readline().strip()

    def call_blocking(self, other: ActorRef) -> Any:
        return other.get().result(timeout=5)

    def me(self) -> ActorRef:
        return self.ref

    def echo(self, value: Any) -> Any:
        return value

    def make_lock(self) -> Any:
        return threading.Lock()


class Waiter(Actor):
    async def wait_for_file(self, path: str) -> str:
        """Yields to the loop until ``path`` exists: other actors go on meanwhile."""
        while not os.path.exists(path):
            await asyncio.sleep(0.005)
        return pathlib.Path(path).read_text()

    async def relay(self, other: ActorRef, n: int) -> int:
        total = 0
        for _ in range(n):
            total = await other.add(1)
        return total

    async def spawn_and_call(self) -> tuple[int, str | None]:
        child = await self.system.spawn(Counter, 41, name="child")
        found = await self.system.lookup("child")
        value = await found.add(1)
        await self.system.stop(child)
        return value, found.name

    async def ask_receive(self, other: ActorRef) -> Any:
        return await other.receive("value")


class BadInit(Actor):
    def __init__(self, why: str) -> None:
        raise KeyError(why)


class Unpicklable(Exception):
    """An exception whose pickle cannot be loaded: it must still reach the caller."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)  # args do not match __init__: unpickling fails
