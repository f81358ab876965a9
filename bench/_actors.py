"""The benchmark's actor, in a module of its own so workers import little."""

import os
from typing import Any

from actors import Actor


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
