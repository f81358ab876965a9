"""What the metrics share: sizes, the shared system and raw servers, and the table's lines."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import zmq

from actors import ActorRef
from bench import _raw
from bench._actors import Echo
from runtime import ActorSystem

MiB = 1024 * 1024
TIMEOUT = 60.0  # seconds any one dovecote result may take: a hang becomes an error
CALL_TIMEOUT = 10.0  # the same for one call around a crash
KILL_TRIES = 200  # calls after a crash before giving up on the actor's comeback
HEARTBEAT = 1.0  # heartbeat_timeout of the system the hang metric freezes workers of
TASK_WORKERS = 2  # worker processes of dovecote and of each peer in the task metrics
TASK_SECONDS = 0.05  # what one cpu-40 task takes, single-threaded
Line = tuple[str, ...]


@dataclass(frozen=True)
class Sizes:
    # Latency rounds of `calls` calls each, after `warmup` calls, raw and dovecote
    # alternating: many short rounds, so that the two sides of a pair run within a
    # second of each other (this machine's speed moves within seconds).
    rounds: int = 25
    calls: int = 400
    warmup: int = 500
    pipelined: int = 100_000
    tells: int = 200_000
    reps: int = 5  # repetitions of the pipelined and tell runs
    array_bytes: int = 256 * MiB
    array_reps: int = 5
    starts: int = 3
    kills: int = 20  # restarts after a SIGKILL
    hangs: int = 3  # workers frozen until the supervisor notices
    map_items: int = 1_000_000
    submits: int = 20_000
    cpu_tasks: int = 40
    task_reps: int = 3  # rounds of the task metrics (joblib runs in one of them)
    peer_asks: int = 400  # actor-to-actor asks per round (``rounds`` rounds)
    mesh_calls: int = 20_000  # asks per caller in the 4 x 4 metric
    actors: int = 1000  # actors spawned by the creation and memory metric
    bus_events: int = 200_000  # events per run in the events-per-frame metric
    pipeline_items: int = 300_000  # items per run of the 3-stage pipeline metric
    pipeline_reps: int = 5  # its rounds, each of the three paths once
    counted: int = 1000  # asks whose Python calls and bytecodes are counted
    map_reps: int = 7  # rounds of the map of 1M items: a fifth of a second a side each


QUICK = Sizes(3, 500, 200, 20_000, 50_000, 2, 64 * MiB, 2, 1, 5, 1, 100_000, 5_000, 40, 2)
QUICK = dataclasses.replace(
    QUICK,
    peer_asks=500,
    mesh_calls=5000,
    actors=200,
    bus_events=50_000,
    pipeline_items=30_000,
    pipeline_reps=2,
    counted=200,
    map_reps=2,
)


class Bench:
    """What the metrics share: sizes, one ActorSystem and the raw servers, made on demand."""

    def __init__(self, sizes: Sizes, stack: ExitStack) -> None:
        self.sizes, self._stack = sizes, stack
        self.ctx = zmq.Context()
        stack.callback(self.ctx.destroy, linger=0)
        self._system: ActorSystem | None = None
        self._servers: dict[str, _raw.RawServer] = {}
        self.notes: list[str] = []  # printed under the tables

    @property
    def system(self) -> ActorSystem:
        """The shared ``ActorSystem(workers=2)``, started on first use."""
        if self._system is None:
            self._system = self._stack.enter_context(ActorSystem(workers=2))
        return self._system

    def echo(self) -> ActorRef:
        """A fresh Echo actor on worker 0 of the shared system."""
        return self.system.spawn(Echo, worker=0)

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


def rate_row(
    metric: str, n: int, raws: list[float], doves: list[float], target: int | None
) -> Line:
    """A throughput line from the median seconds for ``n`` messages each side;
    ``target`` None: a line without one."""
    rate, raw_rate = n / statistics.median(doves), n / statistics.median(raws)
    if target is None:
        return row(metric, rate, raw_rate, "{:,.0f}/s", False)
    return row(metric, rate, raw_rate, "{:,.0f}/s", False, f">= {target:,}/s", rate >= target)


def ratio_row(metric: str, n: int, raws: list[float], doves: list[float], times: float) -> Line:
    """A throughput line whose target is ``times`` the raw side's rate, in the same run."""
    rate, raw_rate = n / statistics.median(doves), n / statistics.median(raws)
    target = f">= {times}x raw"
    return row(metric, rate, raw_rate, "{:,.0f}/s", False, target, rate >= times * raw_rate)
