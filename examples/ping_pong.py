"""Actor-to-actor calls: two actors in two worker processes play ping-pong.

``Ping`` lives in worker 0 and ``Pong`` in worker 1. The driver makes one call,
``ping.play(pong, rounds)``; from then on the actors talk to each other directly,
worker to worker, without the driver or the supervisor in the path. ``play`` is an
``async def`` method that ``await``s each ``pong.hit(...)`` call: awaiting keeps
``Ping`` busy (it handles one message at a time) while worker 0 stays free to
serve its other actors. Each round is one full round trip between the processes.

It also shows an actor passing a ref in a message, and ``self.ref``.

Run it with ``python examples/ping_pong.py [rounds]`` (default 5,000).
"""

from __future__ import annotations

import os
import sys
import time

from actors import Actor, ActorRef
from runtime import ActorSystem


class Pong(Actor):
    def __init__(self) -> None:
        self.hits = 0

    def hit(self, ball: int) -> int:
        self.hits += 1
        return ball + 1

    def stats(self) -> tuple[int, int]:
        return os.getpid(), self.hits


class Ping(Actor):
    async def play(self, pong: ActorRef, rounds: int) -> dict[str, object]:
        ball = 0
        started = time.perf_counter()
        for _ in range(rounds):
            returned = await pong.hit(ball)  # one round trip to the other worker
            assert returned == ball + 1, (returned, ball)
            ball = returned + 1
        elapsed = time.perf_counter() - started
        return {"me": self.ref, "pid": os.getpid(), "ball": ball, "seconds": elapsed}


def main(rounds: int) -> None:
    with ActorSystem(workers=2) as system:
        ping = system.spawn(Ping, name="ping", worker=0)
        pong = system.spawn(Pong, name="pong", worker=1)

        ping.play(pong, 100).result(timeout=30)  # warm up the connections

        outcome = ping.play(pong, rounds).result(timeout=120)
        pong_pid, hits = pong.stats().result(timeout=5)
        seconds = outcome["seconds"]
        print(f"{outcome['me']!r} (pid {outcome['pid']}) <-> {pong!r} (pid {pong_pid})")
        print(f"{rounds:,} rounds, ball ended at {outcome['ball']:,}, pong was hit {hits:,} times")
        print(
            f"{seconds:.3f} s: {rounds / seconds:,.0f} rounds/s, "
            f"{seconds / rounds * 1e6:.1f} us per actor-to-actor round trip"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
