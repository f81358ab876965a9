"""The supervisor's directory: actor records, names, groups and placement. Pure
state: the supervisor owns the one instance and does all the I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from runtime.wire import ActorSpec, GroupSpec

__all__ = ["ActorRecord", "Directory", "Group"]


class ActorRecord:
    """What the supervisor knows of one actor: enough to start it again."""

    __slots__ = ("actor_id", "group", "restarts", "slot", "spec", "state")

    def __init__(self, actor_id: int, slot: int, group: int | None, spec: ActorSpec) -> None:
        self.actor_id = actor_id
        self.slot = slot
        self.group = group
        self.spec = spec
        self.restarts: tuple[float, ...] = ()  # times of recent restarts (see policy)
        self.state = "starting"  # starting | running | restarting

    @property
    def name(self) -> str | None:
        return self.spec.name

    @property
    def restart(self) -> str:
        return self.spec.restart

    def address(self) -> list[object]:
        """What a client needs to build the ref."""
        spec = self.spec
        return [self.actor_id, self.slot, spec.name, spec.retry, spec.cls]


class Group:
    """Children supervised together, by one strategy and one restart intensity."""

    __slots__ = ("alive", "children", "group_id", "restarts", "spec")

    def __init__(self, group_id: int, spec: GroupSpec) -> None:
        self.group_id = group_id
        self.spec = spec
        self.children: list[int] = []  # actor ids, in start order
        self.restarts: tuple[float, ...] = ()
        self.alive = True


class Directory:
    """Every actor by id, the names, the groups, and how many actors each slot holds."""

    def __init__(self) -> None:
        self.actors: dict[int, ActorRecord] = {}
        self.names: dict[str, int] = {}
        self.groups: dict[int, Group] = {}
        self.load: dict[int, int] = {}
        self._ids = itertools.count(1)

    def add(self, spec: ActorSpec, slot: int, group: int | None) -> ActorRecord:
        actor = ActorRecord(next(self._ids), slot, group, spec)
        self.actors[actor.actor_id] = actor
        self.load[slot] = self.load.get(slot, 0) + 1
        if spec.name is not None:
            self.names[spec.name] = actor.actor_id
        return actor

    def add_group(self, spec: GroupSpec) -> Group:
        group = Group(next(self._ids), spec)
        self.groups[group.group_id] = group
        return group

    def forget(self, actor: ActorRecord) -> None:
        if self.actors.pop(actor.actor_id, None) is not None:
            self.load[actor.slot] -= 1
        if actor.name is not None and self.names.get(actor.name) == actor.actor_id:
            del self.names[actor.name]

    def current(self, actor: ActorRecord) -> bool:
        """Is this record still the directory's (not stopped or given up on)?"""
        return self.actors.get(actor.actor_id) is actor

    def named(self, name: str) -> ActorRecord | None:
        actor_id = self.names.get(name)
        return None if actor_id is None else self.actors[actor_id]

    def taken(self, names: Iterable[str | None]) -> list[str]:
        """Names already registered, or repeated within ``names``."""
        given = [n for n in names if n is not None]
        return [n for i, n in enumerate(given) if n in self.names or n in given[:i]]

    def on_slot(self, slot: int) -> list[ActorRecord]:
        return [a for a in self.actors.values() if a.slot == slot]

    def pick_slot(self, pinned: int | None, slots: Iterable[int], ready: set[int]) -> int:
        """The pinned slot, else the ready one with the fewest actors."""
        if pinned is not None:
            return pinned
        load = self.load
        return min(slots, key=lambda s: (s not in ready, load.get(s, 0), s))
