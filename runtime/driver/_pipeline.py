"""Pipelines: a source streamed through stages to the consumer, with backpressure.

Each stage pulls from the one before it only when it has room in its window
(its parallelism), so a fast stage never floods a slow one and memory stays
bounded however long the source is. A function stage runs as a ``map`` over
the workers; an actor stage sends each item to one of its actors' methods
(round robin: fan-out), and its results flow into the next stage (fan-in).
With ``ordered=True`` items leave every stage in source order.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from actors._future import ActorFuture
from actors._ref import ActorRef, _Method
from runtime.driver._tasks import Tasks, as_completed

__all__ = ["Stage", "run_pipeline"]


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline.

    ``fn`` is a function (run in the workers) or an actor method
    (``ref.method``), or a list of actor methods to spread items over.
    ``parallelism`` is how many items (or chunks) it holds in flight.
    """

    fn: Callable[[Any], Any] | Sequence[Any]
    parallelism: int = 8
    chunksize: int = 1

    def __post_init__(self) -> None:
        if self.parallelism < 1 or self.chunksize < 1:
            raise ValueError(f"{self!r}: parallelism and chunksize must be >= 1")


def run_pipeline(
    tasks: Tasks,
    source: Iterable[Any],
    stages: Sequence[Stage | Callable[[Any], Any]],
    ordered: bool,
) -> Iterator[Any]:
    stream: Iterable[Any] = source
    for stage in stages:
        step = stage if isinstance(stage, Stage) else Stage(stage)
        stream = _run_stage(tasks, step, stream, ordered)
    return iter(stream)


def _run_stage(tasks: Tasks, stage: Stage, upstream: Iterable[Any], ordered: bool) -> Iterator[Any]:
    methods = _actor_methods(stage.fn)
    if methods is None:
        return tasks.map(
            stage.fn,  # type: ignore[arg-type]
            upstream,
            stage.chunksize,
            ordered=ordered,
            window=stage.parallelism,
        )
    return _actor_stage(tasks, methods, upstream, stage.parallelism, ordered)


def _actor_methods(fn: Any) -> list[_Method] | None:
    targets = fn if isinstance(fn, list | tuple) else [fn]
    if all(isinstance(t, _Method) for t in targets) and targets:
        return list(targets)
    if any(isinstance(t, _Method | ActorRef) for t in targets):
        raise TypeError(f"an actor stage takes actor methods (ref.method), not {fn!r}")
    return None


def _actor_stage(
    tasks: Tasks, methods: list[_Method], upstream: Iterable[Any], window: int, ordered: bool
) -> Iterator[Any]:
    items = iter(upstream)
    targets = itertools.cycle(methods)
    pending: deque[ActorFuture[Any]] = deque()
    try:
        while True:
            while len(pending) < window:
                item = next(items, _END)
                if item is _END:
                    break
                pending.append(next(targets)(item))
            if not pending:
                return
            if ordered:
                yield pending.popleft().result()
            else:
                done = next(as_completed(tasks.wait_any, list(pending)))
                pending.remove(done)
                yield done.result()
    finally:  # stopped early: withdraw what has not started, without waiting
        tasks.transport.cancels.abandon(list(pending))


_END = object()
