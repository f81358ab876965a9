"""The metrics with their dovecote side, the table and the command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import zmq

import bench
from actors import ActorCrashedError, ActorRef
from bench import _raw
from bench._actors import Echo
from runtime import ActorSystem

MiB = 1024 * 1024
TIMEOUT = 60.0  # seconds any one dovecote result may take: a hang becomes an error
CALL_TIMEOUT = 10.0  # the same for one call around a crash
KILL_TRIES = 200  # calls after a crash before giving up on the actor's comeback
HEARTBEAT = 1.0  # heartbeat_timeout of the system the hang metric freezes workers of
Line = tuple[str, ...]


@dataclass(frozen=True)
class Sizes:
    rounds: int = 5  # latency rounds of `calls` calls each, after `warmup` calls
    calls: int = 2000
    warmup: int = 500
    pipelined: int = 100_000
    tells: int = 200_000
    reps: int = 5  # repetitions of the pipelined and tell runs
    array_bytes: int = 256 * MiB
    array_reps: int = 3
    starts: int = 3
    kills: int = 20  # restarts after a SIGKILL
    hangs: int = 3  # workers frozen until the supervisor notices


QUICK = Sizes(3, 500, 200, 20_000, 50_000, 2, 64 * MiB, 2, 1, 5, 1)


class Bench:
    """What the metrics share: sizes, one ActorSystem and the raw servers, made on demand."""

    def __init__(self, sizes: Sizes, stack: ExitStack) -> None:
        self.sizes, self._stack = sizes, stack
        self.ctx = zmq.Context()
        stack.callback(self.ctx.destroy, linger=0)
        self._system: ActorSystem | None = None
        self._servers: dict[str, _raw.RawServer] = {}

    def echo(self) -> ActorRef:
        """A fresh Echo actor on worker 0 of the shared system."""
        if self._system is None:
            self._system = self._stack.enter_context(ActorSystem(workers=2))
        return self._system.spawn(Echo, worker=0)

    def server(self, mode: str) -> _raw.RawServer:
        if mode not in self._servers:
            server = self._servers[mode] = _raw.RawServer(self.ctx, mode)
            self._stack.callback(server.stop)
            server.ping()
        return self._servers[mode]


def alternate(reps: int, raw: Callable[[], Any], dove: Callable[[], Any]) -> tuple[list, list]:
    """Run raw and dovecote ``reps`` times each, alternating: noise hits both alike."""
    pairs = [(raw(), dove()) for _ in range(reps)]
    return [r for r, _ in pairs], [d for _, d in pairs]


def row(
    metric: str, dove: float, raw: float, fmt: str, lower_better: bool, target: str = "-",
    passed: bool | None = None,
) -> Line:  # fmt: skip
    """A table line: ``fmt`` formats both figures; ``passed`` is None without a target."""
    verdict = "-" if passed is None else "PASS" if passed else "MISS"
    better, ratio = "lower" if lower_better else "higher", f"{dove / raw:.2f}x"
    return (metric, fmt.format(dove), fmt.format(raw), ratio, better, target, verdict)


def rate_row(metric: str, n: int, raws: list[float], doves: list[float], target: int) -> Line:
    """A throughput line from the median seconds for ``n`` messages each side."""
    rate, raw_rate = n / statistics.median(doves), n / statistics.median(raws)
    return row(metric, rate, raw_rate, "{:,.0f}/s", False, f">= {target:,}/s", rate >= target)


def dove_latency(ref: ActorRef, n: int) -> list[int]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        ref.echo(i).result(TIMEOUT)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def bench_latency(b: Bench) -> list[Line]:
    s, raw, ref = b.sizes, b.server("pickle"), b.echo()
    alternate(1, lambda: _raw.latency(raw, s.warmup), lambda: dove_latency(ref, s.warmup))
    raws, doves = alternate(
        s.rounds,
        lambda: sorted(_raw.latency(raw, s.calls)),
        lambda: sorted(dove_latency(ref, s.calls)),
    )

    def median_us(rounds: list[list[int]], q: float) -> float:
        return statistics.median(r[round(q * (len(r) - 1))] for r in rounds) / 1000

    p50, raw50 = median_us(doves, 0.5), median_us(raws, 0.5)
    return [
        row("ask latency p50", p50, raw50, "{:,.1f} us", True, "<= 2x raw", p50 <= 2 * raw50),
        row("ask latency p99", median_us(doves, 0.99), median_us(raws, 0.99), "{:,.1f} us", True),
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
    return [rate_row("pipelined ask", n, raws, doves, 50_000)]


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
    return [rate_row("tell", n, raws, doves, 200_000)]


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


def bench_numpy(b: Bench) -> list[Line]:
    s, raw, ref = b.sizes, b.server("frames"), b.echo()
    arr = np.ones(s.array_bytes // 8)
    raw_once, dove_once = lambda: raw_array(raw, arr), lambda: dove_array(ref, arr)
    alternate(1, raw_once, dove_once)  # warm-up, untimed: the first pays for page faults
    raws, doves = alternate(s.array_reps, raw_once, dove_once)
    lines = []
    for how, pick in (("best", min), ("median", statistics.median)):
        rate, raw_rate = 2 * arr.nbytes / pick(doves) / 1e9, 2 * arr.nbytes / pick(raws) / 1e9
        name = f"{s.array_bytes // MiB} MiB numpy echo ({how})"
        lines.append(row(name, rate, raw_rate, "{:.2f} GB/s", False, ">= 1 GB/s", rate >= 1))
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


# Shown in this order; "start" runs first, before the shared ActorSystem exists.
METRICS: dict[str, Callable[[Bench], list[Line]]] = {
    "latency": bench_latency,
    "pipelined": bench_pipelined,
    "tell": bench_tell,
    "numpy": bench_numpy,
    "start": bench_start,
    "restart": bench_restart,
    "hang": bench_hang,
}
COLUMNS = ("metric", "dovecote", "raw pyzmq", "dovecote/raw", "better", "target", "result")


def print_table(lines: list[Line]) -> None:
    widths = [max(len(line[i]) for line in [COLUMNS, *lines]) for i in range(len(COLUMNS))]
    for line in [COLUMNS, tuple("-" * w for w in widths), *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        "python -m bench", description=bench.__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", choices=METRICS, metavar="NAME", help=", ".join(METRICS))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanup runs
    note = " (--quick: reduced sizes; the targets are for the full run)" if args.quick else ""
    print(f"dovecote {importlib.metadata.version('dovecote')} benchmark{note}")
    versions = f"pyzmq {zmq.pyzmq_version()}  libzmq {zmq.zmq_version()}  numpy {np.__version__}"
    print(f"Python {platform.python_version()}  {versions}  cpu_count {os.cpu_count()}\n")
    started, results, errors = time.perf_counter(), {}, []
    with ExitStack() as stack:
        shared = Bench(QUICK if args.quick else Sizes(), stack)
        for name in sorted(METRICS, key=lambda name: name != "start"):
            if args.only in (None, name):
                print(f"running {name} ...", file=sys.stderr, flush=True)
                try:
                    results[name] = METRICS[name](shared)
                except Exception as exc:
                    if isinstance(exc, zmq.Again):  # RCVTIMEO on a raw socket
                        exc = TimeoutError("a raw pyzmq server did not reply in time")
                    errors.append(f"ERROR in {name}: {type(exc).__name__}: {exc}")
                    results[name] = [(name, "ERROR", *["-"] * 5)]
    print_table([line for name in METRICS for line in results.get(name, [])])
    print("\n".join(["", *errors, f"total {time.perf_counter() - started:.1f} s"]))
    return 1 if errors else 0
