"""Pipeline stages in the workers: chunks go from worker to worker, and the
driver only feeds the source and drains the sink.

::

    driver ──stage(route, 0, items)──▶ worker A ──stage(route, 2, items)──▶ worker B
      ▲                                stage 0 here, stage 1               stage 2, the last:
      │                                chained here (an actor              its values pickled
      │                                stage: called from here)            once, as the reply
      └───── (values, failed) ◀──────── A relays B's reply ◀────────────────────┘

The driver sends a chunk of source items with the pipeline's *route* (its
steps, the workers' slots and the retries per hop, pickled once per pipeline
and kept here by id; a step is a function, or a tuple of actor methods) to
the least loaded worker. That worker runs the first step over the chunk (at
C speed), calls the methods of the actor steps that follow from here, and
takes each function step after that itself while nothing else waits in its
mailbox: chained, as Flink chains operators, since any worker can run any
step and a hop costs two messages. When work does wait here, the chunk goes
on to the peer with the fewest of this worker's hops in flight, one hop per
peer at a time (``CREDIT``): fan-out where there is room, never a flood. With
``every`` (``DOVECOTE_PIPELINE=hops``) each function step is a hop of its
own, to another worker (the least loaded by this one's count): the ZeroMQ
pipeline pattern to the letter.

A hop is a task call with a retry table, so a worker that dies holding a chunk
gets it again, in its successor, from the one that sent it (the driver, for
the first hop); each reply is taken once, so the driver sees each chunk's
values once. The last step's values come back pickled once (``pack_items``)
and are relayed as bytes by the workers before it.

An item that raises becomes a ``TaskFailure`` in its place; later steps pass
it on untouched, and the driver raises it where the item's result would be.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from actors._errors import ActorStoppedError
from actors._future import ActorFuture
from actors._ref import ActorRef
from runtime import wire
from runtime.client import Transport
from runtime.wire import Request
from runtime.worker._inbox import Inbox
from runtime.worker._replies import Replies, unpickling_error
from runtime.worker._tasks import run_chunk

__all__ = ["Stages"]

STAGE_METHOD = wire.STAGE_METHOD
CREDIT = 1  # hops a worker keeps in flight to each peer while its own work waits
ROUTES_KEPT = 64  # routes (pipelines) remembered per worker; the oldest goes first


# (steps, worker slots, retries per hop, whether every function step is a hop of its own)
_Route = tuple[list[Any], tuple[int, ...], int, bool]


class _Hop:
    """One chunk's visit to this worker: the call that brought it and its route.
    Internal."""

    __slots__ = ("every", "request", "retries", "route", "route_id", "slots", "start", "steps")

    def __init__(self, request: Request, args: tuple[Any, ...], route: _Route) -> None:
        self.request = request
        self.route_id, self.route, self.start = args[:3]
        self.steps, self.slots, self.retries, self.every = route


class Stages:
    """The pipeline hops of one worker (``stage`` calls to ``wire.TASK_ACTOR``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: Transport,
        replies: Replies,
        inbox: Inbox,
        system_id: str,
    ) -> None:
        self.loop = loop
        self.transport = transport
        self.replies = replies
        self.call_user = inbox.call_user
        self.slot = inbox.slot
        self._mailbox = inbox.mailbox  # what this worker has read and not yet begun
        self.system_id = system_id
        self._routes: dict[str, _Route] = {}
        self._inflight: dict[int, int] = {}  # hops this worker sent on, per worker
        self._refs: dict[tuple[int, int], ActorRef] = {}
        self._turns = itertools.count()  # spreads items over an actor step's methods

    def run(self, request: Request) -> None:
        """A chunk arrived: ``stage(route_id, route, position, failed, items)``, the
        route and the items pickled (see ``wire.pack_items``)."""
        try:
            try:
                args, _ = wire.load_call(request.blob, request.bufs)
                hop = _Hop(request, args, self._route(args[0], args[1]))
                items = wire.loads(args[4])
            except BaseException as exc:
                raise unpickling_error(request, exc) from exc
        except BaseException as exc:  # SystemExit too: it goes to the caller
            self.replies.reply_error(request, exc)
            return
        self._advance(hop, hop.start, items, args[3])

    def _route(self, route_id: str, blob: bytes) -> _Route:
        route = self._routes.get(route_id)
        if route is None:
            route = self._routes[route_id] = wire.loads(blob)
            if len(self._routes) > ROUTES_KEPT:
                del self._routes[next(iter(self._routes))]
        return route

    def _advance(self, hop: _Hop, position: int, items: list[Any], failed: bool) -> None:
        """Run ``hop``'s steps from ``position`` until the chunk leaves: its first
        step here, actor steps by calls from here, and each later function step
        here too unless ``_peer_for`` names another worker; after the last step,
        the values go back as the reply."""
        steps = hop.steps
        try:
            while position < len(steps):
                step = steps[position]
                if type(step) is tuple:
                    self._call_actors(hop, position, items, step)
                    return
                if position > hop.start and (peer := self._peer_for(hop)) is not None:
                    self._send_on(hop, position, items, failed, peer)
                    return
                items, failed = self.call_user(run_step, (step, items, failed), {})
                position += 1
            blob = wire.pack_items((items, failed), items)  # once: relayed as is
        except BaseException as exc:  # an output that does not pickle, SystemExit too
            self.replies.reply_error(hop.request, exc)
            return
        self.replies.reply(hop.request, blob)

    def _call_actors(
        self, hop: _Hop, position: int, items: list[Any], methods: Sequence[Any]
    ) -> None:
        """Call one of the step's actor methods per item (round robin); the hop goes
        on once every call has come back."""
        turn, count = next(self._turns), len(methods)
        calls: list[Any] = []
        for i, item in enumerate(items):
            if type(item) is wire.TaskFailure:
                calls.append(item)
                continue
            try:
                calls.append(methods[(turn + i) % count](item))
            except BaseException as exc:  # the item does not pickle
                calls.append(wire.TaskFailure(wire.encode_error(exc)))
        _Gather(self.loop, calls, lambda out, failed: self._resume(hop, position + 1, out, failed))

    def _resume(self, hop: _Hop, position: int, items: list[Any], failed: bool) -> None:
        self._advance(hop, position, items, failed)
        self.replies.schedule()

    def _peer_for(self, hop: _Hop) -> int | None:
        """The worker for the chunk's next function step: None (this one, chained)
        while nothing else waits here; else the peer with the fewest of this
        worker's hops, if it has credit left. With ``every`` (each step a hop), the
        peer with the fewest of this worker's hops (this worker, by a call to
        itself, when it is the only one)."""
        inflight, here = self._inflight, self.slot
        if hop.every:
            return min(hop.slots, key=lambda s: (s == here, inflight.get(s, 0)))
        if not self._mailbox.waiting():
            return None
        slot = min(hop.slots, key=lambda s: (s == here, inflight.get(s, 0)))
        return None if slot == here or inflight.get(slot, 0) >= CREDIT else slot

    def _send_on(self, hop: _Hop, position: int, items: list[Any], failed: bool, slot: int) -> None:
        """The chunk to worker ``slot`` for the step at ``position``; its reply is
        relayed to this hop's caller."""
        inflight = self._inflight
        args = (hop.route_id, hop.route, position, failed, wire.pack_items(items, items))
        what = ("pipeline stage", hop.steps[position])
        future = self.transport.call(self._ref(slot, hop.retries), STAGE_METHOD, args, {}, what)
        inflight[slot] = inflight.get(slot, 0) + 1
        request = hop.request
        relay = functools.partial(self._relay, request, slot)
        future.add_done_callback(lambda done: self.loop.call_soon(relay, done))

    def _relay(self, request: Request, slot: int, future: ActorFuture[Any]) -> None:
        self._inflight[slot] -= 1
        self.replies.forward(request, future)

    def _ref(self, slot: int, retries: int) -> ActorRef:
        """The task target of a worker, with the retry table of a hop."""
        ref = self._refs.get((slot, retries))
        if ref is None:
            table = ((STAGE_METHOD, retries),) if retries else ()
            ref = ActorRef(self.system_id, wire.TASK_ACTOR, slot, "tasks", table)
            self._refs[slot, retries] = ref
        return ref


