"""A batch of calls and tells run at once, without a request record per message.

A burst from one caller (tells, pipelined asks) arrives as one batch. Each
entry whose actor is idle with nothing queued, whose method has run before, and
whose arguments came raw (plain values, no buffers) runs straight from the
batch's tuple: its reply goes to the outbox unnamed. Anything else (a busy or
unknown actor, a first call of a method, an error, an awaitable, a stop) gets
its ``Request`` and goes the usual way, in its turn: entries run in arrival
order either way, so each caller's order per actor holds. A message of one
entry, the usual lone call, is read and run by ``run_one``, which the mailbox's
reader calls: its plain reply goes out from there, at once.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from runtime import wire
from runtime.core import Batch
from runtime.wire import Buffer, RawEntry, Request
from runtime.worker._actors import AWAITABLE, Actors

__all__ = ["run_batch", "run_lone", "run_one"]

_CALL = wire.CALL
_TELL = wire.TELL
_HEAD = wire.HEADER.size
_SMALL = 4096  # bytes: a larger one-part message is read in place (see Inbox.decode)
_loads = pickle.loads
_NO_KWARGS = wire.NO_KWARGS


def run_batch(
    actors: Actors, peer: bytes, entries: Sequence[RawEntry], buffers: Sequence[Buffer]
) -> None:
    """Run the entries of a batch of well-formed calls and tells (``wire.calls_only``),
    nothing being stashed."""
    mailbox = actors.mailbox
    batch = mailbox.batch = Batch(peer, entries)  # what has not started stays cancellable
    try:
        _run(actors, peer, entries, buffers, batch)
    finally:
        mailbox.batch = None


def run_one(actors: Actors, peer: bytes, part: Any) -> None:
    """A small message of one part from the mailbox, as its reader read it. The
    usual one, a well-formed call or tell with nothing stashed, runs as
    ``run_lone`` runs one (its plain reply sent at once); anything else goes the
    inbox's way. Read and checked inline, as ``plain_body``, ``decode_body`` and
    ``calls_only`` would: on this path, just after a wake-up, each call costs
    several times what it does in a warm loop (calling them: +2% worker CPU per
    ask, +0.02 on the ask's p50 over raw, measured ask by ask in random order)."""
    inbox = actors.inbox
    body = part.bytes if len(part) <= _SMALL else b""  # pickle reads bytes faster than a view
    if not body.startswith(inbox.head) or len(body) == _HEAD:  # large, another epoch's...
        inbox.on_frames([peer, part])  # ... buffers counted but absent, not ours: see decode
        return
    try:
        entries = _loads(body[_HEAD:])
    except BaseException as exc:  # wire.decode_body, inline; even SystemExit
        inbox.malformed(peer, wire.ProtocolError(f"body does not unpickle: {type(exc).__name__}"))
        return
    entry = entries[0] if type(entries) is list and len(entries) == 1 else None
    if type(entry) is tuple and len(entry) == 6 and not (actors.mailbox.stash or inbox.recycling):
        kind, msg_id, actor_id, method, _, nbufs = entry
        if (
            type(kind) is int  # each type before its value: a hostile one may not compare
            and type(msg_id) is int
            and type(actor_id) is int
            and type(method) is str
            and type(nbufs) is int
            and kind in (_CALL, _TELL)
            and nbufs == 0
        ):
            _run(actors, peer, (entry,), (), None)  # a first call, a busy actor: delivered
            return
    inbox.dispatch(peer, entries, ())


def run_lone(actors: Actors, peer: bytes | None, entry: RawEntry) -> None:
    """A message of one call or tell with no buffers, well-formed, nothing stashed,
    or (``peer`` None) a call of this worker's own, due: run without a Batch (a
    lone entry starts at once, so no cancel can find it waiting), and its plain
    reply sent from here (``Replies.lone``)."""
    _run(actors, peer, (entry,), (), None)


def _run(
    actors: Actors, peer: bytes | None, entries: Sequence[RawEntry], buffers: Sequence[Buffer],
    batch: Batch | None,
) -> None:  # fmt: skip
    cells, busy, inbox, replies = actors.cells, actors.busy, actors.inbox, actors.replies
    offset = 0
    for i, entry in enumerate(entries):
        kind, msg_id, actor_id, method, payload, nbufs = entry
        if batch is not None:
            batch.next = i + 1
            if batch.cancelled and msg_id in batch.cancelled and kind == _CALL:
                offset += nbufs  # its verdict went out as CANCELLED: it never runs
                continue
        cell = cells.get(actor_id)
        fn = None if cell is None or cell.busy or cell.queue else cell.methods.get(method)
        raw = type(payload)  # raw arguments (see wire.dumps_call): args, or [args, kwargs]
        if fn is None or nbufs or (raw is not tuple and raw is not list) or inbox.recycling:
            offset = _slow(actors, peer, entry, buffers, offset)
            continue
        busy.start(method, actor_id)
        try:
            if raw is tuple:
                result = inbox.call_user(fn, payload, _NO_KWARGS)
            else:
                args, kwargs = payload
                result = inbox.call_user(fn, args, kwargs)
        except BaseException as exc:  # as in Actors._execute: the caller gets it
            busy.end()
            actors.failed(cell, _request(peer, entry, ()), exc)  # type: ignore[arg-type]
        else:
            busy.end()
            # a result of a type never seen, or awaitable, or a stop: the usual way
            if cell.stop_after is not False or AWAITABLE.get(type(result), True):  # type: ignore[union-attr]
                actors.returned(cell, _request(peer, entry, ()), result)  # type: ignore[arg-type]
            elif kind == _CALL:  # a lone call's plain reply goes now; else to the outbox
                sent = batch is None and replies.lone(peer, msg_id, result)
                if not sent and replies.ok(peer, msg_id, result) is not None:
                    replies.reply(_request(peer, entry, ()), result)  # names the call
        actors.count()


def _slow(
    actors: Actors, peer: bytes | None, entry: RawEntry, buffers: Sequence[Buffer], offset: int
) -> int:
    """An entry the usual way; where the next entry's buffers start."""
    nbufs = entry[5]
    if nbufs and offset + nbufs > len(buffers):
        error = wire.ProtocolError(f"an entry whose {nbufs} buffers are not there")
        actors.inbox.malformed(peer, error)
    else:
        actors.deliver(_request(peer, entry, buffers[offset : offset + nbufs] if nbufs else ()))
    return offset + nbufs


def _request(peer: bytes | None, entry: RawEntry, bufs: Sequence[Buffer]) -> Request:
    kind, msg_id, actor_id, method, payload, _ = entry
    return Request(peer, kind, msg_id, actor_id, method, payload, bufs)
