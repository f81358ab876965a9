"""A received batch's entries, checked one by one into :class:`Request` records.
Pure: the worker reads the socket and decides what to do with each request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.wire._frames import CALL, CANCEL, TELL, Buffer, ProtocolError, RawEntry

__all__ = ["Request", "parse_entries"]

_REQUEST_KINDS = frozenset({CALL, TELL, CANCEL})


class Request:
    """One call, tell or cancel as a worker sees it."""

    __slots__ = ("actor_id", "blob", "bufs", "cancelled", "kind", "method", "msg_id", "peer")

    def __init__(
        self,
        peer: bytes | None,
        kind: int,
        msg_id: int,
        actor_id: int,
        method: str,
        blob: Any,
        bufs: Sequence[Buffer],
    ) -> None:
        self.peer = peer  # None: a call from an actor of this same worker
        self.kind = kind
        self.msg_id = msg_id
        self.actor_id = actor_id
        self.method = method
        self.blob = blob
        self.bufs = bufs
        self.cancelled = False  # by its caller, before it started: skipped when its turn comes


def parse_entries(
    peer: bytes, entries: list[RawEntry], buffers: Sequence[Buffer]
) -> tuple[list[Request], list[Exception], bool]:
    """The requests of one batch (from ``decode_body``: its fields have their
    types), in order; what was wrong with each entry dropped (an entry of an
    unknown kind, or whose buffers are not there, is dropped alone: the next
    one's buffers follow its own); and whether any is a cancel."""
    requests: list[Request] = []
    errors: list[Exception] = []
    offset = 0
    cancels = False
    for kind, msg_id, actor_id, method, blob, nbufs in entries:
        if kind not in _REQUEST_KINDS:
            errors.append(ProtocolError(f"an entry of kind {kind}"))
        elif nbufs and offset + nbufs > len(buffers):
            errors.append(ProtocolError(f"an entry whose {nbufs} buffers are not there"))
        else:
            if kind == CANCEL:
                cancels = True
            request = Request(peer, kind, msg_id, actor_id, method, blob, ())
            if nbufs:
                request.bufs = buffers[offset : offset + nbufs]
            requests.append(request)
        offset += nbufs
    return requests, errors, cancels
