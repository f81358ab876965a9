"""The metrics with their dovecote side, the table and the command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

try:
    import numpy as np
    import psutil
except ImportError as missing:  # the bench extra is not installed: say so, no traceback
    print(
        f"python -m bench needs the 'bench' extra ({missing.name} is not installed): "
        "pip install 'dovecote[bench]'",
        file=sys.stderr,
    )
    raise SystemExit(2) from None
import zmq

import bench
from actors import ActorCrashedError, ActorRef
from bench import _mesh, _pipeline, _raw, _tasks
from bench._actors import Echo, Tally
from bench._common import (
    CALL_TIMEOUT,
    HEARTBEAT,
    KILL_TRIES,
    QUICK,
    TASK_SECONDS,
    TASK_WORKERS,
    TIMEOUT,
    Bench,
    Line,
    MiB,
    Sizes,
    alternate,
    ratio_row,
    row,
)
from runtime import ActorSystem


def dove_latency(ref: ActorRef, n: int) -> list[int]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        ref.echo(i).result(TIMEOUT)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def interleaved(raw: _raw.RawServer, ref: ActorRef, n: int) -> tuple[list[int], list[int]]:
    """Round trips in ns of ``n`` asks a side, one at a time, the sides taking turns
    in an order drawn afresh for each pair: each side meets every change of this
    machine's speed as often as the other, and follows the other as often."""
    rng = random.Random(n)
    raws: list[int] = []
    doves: list[int] = []
    for _ in range(n):
        for dove in (False, True) if rng.random() < 0.5 else (True, False):
            if dove:
                doves += dove_latency(ref, 1)
            else:
                raws += _raw.latency(raw, 1)
    return raws, doves


def cpu_us(pid: int) -> float:
    """CPU time (user and system) a process has used, in microseconds."""
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1e6


class CpuMeter:
    """The CPU a side's caller (this process) and callee use over its rounds."""

    def __init__(self, callee_pid: int) -> None:
        self.callee_pid, self.caller, self.callee, self.calls = callee_pid, 0.0, 0.0, 0

    def wrap(self, run: Callable[[int], list[int]], n: int) -> Callable[[], list[int]]:
        def measured() -> list[int]:
            t0, c0 = time.process_time(), cpu_us(self.callee_pid)
            out = run(n)
            self.caller += (time.process_time() - t0) * 1e6
            self.callee += cpu_us(self.callee_pid) - c0
            self.calls += n
            return sorted(out)

        return measured

    def per_call(self) -> tuple[float, float]:
        """Microseconds of CPU per call: (caller, callee)."""
        return self.caller / self.calls, self.callee / self.calls


def bench_latency(b: Bench) -> list[Line]:
    s, raw, ref = b.sizes, b.server("pickle"), b.echo()
    alternate(1, lambda: _raw.latency(raw, s.warmup), lambda: dove_latency(ref, s.warmup))
    raw_cpu, dove_cpu = CpuMeter(raw.process.pid or 0), CpuMeter(ref.pid().result(TIMEOUT))
    raws, doves = alternate(
        s.rounds,
        raw_cpu.wrap(lambda n: _raw.latency(raw, n), s.calls),
        dove_cpu.wrap(lambda n: dove_latency(ref, n), s.calls),
    )

    def median_us(rounds: list[list[int]], q: float) -> float:
        return statistics.median(r[round(q * (len(r) - 1))] for r in rounds) / 1000

    p50, raw50 = median_us(doves, 0.5), median_us(raws, 0.5)
    each = interleaved(raw, ref, s.rounds * s.calls)
    mixed, raw_mixed = (statistics.median(side) / 1000 for side in (each[1], each[0]))
    with _raw.a_core_busy():
        busy = alternate(
            s.rounds,
            lambda: statistics.median(_raw.latency(raw, s.calls)) / 1000,
            lambda: statistics.median(dove_latency(ref, s.calls)) / 1000,
        )
    us = "{:,.1f} us"
    return [
        row("ask latency p50", p50, raw50, us, True, "<= 1.3x raw", p50 <= 1.3 * raw50),
        row("ask latency p50, interleaved", mixed, raw_mixed, us, True),
        row("ask latency p50, a core busy", *map(statistics.median, busy[::-1]), us, True),
        row("ask latency p99", median_us(doves, 0.99), median_us(raws, 0.99), us, True),
        row(
            "ask CPU per call, driver", *(m.caller / m.calls for m in (dove_cpu, raw_cpu)), us, True
        ),
        row(
            "ask CPU per call, worker", *(m.callee / m.calls for m in (dove_cpu, raw_cpu)), us, True
        ),
    ]


