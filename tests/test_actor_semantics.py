"""Correctness, actors and the API: stopping oneself, calls to oneself, refs,
shutdown, error texts (issue "Correctness", items 14-19). Each test failed before
its fix."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from actors import ActorCrashedError, ActorRef, ActorStoppedError, Child
from runtime import ActorSystem
from runtime import wire as proto
from tests.helpers import Counter, Probe, touch_file, wait_for_path


@pytest.mark.parametrize("method", ["quit", "quit_sync"])
def test_an_actor_stops_itself_after_the_current_message(
    tmp_path: Path, system: ActorSystem, method: str
) -> None:
    marker = tmp_path / "stopped"
    probe = system.spawn(Probe, str(marker), name="quitter")
    assert getattr(probe, method)().result(timeout=10) == "bye"  # hung when awaited
    assert marker.exists()  # on_stop ran
    with pytest.raises(ActorStoppedError):
        probe.get().result(timeout=10)
    deadline = time.monotonic() + 10
    while True:  # the name is freed once the supervisor has heard
        try:
            system.lookup("quitter")
        except LookupError:
            break
        assert time.monotonic() < deadline, "the name was never freed"


def test_an_actor_may_return_its_own_stop(system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    assert probe.quit_returning().result(timeout=10) is None
    with pytest.raises(ActorStoppedError):
        probe.get().result(timeout=10)


@pytest.mark.parametrize("method", ["ask_self", "ask_self_async"])
def test_returning_a_call_to_itself_resolves(system: ActorSystem, method: str) -> None:
    probe = system.spawn(Probe)
    probe.add(5).result(timeout=10)
    assert getattr(probe, method)().result(timeout=10) == 5  # deadlocked the actor
    assert probe.add(1).result(timeout=10) == 6


@pytest.mark.parametrize("hold", ["hold", "hold_async"])
def test_a_second_stop_behind_a_running_method_is_a_no_op(
    tmp_path: Path, system: ActorSystem, hold: str
) -> None:
    probe = system.spawn(Probe)
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    held = getattr(probe, hold)(started, release)
    wait_for_path(started)
    stops = [probe.stop(), probe.stop()]
    touch_file(release)
    assert held.result(timeout=10) == "held"
    assert [stop.result(timeout=10) for stop in stops] == [None, None]


def test_refs_are_immutable(system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    with pytest.raises(AttributeError, match="immutable"):
        probe.add = 1  # type: ignore[method-assign]
    with pytest.raises(AttributeError, match="immutable"):
        probe.slot = 3
    with pytest.raises(AttributeError, match="immutable"):
        del probe.name
    assert probe.add(2).result(timeout=10) == 2  # the method was not shadowed
    assert pickle.loads(pickle.dumps(probe)) == probe


def test_every_api_call_after_shutdown_raises_actor_stopped() -> None:
    system = ActorSystem(workers=1)
    probe = system.spawn(Probe)
    future = probe.add(1)
    system.shutdown()
    calls = {
        "spawn": lambda: system.spawn(Probe),
        "spawn_group": lambda: system.spawn_group([Child(Probe)]),
        "submit": lambda: system.submit(abs, 1),
        "map": lambda: system.map(abs, [1]),
        "imap_unordered": lambda: system.imap_unordered(abs, [1]),
        "as_completed": lambda: system.as_completed([future]),
        "pipeline": lambda: system.pipeline([1], abs),
        "publish": lambda: system.publish("topic", 1),
        "subscribe": lambda: system.subscribe("topic"),
        "watch": lambda: system.watch(probe, lambda ref, why: None),
        "lookup": lambda: system.lookup("x"),
        "stop": lambda: system.stop(probe),
        "a ref's call": lambda: probe.add(1),
        "a ref's tell": lambda: probe.add.tell(1),
    }
    for what, call in calls.items():
        with pytest.raises(ActorStoppedError):
            call()
            pytest.fail(f"{what} did not raise")


def test_error_texts_name_what_the_user_knows(tmp_path: Path, system: ActorSystem) -> None:
    counter = system.spawn(Counter, name="counter", worker=0)
    assert repr(counter) == f"ActorRef(Counter 'counter' #{counter.actor_id} on worker 0)"
    with pytest.raises(TimeoutError, match=r"^submit\(sleep\) did not complete"):
        system.submit(time.sleep, 0.5).result(timeout=0.01)
    with pytest.raises(AttributeError, match="Counter has no method 'nosuch'"):
        counter.nosuch().result(timeout=10)
    probe = system.spawn(Probe, name="probe", worker=1)
    pid, started = probe.pid().result(timeout=10), str(tmp_path / "started")
    pending = probe.hold(started, str(tmp_path / "never"))
    wait_for_path(started)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorCrashedError) as info:
        pending.result(timeout=10)
    assert str(info.value).startswith(
        f"ActorRef(Probe 'probe' #{probe.actor_id} on worker 1).hold(): its worker died"
    )
    assert "SIGKILL" in str(info.value)
    assert proto.peer_name(b"\x00k\x8bEg") == "a caller on a connection now closed"
    assert proto.peer_name(b"d4711-abcd") == "the driver (pid 4711)"
    assert proto.peer_name(b"w3.2") == "worker 3"


def test_a_ref_from_an_older_peer_still_reads() -> None:
    ref = ActorRef("sys", 3, 0, "counter")  # no class name: the label still reads
    assert repr(ref) == "ActorRef('counter' #3 on worker 0)"
