"""Restart decisions, as pure functions and plain records. Internal."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["ActorRecord", "Group", "backoff", "restarts_for", "within_intensity"]

BACKOFF_FIRST = 0.05  # seconds before the second restart within a period; doubles after
BACKOFF_MAX = 2.0


class ActorRecord:
    """What the supervisor knows of one actor: enough to start it again."""

    __slots__ = (
        "actor_id",
        "blob",
        "cls_name",
        "group",
        "max_restarts",
        "name",
        "period",
        "restart",
        "restarts",
        "retry",
        "slot",
        "state",
    )

    def __init__(self, actor_id: int, slot: int, group: int | None, spec: dict[str, Any]) -> None:
        self.actor_id = actor_id
        self.slot = slot
        self.group = group
        self.blob: bytes = spec["blob"]
        self.name: str | None = spec["name"]
        self.cls_name: str = spec.get("cls", "")
        self.retry: tuple[tuple[str, int], ...] = tuple(map(tuple, spec.get("retry", ())))
        self.restart: str = spec.get("restart", "permanent")
        self.max_restarts: int = spec.get("max_restarts", 3)
        self.period: float = spec.get("period", 5.0)
        self.restarts: deque[float] = deque()
        self.state = "starting"  # starting | running | restarting

    def address(self) -> tuple[int, int, str | None, tuple[tuple[str, int], ...], str]:
        """What a client needs to build the ref."""
        return (self.actor_id, self.slot, self.name, self.retry, self.cls_name)


class Group:
    """Children supervised together, by one strategy and one restart intensity."""

    __slots__ = ("alive", "children", "group_id", "max_restarts", "period", "restarts", "strategy")

    def __init__(self, group_id: int, strategy: str, max_restarts: int, period: float) -> None:
        self.group_id = group_id
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self.children: list[int] = []  # actor ids, in start order
        self.restarts: deque[float] = deque()
        self.alive = True


def restarts_for(restart: str, abnormal: bool) -> bool:
    """OTP: permanent always, transient after an abnormal end, temporary never."""
    return restart == "permanent" or (restart == "transient" and abnormal)


def within_intensity(restarts: deque[float], max_restarts: int, period: float) -> bool:
    """Record a restart now if fewer than ``max_restarts`` happened in ``period``."""
    now = time.monotonic()
    while restarts and now - restarts[0] > period:
        restarts.popleft()
    if len(restarts) >= max_restarts:
        return False
    restarts.append(now)
    return True


def backoff(recent: int) -> float:
    """Seconds to wait before a restart, the ``recent``-th within the period."""
    if recent <= 1:
        return 0.0
    return min(BACKOFF_FIRST * 2 ** (recent - 2), BACKOFF_MAX)