def bench_counts(b: Bench) -> list[Line]:
    """Python calls and bytecodes per ask, in this thread and in the worker's loop,
    against the raw client's; the raw server is not counted (a loop of a receive,
    two pickle calls and a send)."""
    n, raw, ref = b.sizes.counted, b.server("pickle"), b.echo()
    dove_latency(ref, b.sizes.warmup)
    ref.count_from_now().result(TIMEOUT)
    with Tally() as driver:
        dove_latency(ref, n)
    worker_calls, worker_bytecodes = ref.counted().result(TIMEOUT)
    with Tally() as client:
        _raw.latency(raw, n)
    b.notes.append(
        f"counts: per ask over {n:,} asks, sys.settrace's call and opcode events (a "
        "coroutine's resumption is a call); the loops that time the asks included"
    )
    calls, bytecodes = (driver.calls, client.calls), (driver.bytecodes, client.bytecodes)
    return [
        row("Python calls per ask, driver", *(c / n for c in calls), "{:,.1f}", True),
        row("bytecodes per ask, driver", *(c / n for c in bytecodes), "{:,.0f}", True),
        ("Python calls per ask, worker", f"{worker_calls / n:,.1f}", "-", "-", "lower", "-", "-"),
        ("bytecodes per ask, worker", f"{worker_bytecodes / n:,.0f}", "-", "-", "lower", "-", "-"),
    ]


def dove_pipelined(ref: ActorRef, n: int) -> float:
    t0 = time.perf_counter()
    futures = [ref.echo(i) for i in range(n)]
    total = sum(f.result(TIMEOUT) for f in futures)
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2, "dovecote pipelined: wrong replies"
    return elapsed


def bench_pipelined(b: Bench) -> list[Line]:
    n, raw, ref = b.sizes.pipelined, b.server("pickle"), b.echo()
    alternate(1, lambda: _raw.pipelined(raw, 5000), lambda: dove_pipelined(ref, 5000))
    raws, doves = alternate(
        b.sizes.reps, lambda: _raw.pipelined(raw, n), lambda: dove_pipelined(ref, n)
    )
    return [ratio_row("pipelined ask", n, raws, doves, 1.5)]


