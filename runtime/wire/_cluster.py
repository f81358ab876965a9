"""What a system's addresses are, and the control records of a cluster: nodes
joining the head, the head starting and signalling workers on them, and where
each worker slot now lives (``Place``), which every client keeps a replica of.

A single-host system uses none of the node records: its supervisor starts its
workers itself and every mailbox is an ipc path in the run directory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Addresses",
    "ClientBeat",
    "Exited",
    "Goodbye",
    "Join",
    "Joined",
    "Launch",
    "ListNodes",
    "NodeBeat",
    "NodeOutput",
    "Place",
    "Placed",
    "Signal",
]


class Addresses(NamedTuple):
    """Where one process finds the system: the control ROUTER (supervisor or head),
    the bus proxy's two ends, its host's run directory (ipc mailboxes), its host's
    id (two processes with the same id reach each other's mailboxes over ipc), and
    the directory of CURVE keys every tcp:// socket uses (None: no tcp)."""

    control: str
    bus_in: str
    bus_out: str
    run_dir: str
    host: str
    keys: str | None = None


class Place(NamedTuple):
    """Where the worker in ``slot`` lives now: its node and host, its ipc mailbox
    (for callers on the same host) and its tcp mailbox (for the others)."""

    slot: int
    epoch: int
    node: str
    host: str
    ipc: str
    tcp: str | None


# -- nodes -> head -------------------------------------------------------------------
class Join(NamedTuple):
    """A node offers ``workers`` worker processes; worker k listens on tcp port
    ``port_base + k`` at ``advertise``."""

    req_id: int
    name: str
    host: str
    advertise: str
    workers: int
    port_base: int
    run_dir: str
    pid: int


class NodeBeat(NamedTuple):
    """A node's heartbeat; the head answers each with one of its own."""

    name: str
    incarnation: int


class NodeOutput(NamedTuple):
    """Lines its workers wrote (``observe``'s JSON entries), for the drivers."""

    entries: list[Any]


class Exited(NamedTuple):
    """A worker process on a node ended."""

    slot: int
    epoch: int
    returncode: int | None


# -- head -> nodes ---------------------------------------------------------------------
class Joined(NamedTuple):
    """The head accepted a node: its ``incarnation`` fences its later messages, and
    ``lost`` says the head took it for lost (the node ends its workers and exits)."""

    name: str
    incarnation: int
    lost: bool


class Launch(NamedTuple):
    """Start a worker: its process arguments (JSON) and where it listens."""

    place: Place
    args: str


class Signal(NamedTuple):
    slot: int
    epoch: int
    signal: int


# -- head -> clients ------------------------------------------------------------------------
class Placed(NamedTuple):
    """Workers started somewhere: every client updates its replica of the places."""

    places: list[Place]


# -- drivers -> head ---------------------------------------------------------------------------
class ClientBeat(NamedTuple):
    """A driver of a cluster is alive; the actors it owns live while it does."""

    owner: str


class ListNodes(NamedTuple):
    """A client asks for the nodes: the answer is a list of JSON objects."""

    req_id: int


class Goodbye(NamedTuple):
    """A driver leaves the cluster: the actors it owns (not detached) are stopped."""

    req_id: int
    owner: str
