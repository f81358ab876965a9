"""A cluster node: one host's worker processes, started, signalled and reported on
as the head says, with the head's heartbeat watched. ``main`` is what
``dovecote node`` runs."""

from __future__ import annotations

from runtime.node._node import Node, main, read_join_file

__all__ = ["Node", "main", "read_join_file"]
