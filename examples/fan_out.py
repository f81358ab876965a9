"""Fan out a batch of work to many actors, then gather the results from futures.

Eight ``Cruncher`` actors are spawned without a ``worker=`` argument, so the
system spreads them over the worker processes (least loaded first). The driver
deals 64 work items round-robin, keeps one future per item, and gathers them
with ``concurrent.futures.as_completed``: every call returns a standard
``concurrent.futures.Future``. An actor handles one message at a time, so its
own items run one after another, while actors in different worker processes
run in parallel. The same computation is then timed in the driver alone.

The work is deliberately plain Python (the longest Collatz chain in a range of
numbers), the kind the GIL keeps on one core inside a single process.

Run it with ``python examples/fan_out.py``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import time

from actors import Actor
from runtime import ActorSystem

WORKERS = 2
ACTORS = 8
ITEMS = 64
CHUNK = 5_000


def longest_chain(lo: int, hi: int) -> tuple[int, int]:
    """(length, start) of the longest Collatz chain starting in [lo, hi)."""
    best = (0, 0)
    for start in range(lo, hi):
        n, steps = start, 1
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        best = max(best, (steps, start))
    return best


class Cruncher(Actor):
    def __init__(self, index: int) -> None:
        self.index = index
        self.done = 0

    def crunch(self, lo: int, hi: int) -> tuple[int, int]:
        self.done += 1
        return longest_chain(lo, hi)

    def report(self) -> tuple[int, int, int]:
        return self.index, os.getpid(), self.done


def main() -> None:
    items = [(1 + i * CHUNK, 1 + (i + 1) * CHUNK) for i in range(ITEMS)]

    with ActorSystem(workers=WORKERS) as system:
        crunchers = [system.spawn(Cruncher, i) for i in range(ACTORS)]
        placement = collections.Counter(ref.slot for ref in crunchers)
        print(f"{ACTORS} actors over {WORKERS} workers:", dict(sorted(placement.items())))

        started = time.perf_counter()
        futures = {
            crunchers[i % ACTORS].crunch(lo, hi): (lo, hi) for i, (lo, hi) in enumerate(items)
        }
        best = (0, 0)
        for future in concurrent.futures.as_completed(futures, timeout=60):
            best = max(best, future.result())
        parallel = time.perf_counter() - started

        for index, pid, done in (ref.report().result(timeout=5) for ref in crunchers):
            print(f"  cruncher {index} in pid {pid} handled {done} items")

    last = items[-1][1] - 1
    print(f"longest Collatz chain below {last + 1:,}: starts at {best[1]:,}, {best[0]} steps")

    started = time.perf_counter()
    serial_best = max(longest_chain(lo, hi) for lo, hi in items)
    serial = time.perf_counter() - started
    assert serial_best == best, (serial_best, best)

    print(f"fan-out over {WORKERS} worker processes: {parallel:.2f} s")
    print(f"same work in the driver alone:       {serial:.2f} s ({serial / parallel:.1f}x)")


if __name__ == "__main__":
    main()
