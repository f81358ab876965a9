"""Concurrency inside one actor where declared (issue 10, item 5): with
``max_concurrency = n`` up to n async methods are in progress at once, started in
arrival order; the default stays one message at a time. No test relies on timing
for what it asserts: overlap is proven by calls that complete only together."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import selectors
from typing import Any

import pytest

from actors import Actor, ActorRef, ActorStoppedError, concurrent
from runtime import ActorSystem
from runtime.core import Cell
from runtime.worker._health import log_async_hangs
from runtime.worker._loop import _QuietSelector
from tests.helpers import Counter


class InFlight(Actor):
    """Records how many calls of ``visit`` were in progress at once, and the order
    in which they began."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.entered: list[int] = []

    async def visit(self, i: int) -> int:
        self.entered.append(i)
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        return i

    def most_at_once(self) -> int:
        return self.most

    def order(self) -> list[int]:
        return self.entered


@concurrent(2)
class TwoAtOnce(InFlight):
    pass


@concurrent(4)
class Rendezvous(Actor):
    """``meet`` completes only once four calls to it are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.all_in = asyncio.Event()

    async def meet(self, i: int) -> int:
        self.inside += 1
        if self.inside == 4:
            self.all_in.set()
        await self.all_in.wait()
        return i

    def count(self) -> int:
        return self.inside  # a sync method, served while the async ones wait


@concurrent(3)
class Quitter(Actor):
    """``quit`` stops its actor, then waits for ``release``; ``hold`` never ends."""

    def __init__(self) -> None:
        self.never = asyncio.Event()
        self.released = asyncio.Event()

    async def hold(self) -> None:
        await self.never.wait()

    async def quit(self) -> str:
        await self.ref.stop()
        await self.released.wait()
        return "bye"

    async def quick(self) -> str:
        await asyncio.sleep(0)
        return "quick"

    def release(self) -> None:
        self.released.set()


class Ordered(InFlight):
    max_concurrency = 8  # the class attribute, as the decorator sets it


_SPINNING = {"on": True}  # one per worker process: shared by the actors of a worker


class Spinner(Actor):
    async def spin(self) -> int:
        turns = 0
        while _SPINNING["on"]:
            await asyncio.sleep(0)  # a step always ready: asyncio is never idle
            turns += 1
        return turns


class Pinger(Actor):
    def ping(self) -> str:
        return "pong"

    def stop_spinning(self) -> None:
        _SPINNING["on"] = False


class BusyLoop(Actor):
    """Keeps its worker's loop busy (a step ready every turn) until ``halt(key)``."""

    async def spin(self, key: str, topic: str | None = None) -> int:
        if topic is not None:
            self.system.publish(topic, "published, then the loop kept busy")
        turns = 0
        while _SPINNING.setdefault(key, True):
            await asyncio.sleep(0)
            turns += 1
        return turns

    async def ask_other(self, other: ActorRef) -> Any:
        return await other.echo("answered")

    def halt(self, key: str) -> None:
        _SPINNING[key] = False


def test_a_busy_loop_still_sends_its_events(system: ActorSystem) -> None:
    """Events go out before the loop's next poll (WorkerLoop.before_poll): one comes
    while the task that published it keeps the loop busy, not when it ends."""
    spinner, stopper = (system.spawn(BusyLoop, worker=0) for _ in range(2))
    with system.subscribe("busy") as sub:
        spinning = spinner.spin("events", "busy")
        assert sub.get(timeout=10) == ("busy", "published, then the loop kept busy")
        assert not spinning.done()
    stopper.halt("events").result(timeout=10)
    assert spinning.result(timeout=10) >= 0


