"""Pipelines: a source streamed through stages to the consumer, with backpressure.

The stages run in the workers and the chunks go from worker to worker
(``runtime.worker._stages``): the driver sends each chunk of source items (the
first stage's ``chunksize``) with the pipeline's *route*, pickled once, to the
least loaded worker, and takes the last stage's values as the reply; in
between it does nothing, so it no longer bounds the pipeline. A worker chains
the next function stage itself while it has nothing else to do and sends the
chunk on to a peer when work waits; an actor stage's methods are called by
the worker that holds the chunk. The driver keeps at most the sum of the
stages' ``parallelism`` chunks in flight end to end, so the source is read
only as chunks come back (backpressure), and with ``ordered=True`` yields
them in source order. A worker that dies gets its chunks again from the one
that sent them (each hop is a retried task call).

``DOVECOTE_PIPELINE`` picks another path, for comparison: ``hops`` makes each
function stage a hop to another worker (the ZeroMQ pipeline pattern
to the letter); ``driver`` is the former path, each function stage a ``map``
over the workers and each actor stage called from the driver, every item back
in the driver between stages, each stage pulling from the one before only
when its own window has room.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from actors._errors import SerializationError
from actors._future import ActorFuture
from actors._ref import ActorRef, _Method
from runtime import observe, wire
from runtime.driver._tasks import DEFAULT_RETRIES, MapResults, Tasks, _chunked, as_completed

__all__ = ["PATHS", "Stage", "run_pipeline"]

PATHS = {"", "driver", "hops"}  # the values of DOVECOTE_PIPELINE ("": the default)


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline.

    ``fn`` is a function (run in the workers) or an actor method
    (``ref.method``), or a list of actor methods to spread items over.
    ``parallelism`` is the stage's share of the pipeline's window: at most the
    sum over the stages of chunks is in flight. The first stage's ``chunksize``
    sets how many items travel together through every stage. (On the former
    path, ``DOVECOTE_PIPELINE=driver``: each stage's own window, and its own
    chunks.)
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
    steps = [stage if isinstance(stage, Stage) else Stage(stage) for stage in stages]
    path = os.environ.get("DOVECOTE_PIPELINE", "")
    if path not in PATHS:
        raise ValueError(f"DOVECOTE_PIPELINE={path!r}: expected one of {sorted(PATHS)}")
    if steps and path != "driver":
        return _streamed(tasks, source, steps, ordered, every=path == "hops")
    stream: Iterable[Any] = source
    for step in steps:
        stream = _run_stage(tasks, step, stream, ordered)
    return iter(stream)


def _streamed(
    tasks: Tasks, source: Iterable[Any], stages: list[Stage], ordered: bool, every: bool
) -> Iterator[Any]:
    """The stages run worker to worker; the driver sends source chunks and takes
    the last stage's values (see the module's docstring)."""
    steps = [_step(stage.fn) for stage in stages]
    route = (steps, tuple(tasks.slots()), DEFAULT_RETRIES, every)  # as the workers keep it
    try:
        blob, _ = wire.dumps(route, out_of_band=False)
    except Exception as exc:
        culprit = wire.find_unpicklable([(f"stage {i}", s) for i, s in enumerate(steps)])
        raise SerializationError(f"pipeline: cannot pickle {culprit}: {exc}") from exc
    head = (uuid.uuid4().hex, blob, 0, False)  # stage(route_id, route, position, failed, items)
    what = ("pipeline", stages[0].fn)
    send = tasks.chunk_sender(wire.STAGE_METHOD, head, DEFAULT_RETRIES, what, _packed)
    chunks = _chunked(iter(source), stages[0].chunksize)
    window = sum(stage.parallelism for stage in stages)
    results = tasks.chunk_results(send, chunks, window, ordered, None, False)
    return MapResults.over(results, observe.progress_for(False, None))


def _packed(chunk: list[Any]) -> bytes:
    try:
        return wire.pack_items(chunk, chunk)
    except Exception as exc:
        raise SerializationError(str(exc)) from exc


def _step(fn: Any) -> Any:
    """A stage as a worker runs it: a function, or a tuple of actor methods."""
    methods = _actor_methods(fn)
    return fn if methods is None else tuple(methods)


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
