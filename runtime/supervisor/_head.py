"""What a supervisor does as a cluster's head: nodes join and leave, their worker
slots are placed and moved, and drivers come and go.

The head is the same supervisor as on one host (the directory, restarts,
watches, the bus proxy), bound on tcp:// with CURVE, and it starts no worker
itself: nodes do, as it tells them (``_nodes``). Drivers join and leave while it
runs: the actors a driver spawned are its own, stopped when it says goodbye or
its heartbeats stop, unless spawned with ``lifetime="detached"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from runtime import wire
from runtime.core import ActorRecord, Directory, ProcessArgs
from runtime.supervisor._messages import Control
from runtime.supervisor._nodes import NODE_BEAT, NODE_LIVES, Node, Nodes, RemoteProcess
from runtime.supervisor._observe import Observer
from runtime.supervisor._procedures import Procedure, Procedures
from runtime.supervisor._workers import WorkerProc, Workers

__all__ = ["Head"]

log = logging.getLogger("dovecote")

OWNER_GRACE = 5.0  # seconds an owner's actors wait for it after its heartbeats stop
STOP_TIMEOUT = 10.0  # seconds the owned actors of a departed driver get for on_stop


class Supervisor(Protocol):
    """The parts of the supervisor the head works with."""

    args: ProcessArgs
    control: Control
    workers: Workers
    directory: Directory
    procedures: Procedures
    observer: Observer

    def on_worker_exit(self, worker: WorkerProc) -> None: ...

    def forget(self, actor: ActorRecord, reason: str) -> None: ...


class Head:
    """The head's part of a supervisor: its nodes, and the drivers owning actors."""

    def __init__(self, supervisor: Supervisor, nodes: Nodes) -> None:
        self.sup = supervisor
        self.nodes = nodes
        self.owners: dict[str, float] = {}  # driver -> when it was last heard
        nodes.on_lost = self.on_node_lost

    def handlers(self) -> dict[type, Callable[[bytes, Any], None]]:
        return {
            wire.Join: self.on_join,
            wire.NodeBeat: self.on_node_beat,
            wire.Exited: self.on_exited,
            wire.ClientBeat: self.on_client_beat,
            wire.Goodbye: self.on_goodbye,
            wire.NodeOutput: self.on_node_output,
        }

    # -- nodes ------------------------------------------------------------------------
    def on_join(self, peer: bytes, message: wire.Join) -> None:
        workers = self.sup.workers
        node = self.nodes.join(peer, message, time.monotonic())
        homeless, workers.homeless = workers.homeless, {}
        for slot, expect in homeless.items():  # slots that waited for a node
            workers.start(slot, expect, node.name, fresh=False)
        first = max(workers.epochs, default=-1) + 1
        for slot in range(first, first + message.workers):
            workers.start(slot, (), node.name)

    def on_node_beat(self, peer: bytes, message: wire.NodeBeat) -> None:
        self.nodes.beat(peer, message, time.monotonic())

    def on_exited(self, peer: bytes, message: wire.Exited) -> None:
        worker = self.sup.workers.find(message.slot, message.epoch)
        if worker is None or not isinstance(worker.proc, RemoteProcess):
            return
        if worker.proc.node.peer != peer:
            return  # a fenced node's late word
        worker.proc.returncode = message.returncode
        self.sup.on_worker_exit(worker)

    def on_node_output(self, peer: bytes, message: wire.NodeOutput) -> None:
        if self.nodes.of(peer) is not None and self.sup.args.options.log_to_driver:
            self.sup.observer.publish_output(message.entries)

    def on_node_lost(self, node: Node, cause: str) -> None:
        """Every worker of a lost node is taken for dead; their slots move."""
        for worker in list(self.sup.workers.procs.values()):
            proc = worker.proc
            if isinstance(proc, RemoteProcess) and proc.node is node:
                worker.liveness.cause = cause  # the root cause, even of a lost heartbeat
                self.sup.on_worker_exit(worker)

    def check(self, now: float) -> None:
        self.nodes.check(now)
        for owner, last in list(self.owners.items()):
            if now - last > NODE_BEAT * NODE_LIVES + OWNER_GRACE:
                log.warning("driver %s is gone: stopping the actors it owned", owner)
                del self.owners[owner]
                self.sup.procedures.start(self.stop_owned(owner, None))

    # -- drivers ------------------------------------------------------------------------
    def on_client_beat(self, peer: bytes, message: wire.ClientBeat) -> None:
        self.owners[message.owner] = time.monotonic()
        self.sup.control.send(peer, message)

    def on_goodbye(self, peer: bytes, message: wire.Goodbye) -> None:
        self.owners.pop(message.owner, None)
        self.sup.procedures.start(self.stop_owned(message.owner, (peer, message.req_id)))

    def stop_owned(self, owner: str, reply: tuple[bytes, int] | None) -> Procedure:
        """Stop the actors ``owner`` spawned (not the detached), newest first."""
        sup = self.sup
        owned = [a for a in sup.directory.actors.values() if a.spec.owner == owner]
        deadline = time.monotonic() + STOP_TIMEOUT
        for actor in sorted(owned, key=lambda a: a.actor_id, reverse=True):
            if not sup.directory.current(actor):
                continue
            actor.state = "stopping"
            if actor.slot in sup.workers.procs:
                sup.workers.send(actor.slot, wire.StopActor(actor.actor_id))
                yield ("stopped", actor.actor_id, deadline)
            sup.forget(actor, f"its driver {owner} left")
        if reply is not None:
            sup.control.reply(reply[0], reply[1], True, len(owned))

    def describe(self) -> list[dict[str, object]]:
        return [node.describe() for node in self.nodes.nodes.values()]
