"""The metrics, the dovecote side of each, the table and the command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from actors import ActorRef
from bench import _raw
from bench._actors import Echo
from runtime import ActorSystem

MiB = 1024 * 1024
TIMEOUT = 60.0  # seconds any one dovecote result may take: a hang becomes an error


@dataclass(frozen=True)
class Sizes:
    rounds: int = 5
    calls: int = 2000
    warmup: int = 500
    pipelined: int = 100_000
    tells: int = 200_000
    reps: int = 3
    array_bytes: int = 256 * MiB
    starts: int = 3


QUICK = Sizes(rounds=3, calls=300, warmup=100, pipelined=10_000, tells=20_000, reps=1,
              array_bytes=32 * MiB, starts=1)  # fmt: skip


@dataclass
class Row:
    metric: str
    dove: float
    raw: float
    unit: str
    lower_is_better: bool
    target: str = "-"
    passed: bool | None = None


class Bench:
    """What the metrics share: sizes, one ActorSystem and the raw servers, made on demand."""

    def __init__(self, sizes: Sizes, stack: ExitStack) -> None:
        self.sizes = sizes
        self._stack = stack
        self.ctx = zmq.Context()
        stack.callback(self.ctx.destroy, linger=0)
        self._system: ActorSystem | None = None
        self._servers: dict[str, _raw.RawServer] = {}

    def system(self) -> ActorSystem:
        if self._system is None:
            self._system = self._stack.enter_context(ActorSystem(workers=2))
        return self._system

    def echo(self) -> ActorRef:
        """A fresh Echo actor on worker 0."""
        return self.system().spawn(Echo, worker=0)

    def server(self, mode: str) -> _raw.RawServer:
        if mode not in self._servers:
            server = self._servers[mode] = _raw.RawServer(self.ctx, mode)
            self._stack.callback(server.stop)
            server.ping()
        return self._servers[mode]


def alternate(reps: int, raw: Callable[[], Any], dove: Callable[[], Any]) -> tuple[list, list]:
    """Run raw and dovecote ``reps`` times each, alternating: noise hits both alike."""
    raws, doves = [], []
    for _ in range(reps):
        raws.append(raw())
        doves.append(dove())
    return raws, doves


def percentile(sorted_samples: list[int], q: float) -> float:
    return float(sorted_samples[round(q * (len(sorted_samples) - 1))])


def dove_latency(ref: ActorRef, n: int) -> list[int]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        ref.echo(i).result(TIMEOUT)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def bench_latency(b: Bench) -> list[Row]:
    s, raw, ref = b.sizes, b.server("pickle"), b.echo()
    alternate(1, lambda: _raw.latency(raw, s.warmup), lambda: dove_latency(ref, s.warmup))
    raws, doves = alternate(
        s.rounds, lambda: sorted(_raw.latency(raw, s.calls)), lambda: sorted(dove_latency(ref, s.calls))
    )  # fmt: skip
    rows = []
    for q in (0.5, 0.99):
        dove = statistics.median(percentile(r, q) for r in doves) / 1000
        raw_us = statistics.median(percentile(r, q) for r in raws) / 1000
        rows.append(Row(f"ask latency p{round(q * 100)}", dove, raw_us, "us", True))
    rows[0].target, rows[0].passed = "<= 2x raw", rows[0].dove <= 2 * rows[0].raw
    return rows


def dove_pipelined(ref: ActorRef, n: int) -> float:
    t0 = time.perf_counter()
    futures = [ref.echo(i) for i in range(n)]
    total = sum(f.result(TIMEOUT) for f in futures)
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2, "dovecote pipelined: wrong replies"
    return elapsed


def bench_pipelined(b: Bench) -> list[Row]:
    s, raw, ref = b.sizes, b.server("pickle"), b.echo()
    alternate(1, lambda: _raw.pipelined(raw, 2000), lambda: dove_pipelined(ref, 2000))
    n = s.pipelined
    raws, doves = alternate(s.reps, lambda: _raw.pipelined(raw, n), lambda: dove_pipelined(ref, n))
    dove, raw_rate = n / statistics.median(doves), n / statistics.median(raws)
    return [Row("pipelined ask", dove, raw_rate, "calls/s", False, ">= 50,000", dove >= 50_000)]


def dove_tell(ref: ActorRef, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        ref.inc.tell()
    count = ref.count().result(TIMEOUT)
    elapsed = time.perf_counter() - t0
    assert count == n, f"dovecote tell: the actor counted {count}, not {n}"
    return elapsed


def bench_tell(b: Bench) -> list[Row]:
    s, raw = b.sizes, b.server("count")
    alternate(1, lambda: _raw.tell(raw, 2000), lambda: dove_tell(b.echo(), 2000))
    n = s.tells
    raws, doves = alternate(s.reps, lambda: _raw.tell(raw, n), lambda: dove_tell(b.echo(), n))
    dove, raw_rate = n / statistics.median(doves), n / statistics.median(raws)
    return [Row("tell", dove, raw_rate, "msg/s", False, ">= 200,000", dove >= 200_000)]


def check_array(sent: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == sent.shape, f"array came back with shape {got.shape}"
    assert got[::4096].sum() == sent[::4096].sum(), "array came back with other contents"


def dove_array(ref: ActorRef, arr: np.ndarray) -> float:
    t0 = time.perf_counter()
    out = ref.echo(arr).result(TIMEOUT)
    elapsed = time.perf_counter() - t0
    check_array(arr, out)
    return elapsed


def raw_array(server: _raw.RawServer, arr: np.ndarray) -> float:
    elapsed, frame = _raw.roundtrip_buffer(server, arr)
    check_array(arr, np.frombuffer(frame, dtype=arr.dtype))
    return elapsed


def bench_numpy(b: Bench) -> list[Row]:
    s, raw, ref = b.sizes, b.server("frames"), b.echo()
    arr = np.ones(s.array_bytes // 8)
    raws, doves = alternate(s.reps, lambda: raw_array(raw, arr), lambda: dove_array(ref, arr))
    label = f"{s.array_bytes // MiB} MiB numpy echo"
    rows = []
    for how, pick in (("best", min), ("median", statistics.median)):
        dove, raw_rate = 2 * arr.nbytes / pick(doves) / 1e9, 2 * arr.nbytes / pick(raws) / 1e9
        rows.append(Row(f"{label} ({how})", dove, raw_rate, "GB/s", False, ">= 1 GB/s", dove >= 1))
    return rows


def dove_start() -> float:
    t0 = time.perf_counter()
    with ActorSystem(workers=2) as system:
        system.spawn(Echo, worker=0).echo(1).result(TIMEOUT)
        return time.perf_counter() - t0


def bench_start(b: Bench) -> list[Row]:
    raws, doves = alternate(b.sizes.starts, lambda: _raw.start(b.ctx, 2), dove_start)
    dove, raw = statistics.median(doves), statistics.median(raws)
    return [Row("start (2 workers) to 1st reply", dove, raw, "s", True, "< 1 s", dove < 1.0)]


# Run in this order (start first, before the shared system exists); printed as listed.
METRICS: dict[str, Callable[[Bench], list[Row]]] = {
    "start": bench_start,
    "latency": bench_latency,
    "pipelined": bench_pipelined,
    "tell": bench_tell,
    "numpy": bench_numpy,
}
SHOWN = ("latency", "pipelined", "tell", "numpy", "start")
FORMATS = {"us": "{:,.1f} us", "calls/s": "{:,.0f}/s", "msg/s": "{:,.0f}/s", "GB/s": "{:.2f} GB/s",
           "s": "{:.3f} s"}  # fmt: skip
COLUMNS = ("metric", "dovecote", "raw pyzmq", "dovecote/raw", "better", "target", "result")


def format_row(row: Row) -> tuple[str, ...]:
    fmt = FORMATS[row.unit]
    verdict = "-" if row.passed is None else "PASS" if row.passed else "MISS"
    better = "lower" if row.lower_is_better else "higher"
    ratio = f"{row.dove / row.raw:.2f}x"
    return (row.metric, fmt.format(row.dove), fmt.format(row.raw), ratio, better, row.target,
            verdict)  # fmt: skip


def print_table(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in [COLUMNS, *lines]) for i in range(len(COLUMNS))]
    for line in [COLUMNS, tuple("-" * w for w in widths), *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def print_header(quick: bool) -> None:
    print(f"dovecote {importlib.metadata.version('dovecote')} benchmark"
          f"{' (--quick: reduced sizes, targets are for the full run)' if quick else ''}")  # fmt: skip
    print(f"Python {platform.python_version()}  pyzmq {zmq.pyzmq_version()}  "
          f"libzmq {zmq.zmq_version()}  numpy {np.__version__}  cpu_count {os.cpu_count()}")  # fmt: skip
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", choices=SHOWN, metavar="NAME", help=f"one of {', '.join(SHOWN)}")
    args = parser.parse_args(argv)
    print_header(args.quick)
    started, results, failed = time.perf_counter(), {}, False
    with ExitStack() as stack:
        bench = Bench(QUICK if args.quick else Sizes(), stack)
        for name, run in METRICS.items():
            if args.only not in (None, name):
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = [format_row(row) for row in run(bench)]
            except Exception as exc:
                failed = True
                results[name] = [(name, f"ERROR {type(exc).__name__}: {exc}", *[""] * 5)]
    print_table([line for name in SHOWN for line in results.get(name, [])])
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0
