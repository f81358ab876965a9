"""Supervision policy as pure functions, without processes (as OTP's supervisor
tests check restart types, intensity and strategies one by one)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime.core import backoff, restarts_for, targets, within_intensity


@dataclass(frozen=True)
class Spec:
    max_restarts: int
    period: float


# -- restart types -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("restart", "abnormal", "expected"),
    [
        ("permanent", True, True),
        ("permanent", False, True),
        ("transient", True, True),
        ("transient", False, False),
        ("temporary", True, False),
        ("temporary", False, False),
    ],
)
def test_restarts_for_each_type_and_end(restart: str, abnormal: bool, expected: bool) -> None:
    assert restarts_for(restart, abnormal) is expected


def test_an_unknown_restart_type_never_restarts() -> None:
    assert not restarts_for("sometimes", True)


# -- intensity -------------------------------------------------------------------------
def test_restarts_are_accepted_up_to_max_restarts() -> None:
    spec = Spec(max_restarts=3, period=5.0)
    restarts: tuple[float, ...] = ()
    for n, now in enumerate((1.0, 1.5, 2.0), start=1):
        accepted = within_intensity(restarts, now, spec)
        assert accepted is not None
        assert len(accepted) == n
        assert accepted[-1] == now
        restarts = accepted
    assert restarts == (1.0, 1.5, 2.0)


def test_a_restart_past_max_restarts_within_the_period_is_refused() -> None:
    spec = Spec(max_restarts=3, period=5.0)
    assert within_intensity((1.0, 1.5, 2.0), 2.5, spec) is None
    assert within_intensity((1.0, 1.5, 2.0), 6.0, spec) is None  # 1.0 is exactly 5 s old


def test_restarts_older_than_the_period_are_dropped() -> None:
    spec = Spec(max_restarts=3, period=5.0)
    assert within_intensity((1.0, 1.5, 2.0), 6.1, spec) == (1.5, 2.0, 6.1)
    assert within_intensity((1.0, 1.5, 2.0), 100.0, spec) == (100.0,)


def test_the_history_given_is_left_as_it_was() -> None:
    history = (1.0, 2.0)
    within_intensity(history, 3.0, Spec(max_restarts=5, period=5.0))
    assert history == (1.0, 2.0)


def test_max_restarts_zero_refuses_the_first_restart() -> None:
    assert within_intensity((), 0.0, Spec(max_restarts=0, period=5.0)) is None


def test_max_restarts_one_allows_one_per_period() -> None:
    spec = Spec(max_restarts=1, period=1.0)
    first = within_intensity((), 10.0, spec)
    assert first == (10.0,)
    assert within_intensity(first, 10.5, spec) is None
    assert within_intensity(first, 11.5, spec) == (11.5,)


# -- strategies -------------------------------------------------------------------------
CHILDREN = ["a", "b", "c"]


@pytest.mark.parametrize("crashed", CHILDREN)
def test_one_for_one_restarts_the_crashed_child_alone(crashed: str) -> None:
    assert targets("one_for_one", CHILDREN, crashed) == [crashed]


@pytest.mark.parametrize("crashed", CHILDREN)
def test_one_for_all_restarts_every_child_in_start_order(crashed: str) -> None:
    chosen = targets("one_for_all", CHILDREN, crashed)
    assert chosen == CHILDREN
    assert chosen is not CHILDREN  # a copy: the group's list may change meanwhile


@pytest.mark.parametrize(
    ("crashed", "expected"),
    [("a", ["a", "b", "c"]), ("b", ["b", "c"]), ("c", ["c"])],
    ids=["first", "middle", "last"],
)
def test_rest_for_one_restarts_the_crashed_child_and_those_after(
    crashed: str, expected: list[str]
) -> None:
    assert targets("rest_for_one", CHILDREN, crashed) == expected


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'one_for_some'"):
        targets("one_for_some", CHILDREN, "a")


# -- back-off ------------------------------------------------------------------------------
def test_the_first_restart_in_a_period_is_immediate() -> None:
    assert backoff(0) == 0.0
    assert backoff(1) == 0.0


def test_later_restarts_back_off_longer_and_longer_up_to_a_cap() -> None:
    assert 0 < backoff(2) < backoff(3) < backoff(4) <= 2.0
    assert backoff(100) == 2.0
