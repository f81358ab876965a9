"""Starting actors, restarting them after a crash, and giving up on them, as in
Erlang/OTP: by their restart type (``core.restarts_for``), within their restart
intensity (``core.within_intensity``), alone or with their group by its strategy
(``core.targets``), after a back-off (``core.backoff``). The decisions are the
core's pure functions; this module carries them out, as procedures."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from runtime import wire
from runtime.core import (
    ActorRecord,
    Directory,
    Group,
    Intensity,
    backoff,
    restarts_for,
    targets,
    within_intensity,
)
from runtime.supervisor._messages import Events, Watchers
from runtime.supervisor._procedures import Procedure, Procedures, Wait
from runtime.supervisor._workers import Workers

__all__ = ["Outcome", "Restarts"]

log = logging.getLogger("dovecote")

Outcome = tuple[bool, bytes | None, str]  # a creation's: ok, the pickled error, its text


def _count_restart(holder: ActorRecord | Group, spec: Intensity) -> bool:
    """Record a restart now on ``holder``, unless it would pass ``spec``'s intensity."""
    restarts = within_intensity(holder.restarts, time.monotonic(), spec)
    if restarts is None:
        return False
    holder.restarts = restarts
    return True


class Restarts:
    """Actors' (re)starts and ends, carried out on the workers."""

    def __init__(
        self,
        directory: Directory,
        workers: Workers,
        procedures: Procedures,
        watchers: Watchers,
        events: Events,
    ) -> None:
        self.directory = directory
        self.workers = workers
        self.procedures = procedures
        self.watchers = watchers
        self.events = events

    def start_group(
        self, group: Group, children: list[ActorRecord]
    ) -> Generator[Wait, Any, tuple[bool, Any]]:
        """Start a new group's children in order, each once the previous is up; if one
        fails, stop those started, in reverse order: (ok, their addresses or the error)."""
        for index, child in enumerate(children):
            ok, payload, _ = yield from self.create(child)
            if not ok:
                for started in reversed(children[:index]):
                    self.workers.send(started.slot, wire.StopActor(started.actor_id))
                    yield ("stopped", started.actor_id)
                for record in children:
                    self.directory.forget(record)
                del self.directory.groups[group.group_id]
                return False, payload
            group.children.append(child.actor_id)
        return True, [child.address() for child in children]

    def create(self, actor: ActorRecord) -> Generator[Wait, Any, Outcome]:
        """Start (or restart) an actor in its slot; resumes with (ok, error, its text)."""
        log.debug("creating actor #%d in worker %d", actor.actor_id, actor.slot)
        spec = actor.spec
        self.workers.send(actor.slot, wire.Create(actor.actor_id, spec.name, spec.blob, spec.retry))
        restarting = actor.state == "restarting"
        ok, payload, text = yield ("created", actor.actor_id)
        if ok:
            actor.state = "running"
            kind = "restarted" if restarting else "started"
            self.events.publish(
                f"dovecote.actor.{kind}", actor_id=actor.actor_id, name=actor.name, slot=actor.slot
            )
        return ok, payload, text

    # -- one actor ------------------------------------------------------------------
    def actor_exited(self, actor: ActorRecord, cause: str, abnormal: bool, counted: bool) -> None:
        """An actor's process died: restart it (or its group), or give up on it."""
        if not self.directory.current(actor) or actor.state != "running":
            return  # forgotten meanwhile, or a procedure (re)starting it has been told
        if actor.group is not None:
            group = self.directory.groups[actor.group]
            self.group_child_exited(group, actor, cause, abnormal, counted)
            return
        if not restarts_for(actor.restart, abnormal):
            self.give_up(actor, f"{cause}; not restarted ({actor.restart})", failure=False)
            return
        if counted and not _count_restart(actor, actor.spec):
            spec = actor.spec
            self.give_up(
                actor,
                f"{cause}; more than {spec.max_restarts} restarts in {spec.period} s, giving up",
            )
            return
        self.watchers.down(actor, f"crashed: {cause}; restarting", final=False)
        self.procedures.start(self.restart_one(actor, cause))

    def restart_one(self, actor: ActorRecord, cause: str) -> Procedure:
        actor.state = "restarting"
        delay = backoff(len(actor.restarts))
        if delay:
            yield ("sleep", delay)
        if not self.directory.current(actor):
            return  # stopped or given up on while it waited
        ok, _, text = yield from self.create(actor)
        if not ok and actor.actor_id in self.directory.actors:
            actor.state = "running"  # so that the failure counts as the next crash
            self.actor_exited(actor, f"its restart failed: {text}", True, True)

    # -- groups ---------------------------------------------------------------------
    def group_child_exited(
        self, group: Group, child: ActorRecord, cause: str, abnormal: bool, counted: bool
    ) -> None:
        if not restarts_for(child.restart, abnormal):
            group.children.remove(child.actor_id)
            self.give_up(child, f"{cause}; not restarted ({child.restart})", failure=False)
            return
        if counted and not _count_restart(group, group.spec):
            spec = group.spec
            self.give_up_group(
                group, f"{cause}; more than {spec.max_restarts} restarts in {spec.period} s"
            )
            return
        ids = targets(group.spec.strategy, group.children, child.actor_id)
        restarted = [self.directory.actors[a] for a in ids]
        self.procedures.start(self.restart_group(group, child, restarted, cause))

    def restart_group(
        self, group: Group, crashed: ActorRecord, restarted: list[ActorRecord], cause: str
    ) -> Procedure:
        self.watchers.down(crashed, f"crashed: {cause}; restarting", final=False)
        crashed.state = "restarting"
        for sibling in reversed(restarted):  # stopped in reverse start order
            if sibling is crashed or sibling.state != "running":
                continue
            sibling.state = "restarting"
            self.watchers.down(sibling, f"restarting with its group after: {cause}", final=False)
            self.workers.send(sibling.slot, wire.Suspend(sibling.actor_id, cause))
            yield ("suspended", sibling.actor_id)
        delay = backoff(len(group.restarts))
        if delay:
            yield ("sleep", delay)
        for child in restarted:  # started again in order
            if not group.alive or not self.directory.current(child):
                continue  # the group gave up, or the child was stopped, while it waited
            ok, _, text = yield from self.create(child)
            if not ok and group.alive:
                child.state = "running"
                self.group_child_exited(group, child, f"its restart failed: {text}", True, True)
                return

    # -- giving up --------------------------------------------------------------------
    def give_up(self, actor: ActorRecord, reason: str, failure: bool = True) -> None:
        """Stop restarting an actor; a failure (past its intensity) is logged as one."""
        log.log(
            logging.ERROR if failure else logging.INFO,
            "supervisor: actor #%d (%s) ends: %s",
            actor.actor_id,
            actor.name,
            reason,
        )
        self.watchers.down(actor, reason, final=True)
        self.directory.forget(actor)
        if actor.slot in self.workers.procs:
            self.workers.send(actor.slot, wire.Abandon(actor.actor_id, reason))

    def give_up_group(self, group: Group, reason: str) -> None:
        """Past its intensity a group stops all its children and escalates: with no
        supervisor above it, escalating means the failure is reported."""
        group.alive = False
        log.error("supervisor: group %d gave up and escalates: %s", group.group_id, reason)
        for actor_id in reversed(group.children):
            self.give_up(self.directory.actors[actor_id], f"its group gave up: {reason}")
        del self.directory.groups[group.group_id]