def test_a_busy_loop_still_reads_a_reply_on_a_dealer(system: ActorSystem) -> None:
    """A busy loop skips asyncio's select while its last poll found nothing there
    (_QuietSelector); a reply that comes on a DEALER meanwhile is read at the
    next poll."""
    spinner, asker = (system.spawn(BusyLoop, worker=0) for _ in range(2))
    callee = system.spawn(Counter, worker=1)
    spinning = spinner.spin("replies")
    assert asker.ask_other(callee).result(timeout=10) == "answered"
    assert not spinning.done()
    asker.halt("replies").result(timeout=10)
    assert spinning.result(timeout=10) >= 0


def test_the_quiet_selector_never_waits_and_selects_once_per_poll_that_found_it() -> None:
    """asyncio's selector in a worker: the loop waits in its zmq_poll, never in the
    selector (even with a timeout asyncio computed); it selects only after a poll
    that found one of its files ready, once."""
    selector = _QuietSelector()
    read_end, write_end = os.pipe()
    try:
        selector.register(read_end, selectors.EVENT_READ)
        assert selector.select(None) == []  # nothing ready, and no wait
        assert selector.quiet
        os.write(write_end, b"x")
        assert selector.select(0) == []  # quiet: no poll has found it ready since
        selector.quiet = False  # as the loop's zmq_poll does when its fd is ready
        assert [key.fd for key, _ in selector.select(3600)] == [read_end]
        assert selector.select(3600) == []  # once per poll: the loop's next says again
    finally:
        selector.close()
        os.close(read_end)
        os.close(write_end)


class LocalCaller(Actor):
    """Calls an actor of its own worker: those calls go without sockets (LocalCalls)."""

    async def add_three_cancel_one(self, other: ActorRef) -> tuple[bool, list[int]]:
        first, dropped, last = other.add(1), other.add(10), other.add(100)
        cancelled = dropped.cancel()  # in the same turn: not delivered yet
        return cancelled, [await first, await last]

    async def burst(self, other: ActorRef, n: int) -> list[int]:
        futures = [other.add(1) for _ in range(n)]
        return [await f for f in futures]


def test_calls_within_a_worker_keep_their_order_and_cancel_until_delivered(
    system: ActorSystem,
) -> None:
    """A turn's calls from one actor to another of its worker are delivered together,
    in order, each run as it comes (or queued behind a busy actor); one cancelled
    before its delivery never runs."""
    caller, counter = system.spawn(LocalCaller, worker=0), system.spawn(Counter, worker=0)
    cancelled, totals = caller.add_three_cancel_one(counter).result(timeout=10)
    assert cancelled and totals == [1, 101]  # the 10 never added
    assert caller.burst(counter, 500).result(timeout=10) == list(range(102, 602))
    assert counter.get().result(timeout=10) == 601


def test_declared_concurrency_overlaps_async_calls(system: ActorSystem) -> None:
    actor = system.spawn(Rendezvous)
    calls = [actor.meet(i) for i in range(4)]
    assert [call.result(timeout=10) for call in calls] == [0, 1, 2, 3]


def test_by_default_calls_do_not_overlap(system: ActorSystem) -> None:
    actor = system.spawn(InFlight)
    calls = [actor.visit(i) for i in range(10)]
    assert [call.result(timeout=10) for call in calls] == list(range(10))
    assert actor.most_at_once().result(timeout=10) == 1


def test_no_more_calls_overlap_than_declared(system: ActorSystem) -> None:
    actor = system.spawn(TwoAtOnce)
    calls = [actor.visit(i) for i in range(10)]
    assert [call.result(timeout=10) for call in calls] == list(range(10))
    assert actor.most_at_once().result(timeout=10) == 2


def test_stopping_fails_the_calls_in_flight(system: ActorSystem) -> None:
    actor = system.spawn(Rendezvous)
    waiting = [actor.meet(i) for i in range(2)]  # never four: they wait until stopped
    assert actor.count().result(timeout=10) == 2  # both are inside
    assert actor.stop().result(timeout=10) is None
    for call in waiting:
        with pytest.raises(ActorStoppedError):
            call.result(timeout=10)
    with pytest.raises(ActorStoppedError):
        actor.count().result(timeout=10)


