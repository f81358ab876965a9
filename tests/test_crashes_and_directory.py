"""Crash detection's three ways and the supervisor's directory, without processes."""

from __future__ import annotations

import pytest

from runtime import wire
from runtime.core import STARTING_GRACE, Directory, Liveness, exit_cause

TIMEOUT = 3.0


def _ready(now: float = 0.0) -> Liveness:
    liveness = Liveness(now)
    liveness.ready = True
    return liveness


# -- way 1: the process exits ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (None, "still running"),
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by signal SIGKILL"),
        (-15, "killed by signal SIGTERM"),
        (-11, "killed by signal SIGSEGV"),
        (-200, "killed by signal 200"),  # no such signal: its number
    ],
)
def test_exit_cause_names_codes_and_signals(returncode: int | None, expected: str) -> None:
    assert exit_cause(returncode) == expected


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (0, ("exited with code 0", False, True)),
        (1, ("exited with code 1", True, True)),
        (-9, ("killed by signal SIGKILL", True, True)),
    ],
)
def test_an_exit_is_abnormal_unless_code_zero_and_always_counted(
    returncode: int, expected: tuple[str, bool, bool]
) -> None:
    assert _ready().exited(returncode) == expected


# -- way 2: the heartbeats stop ----------------------------------------------------------------
def test_a_silent_worker_is_reported_once_past_the_timeout() -> None:
    liveness = _ready()
    assert liveness.silent(TIMEOUT, TIMEOUT) is None  # at the timeout, not past it
    cause = liveness.silent(3.5, TIMEOUT)
    assert cause == "lost its heartbeat (none for 3.5 s)"
    assert liveness.cause == cause
    assert liveness.silent(10.0, TIMEOUT) is None  # reported once: it is being killed


def test_a_heartbeat_keeps_a_worker_alive() -> None:
    liveness = _ready()
    liveness.beat(2.0)
    assert liveness.silent(4.0, TIMEOUT) is None
    assert liveness.silent(5.5, TIMEOUT) is not None


def test_a_starting_worker_gets_the_starting_grace() -> None:
    liveness = Liveness(0.0)
    assert not liveness.ready
    assert liveness.silent(STARTING_GRACE - 1, TIMEOUT) is None
    assert liveness.silent(STARTING_GRACE + 1, TIMEOUT) is not None


def test_a_timeout_longer_than_the_grace_applies_while_starting_too() -> None:
    liveness = Liveness(0.0)
    assert liveness.silent(STARTING_GRACE + 1, STARTING_GRACE * 2) is None
    assert liveness.silent(STARTING_GRACE * 2 + 1, STARTING_GRACE * 2) is not None


def test_a_killed_silent_worker_ends_abnormally_with_the_heartbeat_as_cause() -> None:
    liveness = _ready()
    cause = liveness.silent(4.0, TIMEOUT)
    assert liveness.exited(-9) == (cause, True, True)


# -- way 3: a limit ------------------------------------------------------------------------------
def test_a_limit_recycles_the_worker_and_is_not_counted() -> None:
    liveness = _ready()
    assert liveness.limit("resident memory 2 GiB > 1 GiB")
    assert liveness.recycled
    assert liveness.cause == "was recycled: resident memory 2 GiB > 1 GiB"
    cause, abnormal, counted = liveness.exited(0)
    assert cause == "was recycled: resident memory 2 GiB > 1 GiB"
    assert abnormal  # its actors were ended by the runtime, not by themselves
    assert not counted  # a recycle is not a failure


def test_a_limit_is_taken_once_and_not_after_a_lost_heartbeat() -> None:
    liveness = _ready()
    assert liveness.limit("messages")
    assert not liveness.limit("messages")
    silent = _ready()
    assert silent.silent(4.0, TIMEOUT) is not None
    assert not silent.limit("messages")
    assert not silent.recycled
    assert silent.exited(-9)[2]  # counted: it hung


