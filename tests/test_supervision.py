"""Supervision: crash detection, restart policies, groups, watching, shutdown order."""

from __future__ import annotations

import os
import queue
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors import ActorCrashedError, ActorRef, ActorStoppedError, Child, RestartPolicy
from runtime import ActorSystem
from tests.helpers import Incarnation, Waiter, Watcher


def _after_crash(call: Any, attempts: int = 50) -> Any:
    """Run ``call`` until it is not failed by the crash it races with."""
    for _ in range(attempts):
        try:
            return call().result(timeout=10)
        except ActorCrashedError:
            continue
    raise AssertionError("the actor never came back")


def _kill(ref: ActorRef, sig: int = signal.SIGKILL) -> int:
    pid = ref.pid().result(timeout=10)
    os.kill(pid, sig)
    return pid


def _spawn(system: ActorSystem, tmp_path: Path, label: str = "a", **options: Any) -> ActorRef:
    return system.spawn(Incarnation, label, str(tmp_path / "log"), **options)


def _log(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().splitlines()


# -- policies as data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"restart": "sometimes"}, "restart='sometimes'"),
        ({"max_restarts": -1}, "max_restarts=-1"),
        ({"max_restarts": 1.5}, "max_restarts=1.5"),
        ({"period": 0}, "period=0"),
        ({"period": float("nan")}, "period=nan"),
    ],
)
def test_bad_policies_are_rejected_up_front(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        RestartPolicy(**options)


def test_bad_group_specs_are_rejected_up_front(system: ActorSystem, tmp_path: Path) -> None:
    child = Child(Incarnation, ("a", str(tmp_path / "log")))
    with pytest.raises(ValueError, match="strategy='all_for_none'"):
        system.spawn_group([child], strategy="all_for_none")
    with pytest.raises(ValueError, match="restart='never'"):
        Child(Incarnation, restart="never")
    with pytest.raises(ValueError, match="non-empty list of Child"):
        system.spawn_group([])
    with pytest.raises(ValueError, match="restart='x'"):
        system.spawn(Incarnation, "a", "b", restart="x")


# -- restart types ------------------------------------------------------------------


def test_permanent_actor_restarts_with_its_arguments_and_keeps_its_ref(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path, name="kept")
    before = ref.incarnation().result(timeout=5)
    assert ref.add(5).result(timeout=5) == 5
    _kill(ref)
    after = _after_crash(ref.incarnation)
    assert after != before
    assert ref.add(1).result(timeout=5) == 1  # __init__ ran again: fresh state
    assert system.lookup("kept") == ref
    assert _log(tmp_path) == ["start a", "start a"]


def test_pending_calls_fail_with_the_signal_and_retryable_ones_are_resent(
    system: ActorSystem, tmp_path: Path
) -> None:
    ref = _spawn(system, tmp_path, worker=0)
    other = _spawn(system, tmp_path, "b", worker=1)
    pid = ref.pid().result(timeout=5)
    os.kill(pid, signal.SIGSTOP)  # hold it so that the calls are surely in flight
    plain = ref.add_once(1)
    retried = ref.add(1)
    # A call waited for sends every outbox first: the two are in flight after it
    # (a call not yet sent when its worker dies goes to the successor instead).
    other.pid().result(timeout=5)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorCrashedError, match="SIGKILL"):
        plain.result(timeout=10)
    assert retried.result(timeout=10) == 1  # ran on the new incarnation


def test_transient_actor_restarts_after_a_crash_not_after_a_clean_exit(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path, worker=1, restart="transient")
    _kill(ref)
    _after_crash(ref.incarnation)  # restarted after SIGKILL
    with pytest.raises(ActorCrashedError, match="exited with code 0"):
        ref.exit(0).result(timeout=10)
    with pytest.raises(ActorStoppedError):
        ref.incarnation().result(timeout=10)


def test_past_its_intensity_the_supervisor_gives_up(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path, max_restarts=2, period=60.0)
    reasons: queue.Queue[str] = queue.Queue()
    system.watch(ref, lambda _, reason: reasons.put(reason))
    for _ in range(2):
        _kill(ref)
        _after_crash(ref.incarnation)
    _kill(ref)
    final = [reasons.get(timeout=10) for _ in range(3)][-1]
    assert "more than 2 restarts in 60.0 s" in final
    with pytest.raises(ActorStoppedError):
        _after_crash(ref.incarnation)


