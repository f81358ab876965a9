"""The head's nodes: the hosts that joined, the worker slots each runs, and their
health (Paranoid Pirate: each node beats every second and the head answers; a
node silent for three beats is lost).

A node is a launcher: the head decides, the node starts the worker processes it
is told to start, signals them, and reports their exits. Where a slot's worker
lives is a ``wire.Place``; every client keeps a replica of the places (a
snapshot when it says hello, then each change, in order on its control
connection). A lost node's slots move to the surviving nodes (their epochs go
up, so nothing the old incarnations send is taken as current), and their
actors restart there by their policies.
"""

from __future__ import annotations

import itertools
import logging
import signal
from collections.abc import Callable

from runtime import wire
from runtime.core import Liveness, ProcessArgs
from runtime.supervisor._messages import Control

__all__ = ["NODE_BEAT", "NODE_LIVES", "PROBE", "Node", "Nodes", "RemoteProcess"]

log = logging.getLogger("dovecote")

NODE_BEAT = 1.0  # seconds between a node's heartbeats
NODE_LIVES = 3  # beats missed before a node is lost
PROBE = NODE_BEAT / 4  # seconds between the head's looks at its nodes' connections


class Node:
    """One joined node: where it is, what it runs, when it was last heard."""

    def __init__(self, join: wire.Join, peer: bytes, incarnation: int, now: float) -> None:
        self.name = join.name
        self.join = join
        self.peer = peer
        self.incarnation = incarnation
        self.liveness = Liveness(now)
        self.liveness.ready = True
        self.ports: dict[int, int] = {}  # slot -> index of its tcp port (port_base + index)
        self.alive = True

    def free_index(self) -> int:
        used = set(self.ports.values())
        return next(i for i in itertools.count() if i not in used)

    def place(self, slot: int, epoch: int) -> wire.Place:
        join = self.join
        index = self.ports.setdefault(slot, self.free_index())
        return wire.Place(
            slot,
            epoch,
            self.name,
            join.host,
            f"ipc://{join.run_dir}/w{slot}",
            f"tcp://{join.advertise}:{join.port_base + index}",
        )

    def describe(self) -> dict[str, object]:
        join = self.join
        return {
            "name": self.name,
            "host": join.host,
            "address": join.advertise,
            "workers": join.workers,
            "slots": sorted(self.ports),
            "alive": self.alive,
            "pid": join.pid,
        }


class RemoteProcess:
    """A worker process on a node, as the head handles it (see ``LocalProcess``)."""

    def __init__(self, nodes: Nodes, node: Node, place: wire.Place) -> None:
        self.nodes = nodes
        self.node = node
        self.place = place
        self.pid = 0  # known once it says it is ready
        self.returncode: int | None = None

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        if self.node.alive:
            place = self.place
            self.nodes.control.send(self.node.peer, wire.Signal(place.slot, place.epoch, int(sig)))

    def reap(self) -> int | None:
        self.node.ports.pop(self.place.slot, None)
        return self.returncode


class Nodes:
    """Every node that joined, by name."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.nodes: dict[str, Node] = {}
        self._incarnations = itertools.count(1)
        self._probed = 0.0
        self.on_lost: Callable[[Node, str], None] = lambda node, why: None

    def join(self, peer: bytes, message: wire.Join, now: float) -> Node:
        """A node (re)joins; a name that was already here is a new incarnation, and
        the old one's workers are taken for lost."""
        old = self.nodes.get(message.name)
        if old is not None and old.alive:
            self.lose(old, "it joined again (restarted)")
        node = Node(message, peer, next(self._incarnations), now)
        self.nodes[node.name] = node
        self.control.send(peer, wire.Joined(node.name, node.incarnation, False))
        log.info("node %s joined from %s with %d workers", node.name, node.join.advertise,
                 message.workers)  # fmt: skip
        return node

    def beat(self, peer: bytes, message: wire.NodeBeat, now: float) -> None:
        """Answer a node's heartbeat; one the head took for lost is told so."""
        node = self.nodes.get(message.name)
        current = node is not None and node.alive and node.incarnation == message.incarnation
        if node is not None and current:
            node.liveness.beat(now)
        self.control.send(peer, wire.Joined(message.name, message.incarnation, not current))

    def check(self, now: float) -> None:
        """Lose the nodes whose connection closed (a killed process: at once) or whose
        heartbeats stopped (a cut link: three beats)."""
        probe = now - self._probed >= PROBE
        if probe:
            self._probed = now
        for node in [n for n in self.nodes.values() if n.alive]:
            if probe and not self.control.reachable(
                node.peer, wire.Joined(node.name, node.incarnation, False)
            ):
                self.lose(node, "its connection closed")
                continue
            cause = node.liveness.silent(now, NODE_BEAT * NODE_LIVES)
            if cause is not None:
                self.lose(node, f"its heartbeat stopped ({cause.removeprefix('lost its ')})")

    def lose(self, node: Node, why: str) -> None:
        node.alive = False
        log.warning("node %s is lost: %s", node.name, why)
        self.control.send(node.peer, wire.Joined(node.name, node.incarnation, True))
        self.on_lost(node, f"lost with its node {node.name}: {why}")

    def pick(self, previous: Node | None, pinned: str | None = None) -> Node | None:
        """Where a slot's worker starts: its node again if alive, else the live node
        with the most room (workers offered minus slots held)."""
        if previous is not None and previous.alive and pinned in (None, previous.name):
            return previous
        alive = [n for n in self.nodes.values() if n.alive and (pinned in (None, n.name))]
        if not alive:
            return None
        return max(alive, key=lambda n: (n.join.workers - len(n.ports), -n.incarnation))

    def launch(self, node: Node, args: ProcessArgs) -> RemoteProcess:
        place = node.place(args.slot, args.epoch)
        self.control.send(node.peer, wire.Launch(place, args._replace(listen=place.tcp).to_json()))
        return RemoteProcess(self, node, place)

    def of(self, peer: bytes) -> Node | None:
        return next((n for n in self.nodes.values() if n.peer == peer and n.alive), None)

    def close(self) -> None:
        """The head is leaving: every node ends its workers and exits."""
        for node in self.nodes.values():
            if node.alive:
                self.control.send(node.peer, wire.Joined(node.name, node.incarnation, True))