def test_a_recycled_worker_is_not_also_reported_silent() -> None:
    liveness = _ready()
    liveness.limit("messages")
    assert liveness.silent(100.0, TIMEOUT) is None


# -- the directory ---------------------------------------------------------------------------------
def _spec(name: str | None = None, worker: int | None = None) -> wire.ActorSpec:
    return wire.ActorSpec(
        blob=b"pickle",
        name=name,
        cls="tests.Counter",
        worker=worker,
        restart="permanent",
        max_restarts=3,
        period=5.0,
        retry=[["get", 2]],
    )


def test_add_registers_the_actor_its_name_and_its_slots_load() -> None:
    directory = Directory()
    first = directory.add(_spec("counter"), 1, None)
    second = directory.add(_spec(), 1, None)
    assert (first.actor_id, second.actor_id) == (1, 2)
    assert directory.actors == {1: first, 2: second}
    assert directory.names == {"counter": 1}
    assert directory.load == {1: 2}
    assert first.state == "starting"
    assert first.restarts == ()
    assert (first.name, first.restart) == ("counter", "permanent")
    assert first.address() == [1, 1, "counter", [["get", 2]], "tests.Counter"]
    assert directory.named("counter") is first
    assert directory.named("other") is None
    assert directory.current(first)


def test_groups_get_ids_of_their_own_kind() -> None:
    directory = Directory()
    group = directory.add_group(wire.GroupSpec("one_for_all", 2, 1.0))
    child = directory.add(_spec(), 0, group.group_id)
    assert directory.groups == {group.group_id: group}
    assert child.actor_id != group.group_id
    assert child.group == group.group_id
    assert (group.children, group.restarts, group.alive) == ([], (), True)


def test_forget_frees_the_name_and_the_load_once() -> None:
    directory = Directory()
    actor = directory.add(_spec("counter"), 0, None)
    directory.forget(actor)
    directory.forget(actor)  # twice: nothing more
    assert directory.actors == {}
    assert directory.names == {}
    assert directory.load == {0: 0}
    assert not directory.current(actor)


def test_forgetting_an_old_record_keeps_the_name_of_its_successor() -> None:
    directory = Directory()
    old = directory.add(_spec("counter"), 0, None)
    directory.forget(old)
    new = directory.add(_spec("counter"), 0, None)
    directory.forget(old)
    assert directory.named("counter") is new
    assert directory.load == {0: 1}


def test_taken_lists_registered_and_repeated_names() -> None:
    directory = Directory()
    directory.add(_spec("a"), 0, None)
    assert directory.taken(["b", None, "c", None]) == []
    assert directory.taken(["a", "b"]) == ["a"]
    assert directory.taken(["b", "c", "b"]) == ["b"]


def test_on_slot_lists_the_actors_a_worker_holds() -> None:
    directory = Directory()
    a = directory.add(_spec(), 0, None)
    directory.add(_spec(), 1, None)
    c = directory.add(_spec(), 0, None)
    assert directory.on_slot(0) == [a, c]
    assert directory.on_slot(2) == []


def test_pick_slot_prefers_the_least_loaded_ready_slot() -> None:
    directory = Directory()
    for slot in (0, 0, 1):
        directory.add(_spec(), slot, None)
    assert directory.pick_slot(None, [0, 1, 2], {0, 1, 2}) == 2  # empty
    assert directory.pick_slot(None, [0, 1], {0, 1}) == 1  # fewer actors
    assert directory.pick_slot(None, [0, 1, 2], {0, 1}) == 1  # 2 is not ready yet
    assert directory.pick_slot(None, [0, 1, 2], set()) == 2  # none ready: the least loaded


def test_pick_slot_breaks_ties_by_the_lowest_slot() -> None:
    directory = Directory()
    assert directory.pick_slot(None, [3, 1, 2], {1, 2, 3}) == 1


def test_pick_slot_keeps_a_pinned_slot() -> None:
    directory = Directory()
    directory.add(_spec(), 0, None)
    assert directory.pick_slot(0, [0, 1], {1}) == 0  # loaded and not ready: pinned anyway