# -- groups -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [("one_for_one", "b"), ("one_for_all", "abc"), ("rest_for_one", "bc")],
)
def test_group_strategies(tmp_path: Path, strategy: str, restarted: str) -> None:
    log = str(tmp_path / "log")
    with ActorSystem(workers=2) as system:
        children = [
            Child(Incarnation, (x, log), worker=w) for x, w in zip("abc", (0, 1, 0), strict=True)
        ]
        refs = system.spawn_group(children, strategy=strategy)
        before = [r.incarnation().result(timeout=5) for r in refs]
        _kill(refs[1])  # b, alone on worker 1
        _after_crash(refs[1].incarnation)
        after = [r.incarnation().result(timeout=10) for r in refs]
        changed = "".join(x for x, b, a in zip("abc", before, after, strict=True) if b != a)
        assert changed == restarted
    lines = _log(tmp_path)
    assert lines[:3] == ["start a", "start b", "start c"]  # children start in order
    siblings = [x for x in "abc" if x in restarted and x != "b"]
    stops = [f"restart {x}" for x in reversed(siblings)]  # siblings stop in reverse
    starts = [f"start {x}" for x in restarted]  # and all start again in order
    assert [line for line in lines[3:] if not line.startswith("stop")][
        : len(stops) + len(starts)
    ] == stops + starts