def dove_tell(ref: ActorRef, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        ref.inc.tell()
    count = ref.count().result(TIMEOUT)
    elapsed = time.perf_counter() - t0
    assert count == n, f"dovecote tell: the actor counted {count}, not {n}"
    return elapsed


def bench_tell(b: Bench) -> list[Line]:
    n, raw = b.sizes.tells, b.server("count")
    alternate(1, lambda: _raw.tell(raw, 5000), lambda: dove_tell(b.echo(), 5000))
    raws, doves = alternate(b.sizes.reps, lambda: _raw.tell(raw, n), lambda: dove_tell(b.echo(), n))
    return [ratio_row("tell", n, raws, doves, 2.0)]


def check_array(sent: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == sent.shape, f"the array came back with shape {got.shape}"
    assert got[::4096].sum() == sent[::4096].sum(), "the array came back with other contents"


def dove_array(ref: ActorRef, arr: np.ndarray) -> float:
    t0 = time.perf_counter()
    out = ref.echo(arr).result(TIMEOUT)
    elapsed = time.perf_counter() - t0
    check_array(arr, out)
    return elapsed


def raw_array(server: _raw.RawServer, arr: np.ndarray) -> float:
    elapsed, frame = _raw.roundtrip_buffer(server, arr)
    check_array(arr, np.frombuffer(frame.buffer, dtype=arr.dtype))
    return elapsed


@contextlib.contextmanager
def without_shared_memory() -> Iterator[ActorSystem]:
    """A one-worker system whose processes send large buffers as zmq frames
    (``DOVECOTE_SHM=0``, seen by the driver's transport and the workers it starts)."""
    before = os.environ.get("DOVECOTE_SHM")
    os.environ["DOVECOTE_SHM"] = "0"
    try:
        system = ActorSystem(workers=1)
    finally:
        if before is None:
            del os.environ["DOVECOTE_SHM"]
        else:
            os.environ["DOVECOTE_SHM"] = before
    with system:
        yield system


def bench_numpy(b: Bench) -> list[Line]:
    """The 256 MiB echo: raw pyzmq copy=False, dovecote through shared memory, and
    dovecote with it off (copy=False frames), alternated in the same run."""
    s, raw, ref = b.sizes, b.server("frames"), b.echo()
    arr = np.ones(s.array_bytes // 8)
    with without_shared_memory() as system:
        framed = system.spawn(Echo, worker=0)
        runs = [lambda: raw_array(raw, arr), lambda: dove_array(ref, arr)]
        runs.append(lambda: dove_array(framed, arr))
        for run in runs:  # warm-up, untimed: the first pays for page faults and segments
            run()
        raws, doves, frames = zip(
            *[[run() for run in runs] for _ in range(s.array_reps)], strict=True
        )
    mib, lines = s.array_bytes // MiB, []
    for how, pick in (("best", min), ("median", statistics.median)):
        rate, raw_rate = 2 * arr.nbytes / pick(doves) / 1e9, 2 * arr.nbytes / pick(raws) / 1e9
        name = f"{mib} MiB numpy echo, shared memory ({how})"
        lines.append(row(name, rate, raw_rate, "{:.2f} GB/s", False, ">= 5 GB/s", rate >= 5))
    for how, pick in (("best", min), ("median", statistics.median)):
        rate, framed_rate = 2 * arr.nbytes / pick(doves) / 1e9, 2 * arr.nbytes / pick(frames) / 1e9
        name = f"{mib} MiB echo, shared memory vs dovecote copy=False ({how})"
        lines.append(row(name, rate, framed_rate, "{:.2f} GB/s", False))
    return lines


def dove_start() -> float:
    t0 = time.perf_counter()
    with ActorSystem(workers=2) as system:
        system.spawn(Echo, worker=0).echo(1).result(TIMEOUT)
        return time.perf_counter() - t0


def bench_start(b: Bench) -> list[Line]:
    raws, doves = alternate(b.sizes.starts, lambda: _raw.start(b.ctx, 2), dove_start)
    took, raw = statistics.median(doves), statistics.median(raws)
    return [row("start (2 workers) to 1st reply", took, raw, "{:.3f} s", True, "< 1 s", took < 1)]


def comeback(ref: ActorRef, old_pid: int) -> None:
    """Call ``ref.pid()`` until a process other than ``old_pid`` answers.

    A call that races the crash fails with ActorCrashedError; it is tried again.
    """
    for _ in range(KILL_TRIES):
        with contextlib.suppress(ActorCrashedError):
            if ref.pid().result(CALL_TIMEOUT) != old_pid:
                return
    raise RuntimeError(f"the actor did not answer from a new process in {KILL_TRIES} calls")


def dove_restart(system: ActorSystem) -> float:
    """Seconds from SIGKILL of worker 1 to a reply from its replacement.

    The actor is fresh each time, so each kill is its first restart: the backoff
    that spaces out later restarts within its period is not what is measured.
    """
    ref = system.spawn(Echo, worker=1)
    pid = ref.pid().result(CALL_TIMEOUT)
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    comeback(ref, pid)
    elapsed = time.perf_counter() - t0
    ref.stop().result(CALL_TIMEOUT)
    return elapsed


def bench_restart(b: Bench) -> list[Line]:
    # Raw side: one echo server started and a ping answered, the bare cost of a
    # replacement process; the ratio shows how much of a restart is process start-up.
    with ActorSystem(workers=2, log_level="ERROR") as system:  # kills are expected
        raws, doves = alternate(
            b.sizes.kills, lambda: _raw.start(b.ctx, 1), lambda: dove_restart(system)
        )
    took, raw = statistics.median(doves), statistics.median(raws)
    return [
        row("restart: SIGKILL to reply (median)", took, raw, "{:.3f} s", True, "< 1 s", took < 1),
        row("restart: SIGKILL to reply (max)", max(doves), max(raws), "{:.3f} s", True),
    ]


def dove_hang(ref: ActorRef) -> float:
    """Seconds from SIGSTOP of the actor's worker to the caller's ActorCrashedError."""
    pid = ref.pid().result(CALL_TIMEOUT)
    proc = psutil.Process(pid)
    try:
        os.kill(pid, signal.SIGSTOP)
        t0 = time.perf_counter()
        try:
            ref.pid().result(CALL_TIMEOUT)
        except ActorCrashedError as exc:
            elapsed = time.perf_counter() - t0
            if "lost its heartbeat" not in str(exc):
                raise RuntimeError(f"the frozen worker's crash had another cause: {exc}") from exc
        else:
            raise RuntimeError("a frozen worker answered a call")
    finally:  # the supervisor kills a frozen worker; if it did not, nothing is left stopped
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running():  # the same process: not a recycled pid
                proc.kill()
    comeback(ref, pid)  # restarted: ready for the next round
    return elapsed


def bench_hang(b: Bench) -> list[Line]:
    with ActorSystem(workers=1, heartbeat_timeout=HEARTBEAT, log_level="ERROR") as system:
        ref = system.spawn(Echo, max_restarts=100, period=60)
        doves = [dove_hang(ref) for _ in range(b.sizes.hangs)]
    took = statistics.median(doves)
    # No raw side: the figure is also shown as a multiple of the heartbeat timeout.
    figure = f"{took:.3f} s ({took / HEARTBEAT:.2f}x)"
    verdict = "PASS" if took < 2 * HEARTBEAT else "MISS"
    metric = f"hang detected (median), timeout {HEARTBEAT:g} s"
    return [(metric, figure, "-", "-", "lower", "< 2x timeout", verdict)]


def dove_bus(b: Bench, n: int) -> tuple[float, int, int]:
    """Events/s from an actor's publisher to a subscription in this process."""
    ref = b.echo()
    ref.shout("warm", 10).result(TIMEOUT)  # the actor's publisher is connected
    with b.system.subscribe("bench") as sub:
        received, t0 = 0, time.perf_counter()
        ref.shout.tell("bench", n)
        last = t0
        with contextlib.suppress(TimeoutError):
            while received + sub.missed < n:
                sub.get(timeout=5)
                received += 1
                last = time.perf_counter()
        return received / (last - t0), received, sub.missed


def bench_bus(b: Bench) -> list[Line]:
    n = b.sizes.tells
    dove_bus(b, 5000)
    results = [dove_bus(b, n) for _ in range(b.sizes.reps)]
    rate, received, missed = sorted(results)[len(results) // 2]
    line = (
        "bus events, actor to driver",
        f"{rate:,.0f}/s",
        "-",
        "-",
        "higher",
        ">= 500,000/s",
        "PASS" if rate >= 500_000 and not missed else "MISS",
    )
    b.notes.append(
        f"bus: median of {len(results)} runs of {n:,} events; in it {received:,} "
        f"received and {missed:,} reported missed (a slow subscriber's gap)"
    )
    return [line]


def rounds(
    reps: int, sides: dict[str, Callable[[], float]], once: tuple[str, ...] = ()
) -> dict[str, list[float]]:
    """Run each side ``reps`` times, round by round: noise hits all alike.

    The sides in ``once``, too slow to repeat, run in the middle round only.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(reps):
        for name, side in sides.items():
            if name not in once or i == reps // 2:
                times[name].append(side())
    return times


def checked(what: str, run: Callable[[], list[Any]], expected: list[Any]) -> Callable[[], float]:
    """A side for ``rounds``: the seconds ``run()`` takes; its results must be ``expected``."""

    def side() -> float:
        took, out = _tasks.timed(run)
        assert out == expected, f"{what}: wrong results"
        return took

    return side


def peer_row(
    metric: str, dove: str, peer: str, figure: str, ratio: float | None, target: str = "-",
    passed: bool | None = None,
) -> Line:  # fmt: skip
    """A line of the task table, where higher is always better; ``ratio`` is dovecote/peer."""
    verdict = "-" if passed is None else "PASS" if passed else "MISS"
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    return (metric, dove, peer, figure, shown, "higher", target, verdict)


def peer_rates(
    metric: str, rate: float, peers: list[tuple[str, float | None, float | None]]
) -> list[Line]:
    """Dovecote's ``rate`` (per second) beside each peer's: (peer, rate, target multiple).

    A peer's rate is None if it is not installed; its target multiple None if it has none.
    """
    lines, dove = [], f"{rate:,.0f}/s"
    for peer, peer_rate, factor in peers:
        if peer_rate is None:
            lines.append(peer_row(metric, dove, peer, "not installed", None))
            continue
        target = "-" if factor is None else f">= {factor:g}x peer"
        passed = None if factor is None else rate >= factor * peer_rate
        figure = f"{peer_rate:,.0f}/s"
        lines.append(peer_row(metric, dove, peer, figure, rate / peer_rate, target, passed))
    return lines


def sized(name: str, n: int, full: int) -> str:
    """The metric's name, and its size if --quick shrank it."""
    return name if n == full else f"{name} ({n:,})"


POOL, EXECUTOR, JOBLIB = "Pool(2)", "ProcessPoolExecutor(2)", "joblib Parallel(n_jobs=2)"


def bench_map(b: Bench) -> list[Line]:
    n, reps, w = b.sizes.map_items, b.sizes.map_reps, TASK_WORKERS
    expected, chunksize = [abs(x) for x in range(n)], _tasks.pool_chunksize(n, w)
    with ExitStack() as stack:
        # The peers first: their processes fork before this system's threads and sockets exist.
        pool, executor = _tasks.start_pool(w, stack), _tasks.start_executor(w, stack)
        joblib = _tasks.start_joblib(w, stack, TIMEOUT)
        system = stack.enter_context(ActorSystem(workers=w))

        def dove_map(items: range) -> list[Any]:
            return list(system.map(abs, items, timeout=TIMEOUT))

        def pool_map(items: range) -> list[Any]:  # Pool's default chunking
            return _tasks.pool_map(pool, abs, items, None, TIMEOUT)

        def executor_map(items: range) -> list[Any]:  # told to chunk as Pool does
            size = _tasks.pool_chunksize(len(items), w)
            return list(executor.map(abs, items, timeout=TIMEOUT, chunksize=size))

        for warm_up in (dove_map, pool_map, executor_map):
            warm_up(range(10_000))
        sides = {
            "dovecote": checked("dovecote map", lambda: dove_map(range(n)), expected),
            POOL: checked("Pool.map", lambda: pool_map(range(n)), expected),
            EXECUTOR: checked("ProcessPoolExecutor.map", lambda: executor_map(range(n)), expected),
        }
        b.notes.append(
            f"map-1m: Pool(2).map chunks of {chunksize:,} (its default), ProcessPoolExecutor(2)"
            f".map told the same, dovecote its default chunks; items/s, median of {reps} rounds"
        )
        jn = n
        if joblib is not None:
            # The warm-up, timed: if the whole map would take too long, joblib maps less.
            probe = min(n, _tasks.JOBLIB_SMALL)
            took = _tasks.timed(lambda: joblib(abs, range(probe)))[0]
            jn = n if took * n / probe <= _tasks.JOBLIB_LIMIT else probe
            sides[JOBLIB] = checked("joblib", lambda: joblib(abs, range(jn)), expected[:jn])
            warm = f"{probe:,} items took {took:.2f} s in its warm-up"
            if probe < n:
                limit = f"{_tasks.JOBLIB_LIMIT:g} s"
                within = f"within {limit}" if jn == n else f"more than {limit}: {jn:,} only"
                warm += f", so {n:,} would take about {took * n / probe:.0f} s, {within}"
            b.notes.append(f"map-1m: joblib ran once, in the middle round ({warm})")
        times = rounds(reps, sides, once=(JOBLIB,))
    joblib_label = JOBLIB if jn == n else f"{JOBLIB}, {jn:,} items"
    return peer_rates(
        sized("map-1m", n, Sizes.map_items),
        n / statistics.median(times["dovecote"]),
        [
            (f"{POOL}.map", n / statistics.median(times[POOL]), 1),
            (f"{EXECUTOR}.map", n / statistics.median(times[EXECUTOR]), None),
            (joblib_label, jn / times[JOBLIB][0] if JOBLIB in times else None, None),
        ],
    )


def bench_submit(b: Bench) -> list[Line]:
    n, reps, w = b.sizes.submits, b.sizes.task_reps, TASK_WORKERS
    with ExitStack() as stack:
        executor = _tasks.start_executor(w, stack)  # before the system: see bench_map
        system = stack.enter_context(ActorSystem(workers=w))

        def dove_submit(k: int) -> list[Any]:
            futures = [system.submit(abs, -i) for i in range(k)]
            return [f.result(TIMEOUT) for f in futures]

        def executor_submit(k: int) -> list[Any]:
            futures = [executor.submit(abs, -i) for i in range(k)]
            return [f.result(TIMEOUT) for f in futures]

        dove_submit(1000)  # warm-ups, untimed
        executor_submit(1000)
        expected = list(range(n))
        times = rounds(
            reps,
            {
                "dovecote": checked("dovecote submit", lambda: dove_submit(n), expected),
                EXECUTOR: checked("executor submit", lambda: executor_submit(n), expected),
            },
        )
    b.notes.append(f"submit-20k: submits, then every result; tasks/s, median of {reps} rounds")
    return peer_rates(
        sized("submit-20k", n, Sizes.submits),
        n / statistics.median(times["dovecote"]),
        [(f"{EXECUTOR}.submit", n / statistics.median(times[EXECUTOR]), 3)],
    )


def bench_cpu(b: Bench) -> list[Line]:
    tasks, reps, w = b.sizes.cpu_tasks, b.sizes.task_reps, TASK_WORKERS
    count, single = _tasks.calibrate(TASK_SECONDS)
    burn, args, expected = _tasks.timed_burn, [count] * tasks, count * (count - 1) // 2
    use: dict[str, list[float]] = {"dovecote": [], POOL: []}  # per round: in tasks / (w x wall)
    with ExitStack() as stack:
        pool = _tasks.start_pool(w, stack)  # before the system: see bench_map
        system = stack.enter_context(ActorSystem(workers=w))

        def side(name: str, run: Callable[[list[int]], list[Any]]) -> Callable[[], float]:
            def timed_side() -> float:
                wall, out = _tasks.timed(lambda: run(args))
                assert [total for total, _ in out] == [expected] * tasks, f"{name}: wrong results"
                use[name].append(sum(took for _, took in out) / (w * wall))
                return wall

            run(args[:w])  # a warm-up, untimed
            return timed_side

        dove = side(
            "dovecote", lambda items: list(system.map(burn, items, chunksize=1, timeout=TIMEOUT))
        )
        peer = side(POOL, lambda items: _tasks.pool_map(pool, burn, items, 1, TIMEOUT))
        times = rounds(reps, {"dovecote": dove, POOL: peer})
    single = min(single, _tasks.burn_time(count, 5))  # before and after: the machine drifts
    b.notes.append(
        f"cpu-40: worker use = the seconds the {tasks} tasks ran, each timed in its worker, "
        f"/ ({w} x the wall time), median of {reps} rounds. Efficiency = {tasks} x the "
        f"single-threaded time of one task ({single * 1000:.1f} ms here, the least of 5 runs "
        f"before the rounds and 5 after) / ({w} x the median wall time): it counts what the "
        f"machine does not give two processes at once, the same for both sides"
    )
    wall, pool_wall = statistics.median(times["dovecote"]), statistics.median(times[POOL])
    eff, pool_eff = tasks * single / (w * wall), tasks * single / (w * pool_wall)
    mine, theirs = statistics.median(use["dovecote"]), statistics.median(use[POOL])
    return [
        peer_row(
            sized("cpu-40, worker use", tasks, Sizes.cpu_tasks),
            f"{mine:.1%} ({wall:.2f} s)",
            f"{POOL}.map, chunksize=1",
            f"{theirs:.1%} ({pool_wall:.2f} s)",
            mine / theirs,
            ">= 95%",
            mine >= 0.95,
        ),
        peer_row(
            sized("cpu-40, efficiency", tasks, Sizes.cpu_tasks),
            f"{eff:.1%}",
            f"{POOL}.map, chunksize=1",
            f"{pool_eff:.1%}",
            eff / pool_eff,
        ),
    ]


# Shown in this order, in two tables; "start" runs first, before the shared ActorSystem exists.
METRICS: dict[str, Callable[[Bench], list[Line]]] = {
    "latency": bench_latency,
    "counts": bench_counts,
    "pipelined": bench_pipelined,
    "tell": bench_tell,
    "numpy": bench_numpy,
    "start": bench_start,
    "restart": bench_restart,
    "hang": bench_hang,
    "bus": bench_bus,
    "actor-ask": _mesh.bench_actor_ask,
    "mesh": _mesh.bench_mesh,
    "actors": _mesh.bench_actors,
    "bus-frames": _mesh.bench_bus_frames,
}
TASK_METRICS: dict[str, Callable[[Bench], list[Line]]] = {
    "map-1m": bench_map,
    "submit-20k": bench_submit,
    "cpu-40": bench_cpu,
    "pipeline": _pipeline.bench_pipeline,
}
ALL_METRICS = {**METRICS, **TASK_METRICS}
COLUMNS = ("metric", "dovecote", "raw pyzmq", "dovecote/raw", "better", "target", "result")
TASK_COLUMNS = ("metric", "dovecote", "peer", "peer's figure", "dovecote/peer", *COLUMNS[4:])


def print_table(columns: Line, lines: list[Line]) -> None:
    widths = [max(len(line[i]) for line in [columns, *lines]) for i in range(len(columns))]
    for line in [columns, tuple("-" * w for w in widths), *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        "python -m bench", description=bench.__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", choices=ALL_METRICS, metavar="NAME", help=", ".join(ALL_METRICS))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanup runs
    note = " (--quick: reduced sizes; the targets are for the full run)" if args.quick else ""
    print(f"dovecote {importlib.metadata.version('dovecote')} benchmark{note}")
    versions = f"pyzmq {zmq.pyzmq_version()}  libzmq {zmq.zmq_version()}  numpy {np.__version__}"
    peers = f"joblib {_tasks.joblib_version() or 'not installed'}"
    peers += f"  start method {_tasks.start_method()}"
    print(f"Python {platform.python_version()}  {versions}  {peers}  cpu_count {os.cpu_count()}\n")
    started, results, errors = time.perf_counter(), {}, []
    with ExitStack() as stack:
        shared = Bench(QUICK if args.quick else Sizes(), stack)
        for name in sorted(ALL_METRICS, key=lambda name: name != "start"):
            if args.only in (None, name):
                print(f"running {name} ...", file=sys.stderr, flush=True)
                try:
                    results[name] = ALL_METRICS[name](shared)
                except Exception as exc:
                    if isinstance(exc, zmq.Again):  # RCVTIMEO on a raw socket
                        exc = TimeoutError("a raw pyzmq server did not reply in time")
                    errors.append(f"ERROR in {name}: {type(exc).__name__}: {exc}")
                    width = len(TASK_COLUMNS if name in TASK_METRICS else COLUMNS)
                    results[name] = [(name, "ERROR", *["-"] * (width - 2))]
    tables = [
        (columns, [line for name in metrics for line in results.get(name, [])])
        for columns, metrics in ((COLUMNS, METRICS), (TASK_COLUMNS, TASK_METRICS))
    ]
    for i, (columns, lines) in enumerate(table for table in tables if table[1]):
        print("\n" * bool(i), end="")  # a blank line between the tables
        print_table(columns, lines)
    print("\n".join(["", *shared.notes, *errors, f"total {time.perf_counter() - started:.1f} s"]))
    return 1 if errors else 0
