"""``system.status()``: the workers' numbers (from their heartbeats) and the actors,
after spawns, calls, a held method, crashes and restarts."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors import ActorCrashedError, ActorStoppedError
from runtime import ActorSystem, observe, wire
from tests.helpers import wait_for_path
from tests.talkers import Talker

BEAT = 0.6  # heartbeat_timeout: a heartbeat every 0.1 s


@pytest.fixture
def fast() -> Iterator[ActorSystem]:
    with ActorSystem(workers=2, heartbeat_timeout=BEAT) as running:
        yield running


def wait_for_status(
    system: ActorSystem, ok: Callable[[observe.SystemStatus], bool], timeout: float = 20.0
) -> observe.SystemStatus:
    """The first status that satisfies ``ok``: the workers' numbers come with their
    heartbeats, so a change shows within one heartbeat interval."""
    deadline = time.monotonic() + timeout
    while True:
        status = system.status()
        if ok(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"no status satisfied the test within {timeout} s: {status}")
        time.sleep(BEAT / 6)


def test_status_lists_the_workers_and_the_actors(fast: ActorSystem) -> None:
    talker = fast.spawn(Talker, name="talker", worker=1, restart="transient")
    anonymous = fast.spawn(Talker, worker=0)
    pids = {talker.pid().result(timeout=10), anonymous.pid().result(timeout=10)}
    status = fast.status()
    assert status.system_id == fast.system_id and status.pid == fast._link.proc.pid
    assert {w.pid for w in status.workers} == pids
    assert sorted(w.slot for w in status.workers) == [0, 1]
    assert all(w.ready and w.epoch == 0 and w.restarts == 0 for w in status.workers)
    one = status.actor("talker")
    assert (one.actor_id, one.cls, one.worker) == (talker.actor_id, "Talker", 1)
    assert (one.restart, one.restarts, one.state, one.group) == ("transient", 0, "running", None)
    assert any(a.name is None and a.actor_id == anonymous.actor_id for a in status.actors)
    with pytest.raises(LookupError, match="no actor named 'nobody'"):
        status.actor("nobody")
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.uptime = 0.0  # type: ignore[misc]
    topics = [e["topic"] for e in status.events]
    assert topics.count("dovecote.actor.started") == 2


def test_worker_counters_travel_with_the_heartbeats(fast: ActorSystem) -> None:
    talker = fast.spawn(Talker, worker=0)
    for call in [talker.pid() for _ in range(50)]:
        call.result(timeout=10)
    fast.submit(os.getpid).result(timeout=10)  # a task, on the least busy worker
    status = wait_for_status(
        fast, lambda s: sum(w.messages for w in s.workers) >= 51 and s.workers[0].rss > 0
    )
    assert sum(w.tasks for w in status.workers) == 1
    worker = next(w for w in status.workers if w.slot == 0)
    assert worker.messages >= 50 and worker.rss > 1 << 20 and worker.cpu_percent >= 0.0


def test_the_method_running_now_is_reported_while_it_holds_the_worker(
    fast: ActorSystem, tmp_path: Path
) -> None:
    talker = fast.spawn(Talker, name="holder", worker=1)
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    held = talker.hold(started, release)
    wait_for_path(started)
    for _ in range(3):
        talker.pid()  # queued behind the held method
    try:
        status = wait_for_status(
            fast,
            lambda s: any(w.stack and w.mailbox >= 3 for w in s.workers),
        )
        worker = next(w for w in status.workers if w.slot == 1)
        assert (worker.method, worker.actor_id) == ("hold", talker.actor_id)
        assert worker.running_for >= 1.0  # the stack comes once it has run a second
        assert "in hold" in str(worker.stack) and "wait_for_path" in str(worker.stack)
        assert status.actor("holder").mailbox == 3
    finally:
        Path(release).touch()
    assert held.result(timeout=10) == "held"
    status = wait_for_status(fast, lambda s: all(w.method is None for w in s.workers))
    assert all(w.running_for == 0.0 and w.stack is None for w in status.workers)


def test_status_after_a_crash_and_a_restart(fast: ActorSystem) -> None:
    talker = fast.spawn(Talker, name="t", worker=0)
    for _ in range(2):
        talker.pid().result(timeout=20)  # running (again)
        with pytest.raises(ActorCrashedError, match="SIGKILL"):
            talker.say_and_die("x").result(timeout=10)
    talker.pid().result(timeout=20)  # up again: the third incarnation
    status = fast.status()
    actor = status.actor("t")
    assert (actor.restarts, actor.state) == (2, "running")
    worker = next(w for w in status.workers if w.slot == 0)
    assert (worker.epoch, worker.restarts) == (2, 2)
    assert status.crashes == {"signal": 2}
    topics = [e["topic"] for e in status.events]
    assert topics.count("dovecote.worker.exited") == 2
    assert topics.count("dovecote.actor.restarted") == 2


def test_the_status_reply_is_json_only(fast: ActorSystem) -> None:
    fast.spawn(Talker, name="t").pid().result(timeout=10)
    reply = fast._transport.control.request("raw", lambda raw: raw, wire.Status).result(10)
    assert json.loads(json.dumps(reply)) == reply  # nothing a JSON round trip would change
    assert observe.status_from_json(reply).actor("t").cls == "Talker"


def test_status_after_shutdown_raises() -> None:
    system = ActorSystem(workers=1)
    system.shutdown()
    with pytest.raises(ActorStoppedError, match="after shutdown"):
        system.status()
