"""The task metrics' peers, multiprocessing, concurrent.futures and joblib; and ``burn``.

``burn`` is the CPU-bound task: the peers' and dovecote's workers unpickle it by
reference, importing this module, so it imports only the standard library at the
top; joblib only when its peer starts.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import math
import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

JOBLIB_LIMIT = 20.0  # seconds joblib may take at full size; past it, it maps JOBLIB_SMALL items
JOBLIB_SMALL = 100_000

Runner = Callable[[Callable[[Any], Any], Any], list[Any]]  # (fn, items) -> results


def burn(n: int) -> int:
    """Pure-Python work: the sum of ``range(n)``, one interpreted step per number."""
    total = 0
    for i in range(n):
        total += i
    return total


def timed_burn(n: int) -> tuple[int, float]:
    """``burn(n)``, and the seconds it ran in the process that ran it: summed over a
    map's tasks, the time its workers spent in them (cpu-40's worker use)."""
    took, total = timed(lambda: burn(n))
    return total, took


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``run()`` took, and what it returned."""
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def calibrate(seconds: float, samples: int = 5) -> tuple[int, float]:
    """A count for which ``burn`` takes about ``seconds`` here; and its best time
    (the least of ``samples``: noise only ever adds, see ``burn_time``)."""
    n = 10_000
    while (probe := burn_time(n, 1)) < seconds / 10:
        n *= 4
    n = max(1, round(n * seconds / probe))
    return n, burn_time(n, samples)


def burn_time(n: int, samples: int) -> float:
    """The least time ``burn(n)`` took here in ``samples`` runs, single-threaded."""
    return min(timed(lambda: burn(n))[0] for _ in range(samples))


def pool_chunksize(items: int, workers: int) -> int:
    """What ``Pool.map`` picks when given no chunksize: about four chunks per process."""
    return math.ceil(items / (4 * workers))


# The peers start their processes from a forkserver: forking this process, whose
# ActorSystems hold threads and sockets, could copy a lock held by one of them.
START_METHOD = "forkserver"


def start_method() -> str:
    """The start method the peers use."""
    return START_METHOD


def joblib_version() -> str | None:
    try:
        return importlib.metadata.version("joblib")
    except importlib.metadata.PackageNotFoundError:
        return None


def start_pool(workers: int, stack: ExitStack) -> multiprocessing.pool.Pool:
    """A ``multiprocessing.Pool(workers)``, terminated when ``stack`` closes."""
    return stack.enter_context(multiprocessing.get_context(START_METHOD).Pool(workers))


def pool_map(
    pool: multiprocessing.pool.Pool,
    fn: Callable[[Any], Any],
    items: Any,
    chunksize: int | None,
    timeout: float,
) -> list[Any]:
    """``pool.map``, which is ``map_async(...).get()``: the same, with a timeout."""
    return pool.map_async(fn, items, chunksize).get(timeout)


def start_executor(workers: int, stack: ExitStack) -> concurrent.futures.ProcessPoolExecutor:
    """A ``ProcessPoolExecutor(workers)``, shut down when ``stack`` closes."""
    context = multiprocessing.get_context(START_METHOD)
    return stack.enter_context(concurrent.futures.ProcessPoolExecutor(workers, mp_context=context))


def executor_submit(
    executor: concurrent.futures.Executor, fn: Callable[[Any], Any], args: range, timeout: float
) -> list[Any]:
    """``fn(arg)`` submitted for each of ``args`` one by one, then every result."""
    futures = [executor.submit(fn, arg) for arg in args]
    return [f.result(timeout) for f in futures]


def start_joblib(workers: int, stack: ExitStack, timeout: float) -> Runner | None:
    """A runner over ``Parallel(n_jobs=workers, batch_size="auto")``; None without joblib.

    The Parallel is entered, so that its calls share one backend; the loky worker
    processes it keeps for later calls are stopped when ``stack`` closes.
    """
    if joblib_version() is None:
        return None
    from joblib import Parallel, delayed

    stack.callback(_stop_loky)
    parallel = stack.enter_context(Parallel(n_jobs=workers, batch_size="auto", timeout=timeout))
    return lambda fn, items: parallel(delayed(fn)(item) for item in items)


def _stop_loky() -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True, kill_workers=True)
