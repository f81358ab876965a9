"""The event bus (part of the jobs issue built so far): driver publish/subscribe."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime import ActorSystem
from tests.helpers import Counter, Listener


def test_a_subscriber_misses_nothing_published_after_subscribe(system: ActorSystem) -> None:
    with system.subscribe("orders.") as sub:
        for i in range(5000):  # at once: no sleep for the slow joiner to catch up
            system.publish("orders.new", i)
        system.publish("other", "not for us")
        got = [sub.get(timeout=10) for _ in range(5000)]
        assert got == [("orders.new", i) for i in range(5000)]
        with pytest.raises(TimeoutError):
            sub.get(timeout=0.2)
        assert sub.missed == 0


def test_prefixes_callbacks_and_objects(system: ActorSystem) -> None:
    seen: list[tuple[str, object]] = []
    done = threading.Event()

    def on_event(topic: str, obj: object) -> None:
        seen.append((topic, obj))
        if obj == "last":
            done.set()

    with system.subscribe("a.", on_event), system.subscribe("a.b") as narrow:
        system.publish("a.x", {"n": 1})
        system.publish("a.b.c", [1, 2])
        system.publish("a.b.c", "last")
        assert done.wait(timeout=10)
        assert seen == [("a.x", {"n": 1}), ("a.b.c", [1, 2]), ("a.b.c", "last")]
        assert narrow.get(timeout=5) == ("a.b.c", [1, 2])


def test_the_runtime_publishes_its_lifecycle(system: ActorSystem) -> None:
    with system.subscribe("dovecote.actor.") as sub:
        ref = system.spawn(Counter, name="watched")
        topic, fields = sub.get(timeout=10)
        assert topic == "dovecote.actor.started" and fields["actor_id"] == ref.actor_id
        ref.stop().result(timeout=5)
        topic, fields = sub.get(timeout=10)
        assert topic == "dovecote.actor.stopped" and fields["reason"] == "stopped"


@pytest.mark.parametrize("topic", ["", "dovecote.fake", 42])
def test_bad_and_reserved_topics_are_rejected(system: ActorSystem, topic: object) -> None:
    with pytest.raises(ValueError, match="topic"):
        system.publish(topic, 1)  # type: ignore[arg-type]


def test_actors_subscribe_and_publish(system: ActorSystem) -> None:
    listener = system.spawn(Listener, worker=0)
    listener.listen("news.").result(timeout=10)
    for i in range(100):
        system.publish("news.today", i)
    expected = [("news.today", i) for i in range(100)]
    deadline = time.monotonic() + 10
    while (heard := listener.events().result(timeout=5)) != expected:
        assert time.monotonic() < deadline, heard[-3:]  # each check is a round trip
    shouter = system.spawn(Listener, worker=1)
    with system.subscribe("loud") as sub:
        shouter.shout("loud", 50).result(timeout=10)
        assert [sub.get(timeout=10) for _ in range(50)] == [("loud", i) for i in range(50)]


@pytest.mark.slow
def test_a_slow_subscriber_is_told_what_it_missed(
    system: ActorSystem, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    shouter = system.spawn(Listener)
    shouter.shout("flood", 1).result(timeout=10)  # the actor's publisher is ready
    done = tmp_path / "done"
    go = threading.Event()
    received: list[int] = []

    def stuck_at_first(topic: str, n: int) -> None:  # holds up this process's reading
        received.append(n)
        go.wait(timeout=30)

    with system.subscribe("flood", stuck_at_first):
        total = 300_000  # more frames than the proxy's and the subscriber's queues hold
        shouter.shout_apart.tell("flood", total, str(done))
        deadline = time.monotonic() + 30
        while not done.exists():  # the publisher is through: the queues overflowed
            assert time.monotonic() < deadline
            time.sleep(0.01)  # polling a condition with a deadline
        go.set()
        deadline = time.monotonic() + 30
        while "it is too slow" not in caplog.text:  # a later event on its topic reveals the gap
            assert time.monotonic() < deadline, "the gap was never reported"
            shouter.shout("flood.0", 1).result(timeout=10)
    assert sum(1 for r in caplog.records if "too slow" in r.getMessage()) >= 1
