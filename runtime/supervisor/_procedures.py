"""Procedures: work that waits for workers' answers, written as generators.

A procedure yields what it waits for and is parked until that comes:

* ``("sleep", seconds)``: resumed with None once the time has passed;
* ``(event, actor_id)``: resumed by ``resume((event, actor_id), value)``, where
  ``event`` is ``"created"``, ``"suspended"`` or ``"stopped"``;
* ``(event, actor_id, deadline)``: the same, or resumed with False at ``deadline``
  (a ``time.monotonic()`` time) if nothing came by then.

Timers run on the supervisor's loop: ``run_timers`` runs those that are due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Generator
from typing import Any, ParamSpec

__all__ = ["Procedure", "Procedures", "Wait", "logged"]

log = logging.getLogger("dovecote")

P = ParamSpec("P")

Wait = tuple[Any, ...]  # ("sleep", seconds), (event, actor_id) or (event, actor_id, deadline)
Procedure = Generator[Wait, Any, None]
Timer = tuple[float, int, Callable[[], None]]  # when, insertion order, what


def logged(action: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """Run one event's handling; a bug in it is logged, and the supervisor goes on."""
    try:
        action(*args, **kwargs)
    except Exception:
        log.exception("supervisor: %s failed", getattr(action, "__name__", action))


class Procedures:
    """The parked procedures, by what each waits for, and the timers."""

    def __init__(self) -> None:
        self.waits: dict[Wait, Procedure] = {}
        self.timers: list[Timer] = []
        self._order = itertools.count(1)  # timers due at the same time run in order

    def start(self, procedure: Procedure) -> None:
        self.advance(procedure, None)

    def advance(self, procedure: Procedure, value: Any) -> None:
        try:
            key = procedure.send(value)
        except StopIteration:
            return
        if key[0] == "sleep":
            self.at(time.monotonic() + key[1], lambda: self.advance(procedure, None))
            return
        wait = key[:2]
        self.waits[wait] = procedure
        if len(key) == 3:  # with a deadline
            self.at(key[2], lambda: self.resume(wait, False))

    def resume(self, wait: Wait, value: Any) -> None:
        procedure = self.waits.pop(wait, None)
        if procedure is not None:
            self.advance(procedure, value)

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self._order), action))

    def next_due(self) -> float | None:
        """When the next timer is due, if there is one."""
        return self.timers[0][0] if self.timers else None

    def run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            logged(heapq.heappop(self.timers)[2])
