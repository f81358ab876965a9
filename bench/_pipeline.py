"""The ``pipeline`` metric: a 3-stage pipeline of tiny functions on three paths,
alternating in one ``ActorSystem(workers=2)``: through the driver
(``DOVECOTE_PIPELINE=driver``, the former path: each stage a map, every item
back in the driver between stages), worker to worker (the default: a worker
chains the next stage while free, else sends the chunk on to a peer), and
every stage a hop to another worker (``DOVECOTE_PIPELINE=hops``).

Each side reports items/s and the driver's CPU share: this process's CPU time
(all its threads) over the wall time; the note adds the workers'. The stage
functions live here so that the workers import them by reference.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator

import psutil

from bench._common import TASK_WORKERS, Bench, Line
from runtime import ActorSystem, Stage

CHUNKSIZE = 64  # items per chunk (the first stage's), for both sides
PARALLELISM = 8  # chunks each stage holds in flight
TARGET = 2.0  # worker to worker, as a multiple of through the driver


def parse(x: int) -> int:
    return x + 1


def scale(x: int) -> int:
    return 3 * x


def label(x: int) -> int:
    return x - 7


def expected(n: int) -> list[int]:
    return [3 * (x + 1) - 7 for x in range(n)]


def stages() -> list[Stage]:
    return [Stage(fn, PARALLELISM, CHUNKSIZE) for fn in (parse, scale, label)]


@contextlib.contextmanager
def path(name: str) -> Iterator[None]:
    """Pipelines started inside take ``name``'s path (``DOVECOTE_PIPELINE``)."""
    old = os.environ.get("DOVECOTE_PIPELINE")
    os.environ["DOVECOTE_PIPELINE"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["DOVECOTE_PIPELINE"]
        else:
            os.environ["DOVECOTE_PIPELINE"] = old


def pid(_: object) -> int:
    return os.getpid()


def worker_pids(system: ActorSystem) -> list[int]:
    """The workers' process ids (a few tasks land on each)."""
    return sorted(set(system.map(pid, range(64), chunksize=1, timeout=60.0)))


def run(system: ActorSystem, name: str, n: int, workers: list[psutil.Process]) -> tuple[float, ...]:
    """One pipeline of ``n`` items on ``name``'s path: (items/s, driver CPU share,
    workers' CPU share)."""
    with path(name):
        before = [sum(p.cpu_times()[:2]) for p in workers]
        t0, c0 = time.perf_counter(), time.process_time()
        out = list(system.pipeline(range(n), *stages()))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        used = sum(sum(p.cpu_times()[:2]) for p in workers) - sum(before)
    if out != expected(n):
        raise AssertionError(f"pipeline ({name}): wrong results")
    return n / wall, cpu / wall, used / wall


SIDES = {"driver": "via the driver", "": "worker to worker", "hops": "every stage a hop"}


def bench_pipeline(b: Bench) -> list[Line]:
    n, reps = b.sizes.pipeline_items, b.sizes.pipeline_reps
    with ActorSystem(workers=TASK_WORKERS) as system:
        workers = [psutil.Process(p) for p in worker_pids(system)]
        for name in SIDES:  # warm-ups, untimed
            run(system, name, n // 10, workers)
        rounds = [{name: run(system, name, n, workers) for name in SIDES} for _ in range(reps)]
    side = {  # each path's median (items/s, driver CPU share, workers' CPU share)
        name: [statistics.median(r[name][i] for r in rounds) for i in range(3)] for name in SIDES
    }
    shares = "; ".join(
        f"{what}: driver {side[name][1]:.0%}, workers {side[name][2]:.2f}"
        for name, what in SIDES.items()
    )
    b.notes.append(
        f"pipeline: {n:,} items through 3 tiny functions, Stage(fn, {PARALLELISM}, {CHUNKSIZE}) "
        f"each, median of {reps} rounds alternating the paths (DOVECOTE_PIPELINE=driver, unset, "
        f"=hops); CPU share = process CPU time / wall (workers: both, of {TASK_WORKERS} cores): "
        + shares
    )
    via = side["driver"]
    return [
        _rate_line("pipeline, 3 stages", side[""][0], via[0], TARGET),
        _rate_line("pipeline, each stage a hop", side["hops"][0], via[0], None),
        (
            "pipeline, driver CPU",
            f"{side[''][1]:.0%} of a core",
            "dovecote via the driver",
            f"{via[1]:.0%} of a core",
            f"{side[''][1] / via[1]:.2f}x",
            "lower",
            "-",
            "-",
        ),
    ]


def _rate_line(metric: str, rate: float, via: float, target: float | None) -> Line:
    ratio = rate / via
    verdict = "-" if target is None else "PASS" if ratio >= target else "MISS"
    return (
        metric,
        f"{rate:,.0f} items/s",
        "dovecote via the driver",
        f"{via:,.0f} items/s",
        f"{ratio:.2f}x",
        "higher",
        "-" if target is None else f">= {target:.0f}x",
        verdict,
    )
