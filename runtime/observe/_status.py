"""The status of a running system: frozen records built from the supervisor's
JSON reply (``system.status()``), and how a crash cause is counted. Sans-IO."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["ActorStatus", "SystemStatus", "WorkerStatus", "crash_kind", "status_from_json"]


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """One worker process, as its last heartbeat told (``rss`` and ``cpu_percent``
    are 0 before its first one)."""

    slot: int
    pid: int
    epoch: int  # its incarnation: 0, then 1 after the first restart of the slot...
    restarts: int  # how many workers this slot has had before this one
    ready: bool
    rss: int
    cpu_percent: float
    messages: int  # handled since it started, tasks included
    tasks: int
    mailbox: int  # messages read and not yet handled
    method: str | None  # what its loop runs now
    actor_id: int | None  # whose method that is
    running_for: float  # seconds that method has run
    stack: str | None  # the loop's stack, once that method has run a second


@dataclasses.dataclass(frozen=True)
class ActorStatus:
    actor_id: int
    name: str | None
    cls: str
    worker: int
    restart: str  # permanent | transient | temporary
    restarts: int  # since it was spawned
    state: str  # starting | running | restarting
    group: int | None
    mailbox: int  # messages waiting for it


@dataclasses.dataclass(frozen=True)
class SystemStatus:
    """``ActorSystem.status()``: the workers, the actors, crashes by cause, and the
    latest lifecycle events (dicts with ``t``, ``topic`` and the event's fields)."""

    system_id: str
    pid: int  # the supervisor's
    uptime: float
    workers: tuple[WorkerStatus, ...]
    actors: tuple[ActorStatus, ...]
    crashes: Mapping[str, int]
    events: tuple[Mapping[str, Any], ...]

    def actor(self, name: str) -> ActorStatus:
        """The actor registered as ``name``; LookupError if there is none."""
        for actor in self.actors:
            if actor.name == name:
                return actor
        raise LookupError(f"no actor named {name!r} in system {self.system_id}")


def _fields(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in raw]
    if missing:
        raise ValueError(f"a {cls.__name__} without {missing}")
    return {n: raw[n] for n in names}


def status_from_json(raw: Mapping[str, Any]) -> SystemStatus:
    """The record of a status reply; ValueError if it lacks a field."""
    try:
        workers = tuple(WorkerStatus(**_fields(WorkerStatus, w)) for w in raw["workers"])
        actors = tuple(ActorStatus(**_fields(ActorStatus, a)) for a in raw["actors"])
        return SystemStatus(
            raw["system_id"],
            raw["pid"],
            raw["uptime"],
            workers,
            actors,
            dict(raw["crashes"]),
            tuple(raw["events"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a status reply: {exc!r}") from None


_KINDS = (  # (words in the cause, kind); the first that matches
    ("lost its heartbeat", "heartbeat"),
    ("memory limit", "memory"),
    ("message limit", "messages"),
    ("killed by signal", "signal"),
    ("exited with code", "exit"),
)


def crash_kind(cause: str) -> str:
    """``worker 1 (pid 7) killed by signal SIGKILL`` -> ``signal``: a label for
    counting crashes by cause (heartbeat, memory, messages, signal, exit, other)."""
    for words, kind in _KINDS:
        if words in cause:
            return kind
    return "other"
