"""Supervision as pure functions, as in OTP's ``supervisor.erl``: whether a child
restarts, whether a restart stays within the intensity, which children a
strategy restarts, how long to back off. No clock: ``now`` is passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["Intensity", "backoff", "restarts_for", "targets", "within_intensity"]

BACKOFF_FIRST = 0.05  # seconds before the second restart within a period; doubles after
BACKOFF_MAX = 2.0

T = TypeVar("T")


class Intensity(Protocol):
    """At most ``max_restarts`` restarts within ``period`` seconds."""

    @property
    def max_restarts(self) -> int: ...

    @property
    def period(self) -> float: ...


def restarts_for(restart: str, abnormal: bool) -> bool:
    """OTP: permanent always, transient after an abnormal end, temporary never."""
    return restart == "permanent" or (restart == "transient" and abnormal)


def within_intensity(
    restarts: Sequence[float], now: float, spec: Intensity
) -> tuple[float, ...] | None:
    """The restart history with one more restart at ``now`` (those older than the
    period dropped), or None if that restart would pass the intensity."""
    recent = tuple(t for t in restarts if now - t <= spec.period)
    if len(recent) >= spec.max_restarts:
        return None
    return (*recent, now)


def targets(strategy: str, children: Sequence[T], crashed: T) -> list[T]:
    """The children a crash restarts, in start order: ``one_for_one`` the crashed
    child, ``one_for_all`` all of them, ``rest_for_one`` it and those after it."""
    if strategy == "one_for_one":
        return [crashed]
    if strategy == "one_for_all":
        return list(children)
    if strategy == "rest_for_one":
        return list(children[list(children).index(crashed) :])
    raise ValueError(f"unknown strategy {strategy!r}")


def backoff(recent: int) -> float:
    """Seconds to wait before a restart, the ``recent``-th within the period."""
    if recent <= 1:
        return 0.0
    return float(min(BACKOFF_FIRST * 2 ** (recent - 2), BACKOFF_MAX))