def test_sync_methods_of_a_concurrent_actor_work(system: ActorSystem) -> None:
    actor = system.spawn(Rendezvous)
    assert actor.count().result(timeout=10) == 0
    first = actor.meet(0)
    assert actor.count().result(timeout=10) == 1
    rest = [actor.meet(i) for i in range(1, 4)]
    assert [call.result(timeout=10) for call in [first, *rest]] == [0, 1, 2, 3]
    assert actor.count().result(timeout=10) == 4


@pytest.mark.parametrize("n", [0, -1, "x", 2.0, True, None])
def test_concurrency_must_be_a_whole_number_of_at_least_one(n: object) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        concurrent(n)  # type: ignore[arg-type]


def test_a_bad_class_attribute_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):

        class Bad(Actor):
            max_concurrency = 0


def test_the_decorator_sets_the_class_attribute() -> None:
    assert TwoAtOnce.max_concurrency == 2
    assert InFlight.max_concurrency == Actor.max_concurrency == 1
    with pytest.raises(TypeError):
        concurrent(2)(object)  # type: ignore[type-var]


def test_calls_start_in_the_order_they_were_sent(system: ActorSystem) -> None:
    actor = system.spawn(Ordered)
    calls = [actor.visit(i) for i in range(20)]
    assert [call.result(timeout=10) for call in calls] == list(range(20))
    assert actor.order().result(timeout=10) == list(range(20))


def test_a_concurrent_actor_stops_itself_when_the_asking_call_ends(system: ActorSystem) -> None:
    actor = system.spawn(Quitter)
    held = actor.hold()
    quitting = actor.quit()
    assert actor.quick().result(timeout=10) == "quick"  # another call's end stops nothing
    actor.release().result(timeout=10)
    assert quitting.result(timeout=10) == "bye"
    with pytest.raises(ActorStoppedError):
        held.result(timeout=10)  # in flight when the actor stopped: interrupted
    with pytest.raises(ActorStoppedError):
        actor.quick().result(timeout=10)


class _Two:
    """What a cell reads of an actor."""

    max_concurrency = 2
    ref = "two"


def test_a_cell_is_busy_at_its_limit_and_until_its_newest_task_begins() -> None:
    cell = Cell(_Two())
    assert (cell.limit, cell.busy) == (2, False)
    cell.start("a", 1.0)
    assert cell.busy  # until "a" has begun: the next message starts after it
    assert cell.begun("a") and not cell.busy
    cell.start("b", 2.0)
    assert not cell.begun("b") and cell.busy  # two run: the limit
    assert cell.end("a") and not cell.busy
    assert cell.take_tasks() == ["b"]
    assert not cell.end("b")  # stopped meanwhile: it no longer counts
    assert Cell(None).busy and Cell(None).limit == 1


class _Task:
    def print_stack(self, limit: int, file: io.StringIO) -> None:
        file.write("where it waits\n")


def test_each_hung_task_of_a_cell_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    cell = Cell(_Two())
    cell.start(_Task(), 1.0)
    cell.start(_Task(), 1.0)
    with caplog.at_level(logging.WARNING, logger="dovecote"):
        log_async_hangs([cell], 0.5, 0)
        log_async_hangs([cell], 0.5, 0)
    assert sum("where it waits" in r.getMessage() for r in caplog.records) == 2


def test_a_task_that_never_idles_does_not_starve_the_mailbox(system: ActorSystem) -> None:
    """The worker's loop reads its mailbox every turn, even while asyncio always has
    a step ready (see WorkerLoop): another actor of the worker answers meanwhile."""
    spinner = system.spawn(Spinner, worker=0)
    pinger = system.spawn(Pinger, worker=0)
    spinning = spinner.spin()
    assert pinger.ping().result(timeout=10) == "pong"
    pinger.stop_spinning().result(timeout=10)
    assert spinning.result(timeout=10) >= 0
