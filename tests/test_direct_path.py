"""A lone blocking result() takes the direct path: it must hold nothing else back."""

from __future__ import annotations

import concurrent.futures
import operator
import threading
import time
from collections.abc import Iterator

import pytest

from runtime import ActorSystem
from runtime.client._call import Call
from runtime.core import Calls
from tests.helpers import Counter, Listener, Relay

CALLS = 200_000  # an upper bound: the caller stops as soon as the test has its answer


def test_lone_is_the_only_call_pending_alone_in_its_outbox() -> None:
    calls: Calls[Call] = Calls()
    calls.pending[1] = _call(0)
    calls.outbox(0).entries.append((1, 1, 7, "m", b"", 0))
    assert calls.lone(1) == 0
    assert calls.lone(2) is None  # not pending
    calls.outbox(1).entries.append((2, 0, 7, "tell", b"", 0))  # a tell for another worker
    assert calls.lone(1) is None
    calls.outbox(1).entries.clear()
    calls.pending[3] = _call(1)  # a reply expected elsewhere
    assert calls.lone(1) is None


def test_lone_is_also_a_call_sent_at_once_with_nothing_queued() -> None:
    calls: Calls[Call] = Calls()
    calls.pending[1] = _call(0)  # sent by the thread that made it: in no outbox
    assert calls.lone(1) == 0
    calls.outbox(0).entries.append((2, 0, 7, "tell", b"", 0))
    assert calls.lone(1) is None  # a tell waits to go: the pump sends it


def test_an_idle_call_is_sent_by_its_caller_and_never_passes_what_waits() -> None:
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Counter)
        calls = system._io.transport.calls
        _until_the_background_thread_sleeps(system)  # then nothing holds the sockets
        future = ref.add(2)
        assert future.call_id in calls.pending  # awaited, and not queued: it went
        assert not calls.outboxes[ref.slot].entries
        assert future.result(timeout=10) == 2
        for i in range(50):  # a tell waits in the outbox: the call goes behind it
            ref.add.tell(1)
            assert ref.get().result(timeout=10) == 3 + i


def test_a_call_sent_at_once_reaches_a_waiter_that_never_calls_result() -> None:
    """The background thread sleeps once idle; a direct send must wake it, as a
    queued call does, or a reply that ``concurrent.futures.wait`` waits for, or a
    submitted task's, is never read."""
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Counter)
        assert ref.add(1).result(timeout=10) == 1
        _until_the_background_thread_sleeps(system)
        future = ref.add(2)
        done, _ = concurrent.futures.wait([future], timeout=10)
        assert done == {future} and future.result() == 3
        task = system.submit(operator.add, 2, 3)
        assert [f.result() for f in concurrent.futures.as_completed([task], 10)] == [5]


def _until_the_background_thread_sleeps(system: ActorSystem) -> None:
    """It sleeps once the system has been idle for IDLE_AFTER, the token free."""
    token, deadline = system._io._token, time.monotonic() + 10
    while not token.bg_asleep:
        assert time.monotonic() < deadline, "the background thread never slept"
        time.sleep(0.005)


@pytest.mark.parametrize("same_worker", [False, True])
def test_an_actor_s_call_never_passes_its_tell_queued_before_it(
    system: ActorSystem, same_worker: bool
) -> None:
    relay = system.spawn(Relay, worker=0)
    counter = system.spawn(Counter, worker=0 if same_worker else 1)
    assert relay.tell_then_ask(counter, 50).result(timeout=30) == list(range(1, 51))


def _call(slot: int) -> Call:
    call = Call()
    call.slot = slot
    return call


@pytest.fixture
def busy_caller(system: ActorSystem) -> Iterator[threading.Event]:
    """A thread that asks in a tight loop (each ask a lone one) until told to stop."""
    ref = system.spawn(Counter, worker=0)
    stop, started = threading.Event(), threading.Event()

    def loop() -> None:
        for i in range(CALLS):
            ref.echo(i).result(timeout=10)
            started.set()
            if stop.is_set():
                return

    thread = threading.Thread(target=loop)
    thread.start()
    assert started.wait(timeout=10)
    yield stop
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_callback_on_another_call_is_delivered(
    system: ActorSystem, busy_caller: threading.Event
) -> None:
    other = system.spawn(Counter, worker=1)
    done = threading.Event()
    other.add(5).add_done_callback(lambda _: done.set())  # nobody blocks on it
    assert done.wait(timeout=10)


def test_events_reach_a_callback(system: ActorSystem, busy_caller: threading.Event) -> None:
    shouter = system.spawn(Listener, worker=1)
    shouter.shout("direct", 1).result(timeout=10)  # its publisher is ready
    got = threading.Event()
    with system.subscribe("direct", lambda topic, obj: got.set()):
        shouter.shout.tell("direct", 1)
        assert got.wait(timeout=10)
