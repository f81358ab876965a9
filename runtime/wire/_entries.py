"""A received batch's entries, checked one by one into :class:`Request` records.
Pure: the worker reads the socket and decides what to do with each request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.wire._frames import CALL, CANCEL, TELL, Buffer, ProtocolError

__all__ = ["Request", "calls_only", "parse_entries", "replies_only"]

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
    peer: bytes, entries: Any, buffers: Sequence[Buffer]
) -> tuple[list[Request], list[Exception], bool]:
    """The requests of one batch, in order; what was wrong with each entry dropped
    (a malformed entry is dropped alone, and so are the later ones with buffers
    if its own buffer count cannot be read); and whether any is a cancel."""
    if type(entries) is not list:
        return [], [ProtocolError(f"a batch body of type {type(entries).__name__}")], False
    requests: list[Request] = []
    errors: list[Exception] = []
    offset: int | None = 0  # None once a bad entry hides where the next one's buffers start
    cancels = False
    for entry in entries:  # each checked inline: this runs for every message
        try:
            kind, msg_id, actor_id, method, blob, nbufs = entry  # ValueError, TypeError
            if (
                type(method) is not str
                or type(actor_id) is not int
                or type(msg_id) is not int
                or type(nbufs) is not int
                or type(kind) is not int
                or kind not in _REQUEST_KINDS
                or nbufs < 0
            ):
                raise ProtocolError(_bad_entry(kind, msg_id, actor_id, method, nbufs))
            if nbufs and (offset is None or offset + nbufs > len(buffers)):
                raise ProtocolError(f"an entry whose {nbufs} buffers are not there")
        except (ProtocolError, ValueError, TypeError) as exc:
            errors.append(exc)
            offset = _skip_buffers(entry, offset)
            continue
        if kind == CANCEL:
            cancels = True
        request = Request(peer, kind, msg_id, actor_id, method, blob, ())
        if nbufs and offset is not None:  # checked above: its buffers are there
            request.bufs = buffers[offset : offset + nbufs]
            offset += nbufs
        requests.append(request)
    return requests, errors, cancels


def calls_only(entries: Any) -> bool:
    """Whether a batch holds only well-formed calls and tells, with their buffers:
    such a batch may run from its entries as they are (see worker/_batch)."""
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not tuple or len(entry) != 6:
            return False
        kind, msg_id, actor_id, method, _, nbufs = entry
        if (
            type(kind) is not int  # each type before its value: a hostile one may not compare
            or type(msg_id) is not int
            or type(actor_id) is not int
            or type(method) is not str
            or type(nbufs) is not int
            or (kind != CALL and kind != TELL)
            or nbufs < 0
        ):
            return False
    return True


def replies_only(entries: Any) -> bool:
    """Whether a batch of replies holds entries a caller can read: each a tuple of
    six, its kind and call id ints (see ``client.Results``)."""
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not tuple or len(entry) != 6:
            return False
        if type(entry[0]) is not int or type(entry[1]) is not int:
            return False
    return True


def _skip_buffers(entry: Any, offset: int | None) -> int | None:
    """Past a dropped entry's buffers, if its count can be read; else None."""
    if offset is None or type(entry) is not tuple or len(entry) != 6:
        return None
    nbufs = entry[5]
    return offset + nbufs if type(nbufs) is int and nbufs >= 0 else None


def _bad_entry(*fields: Any) -> str:
    """What is wrong with an entry, by types only: a hostile value may not even repr."""
    return "an entry of types " + ", ".join(type(field).__name__ for field in fields)
