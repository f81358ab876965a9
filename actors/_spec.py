"""Supervision as data: restart policies and children, validated up front."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Child", "RestartPolicy", "retryable"]

RESTART_TYPES = ("permanent", "transient", "temporary")
MAX_RESTARTS = 3  # the default restart intensity, as OTP's: 3 restarts within 5 s
PERIOD = 5.0
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RestartPolicy:
    """When an actor is restarted, as in Erlang/OTP.

    ``restart``: ``"permanent"`` (always, the default), ``"transient"`` (only after
    an abnormal end: a crash, not a stop) or ``"temporary"`` (never).
    ``max_restarts`` within ``period`` seconds is the restart intensity: past it the
    supervisor gives up on the actor (and a group gives up on all its children).
    """

    restart: str = "permanent"
    max_restarts: int = MAX_RESTARTS
    period: float = PERIOD

    def __post_init__(self) -> None:
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"restart={self.restart!r} is not one of {', '.join(RESTART_TYPES)}")
        check_intensity(self.max_restarts, self.period)


def check_intensity(max_restarts: object, period: object) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts={max_restarts!r} is not a whole number >= 0")
    if (
        isinstance(period, bool)
        or not isinstance(period, int | float)
        or not math.isfinite(period)
        or period <= 0
    ):
        raise ValueError(f"period={period!r} is not a number of seconds > 0")


def check_strategy(strategy: object) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class Child:
    """One child of a supervised group, started in list order, stopped in reverse.

    ``restart`` is the child's restart type; the restart intensity belongs to the
    group (``spawn_group(..., max_restarts=..., period=...)``), as in OTP.
    """

    cls: type
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    worker: int | None = None
    restart: str = "permanent"

    def __post_init__(self) -> None:
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"restart={self.restart!r} is not one of {', '.join(RESTART_TYPES)}")
        if not isinstance(self.args, tuple) or not isinstance(self.kwargs, dict):
            raise ValueError(f"Child({self.cls!r}): args must be a tuple and kwargs a dict")


def retryable(times: int = 3) -> Callable[[F], F]:
    """Mark an actor method safe to run again: if the actor's process dies while a
    call to it is pending, the call is re-sent (up to ``times`` times) to the
    restarted actor instead of failing with ActorCrashedError."""
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"retryable(times={times!r}): times must be a whole number >= 1")

    def mark(method: F) -> F:
        method.__dovecote_retries__ = times  # type: ignore[attr-defined]
        return method

    return mark


def retry_table(cls: type) -> tuple[tuple[str, int], ...]:
    """The retryable methods of an actor class, as a small picklable table."""
    table = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        times = getattr(getattr(cls, name, None), "__dovecote_retries__", 0)
        if times:
            table.append((name, times))
    return tuple(table)
