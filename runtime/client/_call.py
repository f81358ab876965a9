"""A call's future as the transport keeps it until its reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors._future import ActorFuture
from runtime.wire import Buffer, RawEntry

__all__ = ["Call"]


class Call(ActorFuture[Any]):
    """An ``ActorFuture`` that is also its call's record (``core.Pending``): the slot
    it went to and, for a retryable call, what it sent and how many re-sends it has
    left. One object per call where a record beside the future made two: a program
    holds many pipelined calls at once, and each object it holds lengthens the
    garbage collector's passes."""

    slot: int = 0
    entry: RawEntry | None = None
    bufs: Sequence[Buffer] | None = None
    retries: int = 0
