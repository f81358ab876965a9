"""Estimate pi by Monte Carlo with ``system.map`` over seeded batches.

Each of ``BATCHES`` tasks throws ``POINTS`` random points into the unit square
and counts those inside the quarter circle; batch ``i`` seeds its own
``random.Random(i)``, so the run is reproducible whichever worker takes which
batch. ``system.map`` spreads the batches over the worker processes (plain
Python loops, which the GIL would keep on one core in a single process) and
the driver sums the hits: pi is about 4 * hits / points.

Run it with ``python examples/monte_carlo_pi.py``.
"""

from __future__ import annotations

import math
import random
import time

from runtime import ActorSystem

WORKERS = 2
BATCHES = 32
POINTS = 100_000


def hits_in_batch(index: int) -> int:
    """Points of batch ``index`` inside the quarter circle (runs in a worker)."""
    rng = random.Random(index)
    hits = 0
    for _ in range(POINTS):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def main() -> None:
    with ActorSystem(workers=WORKERS) as system:
        started = time.perf_counter()
        hits = sum(system.map(hits_in_batch, range(BATCHES)))
        elapsed = time.perf_counter() - started

    points = BATCHES * POINTS
    estimate = 4 * hits / points
    print(f"{BATCHES} batches x {POINTS:,} points over {WORKERS} worker processes")
    print(f"pi ~ {estimate:.6f}  (error {abs(estimate - math.pi):.6f})")
    print(f"time {elapsed:.2f} s, {points / elapsed:,.0f} points/s")


if __name__ == "__main__":
    main()