def test_a_group_past_its_intensity_stops_every_child(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with ActorSystem(workers=2) as system:
        children = [
            Child(Incarnation, ("a", log), worker=0),
            Child(Incarnation, ("b", log), worker=1),
        ]
        a, b = system.spawn_group(children, strategy="one_for_one", max_restarts=1, period=60)
        _kill(b)
        _after_crash(b.incarnation)
        _kill(b)
        with pytest.raises(ActorStoppedError):
            _after_crash(b.incarnation)
        with pytest.raises(ActorStoppedError):
            a.incarnation().result(timeout=10)
    assert "stop a" in _log(tmp_path)


def test_an_actor_can_start_a_group(system: ActorSystem, tmp_path: Path) -> None:
    waiter = system.spawn(Waiter)
    assert len(waiter.start_group(str(tmp_path / "log")).result(timeout=10)) == 16
    assert _log(tmp_path) == ["start x"]


def test_a_group_that_cannot_start_undoes_what_it_started(system, tmp_path) -> None:
    log = str(tmp_path / "log")
    children = [Child(Incarnation, ("a", log)), Child(Incarnation, ("b",))]  # b lacks an arg
    with pytest.raises(TypeError):
        system.spawn_group(children)
    assert _log(tmp_path) == ["start a", "stop a"]


# -- detection paths ----------------------------------------------------------------


def test_a_frozen_worker_is_detected_by_its_heartbeat_and_replaced(tmp_path: Path) -> None:
    with ActorSystem(workers=1, heartbeat_timeout=1.0) as system:
        ref = _spawn(system, tmp_path)
        pid = _kill(ref, signal.SIGSTOP)
        with pytest.raises(ActorCrashedError, match="lost its heartbeat"):
            ref.incarnation().result(timeout=10)
        assert _after_crash(ref.pid) != pid


def test_a_worker_stuck_in_c_code_holding_the_gil_is_replaced(tmp_path: Path) -> None:
    with ActorSystem(workers=1, heartbeat_timeout=1.0) as system:
        ref = _spawn(system, tmp_path)
        pid = ref.pid().result(timeout=5)
        with pytest.raises(ActorCrashedError, match="lost its heartbeat"):
            ref.hold_gil(30).result(timeout=15)
        assert _after_crash(ref.pid) != pid


def test_long_python_code_is_not_a_hang(tmp_path: Path) -> None:
    with ActorSystem(workers=1, heartbeat_timeout=1.0) as system:
        ref = _spawn(system, tmp_path)
        pid = ref.pid().result(timeout=5)
        assert ref.spin(2.5).result(timeout=20) > 0  # longer than the heartbeat timeout
        assert ref.pid().result(timeout=5) == pid


def test_memory_limit_recycles_the_worker_gracefully(tmp_path: Path) -> None:
    with ActorSystem(workers=1, max_memory=150 * 2**20) as system:
        ref = _spawn(system, tmp_path)
        reasons: queue.Queue[str] = queue.Queue()
        system.watch(ref, lambda _, reason: reasons.put(reason))
        pid = ref.pid().result(timeout=5)
        ref.hold(200 * 2**20).result(timeout=10)
        assert "memory limit" in reasons.get(timeout=10)
        assert _after_crash(ref.pid) != pid
    lines = _log(tmp_path)
    assert lines[:4] == ["start a", "restart a", "stop a", "start a"]  # on_stop ran


def test_message_limit_recycles_and_no_ask_hangs(tmp_path: Path) -> None:
    with ActorSystem(workers=1, max_messages=100) as system:
        ref = _spawn(system, tmp_path)
        pid = ref.pid().result(timeout=5)
        futures = [ref.add_once(1) for _ in range(150)]
        crashed = 0
        for future in futures:  # each ends: a result, or the limit named as the cause
            try:
                future.result(timeout=30)
            except ActorCrashedError as exc:
                assert "message limit: 100 messages handled" in str(exc)
                crashed += 1
        assert crashed > 0
        assert _after_crash(ref.pid) != pid  # recycled, restarted, answering


def test_a_long_message_logs_the_actors_stack(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with ActorSystem(workers=1, hang_threshold=0.3) as system:
        ref = _spawn(system, tmp_path)
        ref.nap(1.2).result(timeout=10)
    err = capfd.readouterr().err + caplog.text  # the worker's records reach our logging
    assert "nap() of actor" in err and "has run for" in err
    assert "in nap" in err  # the frame where it is stuck


# -- watching, dead letters, the supervisor itself ----------------------------------------------


def test_watch_reports_crashes_and_the_final_stop(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path)
    reasons: queue.Queue[str] = queue.Queue()
    system.watch(ref, lambda watched, reason: reasons.put(f"{watched == ref} {reason}"))
    _kill(ref)
    assert reasons.get(timeout=10).startswith("True crashed: worker")
    _after_crash(ref.incarnation)
    ref.stop().result(timeout=10)
    assert reasons.get(timeout=10) == "True stopped"


def test_an_actor_can_watch_another(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path, worker=1)
    watcher = system.spawn(Watcher, worker=0)
    watcher.watch(ref).result(timeout=5)
    ref.stop().result(timeout=5)
    # The notice reaches the watcher's worker on another connection than our calls:
    # ask until it has arrived (each call is a full round trip, not a sleep).
    deadline = time.monotonic() + 10
    while not (seen := watcher.reasons().result(timeout=5)) and time.monotonic() < deadline:
        pass
    assert seen == [f"{ref.actor_id}: stopped"]


def test_tells_to_a_stopped_actor_are_reported_dead_letters(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with ActorSystem(workers=1) as system:
        ref = _spawn(system, tmp_path)
        ref.stop().result(timeout=5)
        ref.add_once.tell(1)
        with pytest.raises(ActorStoppedError):
            ref.add_once(1).result(timeout=5)  # after the tell: it was handled first
    assert "dead letter" in capfd.readouterr().err + caplog.text


def test_dead_workers_are_replaced_to_keep_the_count(system, tmp_path) -> None:
    ref = _spawn(system, tmp_path, worker=0)
    for _ in range(3):
        _kill(ref)
        _after_crash(ref.incarnation)
    supervisor = psutil.Process(system._link.proc.pid)
    assert len(supervisor.children()) == 2


def test_shutdown_stops_actors_in_reverse_start_order(tmp_path: Path) -> None:
    with ActorSystem(workers=2) as system:
        for label in "abcd":
            _spawn(system, tmp_path, label)
    assert _log(tmp_path) == [f"start {x}" for x in "abcd"] + [f"stop {x}" for x in "dcba"]