class _Gather:
    """Waits for an actor step's calls (futures, or failures already known) and
    hands on their outcomes in order. Internal."""

    __slots__ = ("calls", "left", "loop", "then")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        calls: list[Any],
        then: Callable[[list[Any], bool], None],
    ) -> None:
        self.loop, self.calls, self.then = loop, calls, then
        futures = [c for c in calls if type(c) is not wire.TaskFailure]
        self.left = len(futures)
        if not futures:
            loop.call_soon(self._done)
        for future in futures:
            future.add_done_callback(lambda _: self.loop.call_soon(self._one))

    def _one(self) -> None:
        self.left -= 1
        if self.left == 0:
            self._done()

    def _done(self) -> None:
        out, failed = [], False
        for call in self.calls:
            if type(call) is wire.TaskFailure:
                out.append(call)
                failed = True
            elif call.cancelled() or call.exception() is not None:
                cancelled = ActorStoppedError(f"{call.label} was cancelled")
                exc = cancelled if call.cancelled() else call.exception()
                out.append(wire.TaskFailure(wire.encode_error(exc)))
                failed = True
            else:
                out.append(call.result())
        self.then(out, failed)


def run_step(fn: Callable[[Any], Any], items: list[Any], failed: bool) -> tuple[list[Any], bool]:
    """``run_chunk``, passing on the items that failed at an earlier step."""
    if not failed:
        return run_chunk(fn, items)

    def step(item: Any) -> Any:
        return item if type(item) is wire.TaskFailure else fn(item)

    return run_chunk(step, items)[0], True
