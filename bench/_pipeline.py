"""The ``pipeline`` metric: a 3-stage pipeline of tiny functions, its chunks
streamed worker to worker, against the same pipeline through the driver
(``DOVECOTE_PIPELINE=driver``: each stage a map, every item back in the driver
between stages), alternating in one ``ActorSystem(workers=2)``.

Each side reports items/s and the driver's CPU share: this process's CPU time
(all its threads) over the wall time; the note adds the workers' share. The
stage functions live here so that the workers import them by reference.
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
    """Pipelines started inside take ``name``'s path: "driver" or "direct"."""
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


def bench_pipeline(b: Bench) -> list[Line]:
    n, reps = b.sizes.pipeline_items, b.sizes.task_reps
    with ActorSystem(workers=TASK_WORKERS) as system:
        workers = [psutil.Process(p) for p in worker_pids(system)]
        for name in ("driver", "direct"):  # warm-ups, untimed
            run(system, name, n // 10, workers)
        pairs = [
            (run(system, "driver", n, workers), run(system, "direct", n, workers))
            for _ in range(reps)
        ]
    via = [statistics.median(side[i] for side, _ in pairs) for i in range(3)]
    direct = [statistics.median(side[i] for _, side in pairs) for i in range(3)]
    b.notes.append(
        f"pipeline: {n:,} items through 3 tiny functions, Stage(fn, {PARALLELISM}, {CHUNKSIZE}) "
        f"each, median of {reps} alternating rounds; CPU share = CPU time / wall; workers' "
        f"share (of {TASK_WORKERS} cores): {direct[2]:.2f} worker to worker, {via[2]:.2f} via "
        "the driver"
    )
    ratio = direct[0] / via[0]
    return [
        (
            "pipeline, 3 stages",
            f"{direct[0]:,.0f} items/s",
            "dovecote via the driver",
            f"{via[0]:,.0f} items/s",
            f"{ratio:.2f}x",
            "higher",
            f">= {TARGET:.0f}x",
            "PASS" if ratio >= TARGET else "MISS",
        ),
        (
            "pipeline, driver CPU",
            f"{direct[1]:.0%}",
            "dovecote via the driver",
            f"{via[1]:.0%}",
            f"{direct[1] / via[1]:.2f}x",
            "lower",
            "-",
            "-",
        ),
    ]
