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
from collections.abc import Callable, Sequence
from typing import Any

from runtime import wire
from runtime.core import Batch, Cell
from runtime.wire import Buffer, RawEntry, Request
from runtime.worker._actors import AWAITABLE, Actors

__all__ = ["run_batch", "run_lone", "run_one"]

_CALL = wire.CALL
_HEAD = wire.HEADER.size
_USUAL = (int, int, int, str, tuple, int)  # the types of a usual call's entry
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
    """A message of one part from the mailbox, as its reader read it. The usual one,
    a call of an idle actor's known method on plain arguments, nothing stashed,
    runs here from its bytes to its reply, with as few calls as may be: just after
    a wake-up, each costs several warm ones. Anything else goes the inbox's way."""
    inbox = actors.inbox
    body = part.bytes  # a copy of a few dozen bytes: pickle reads bytes faster than a view
    if not body.startswith(inbox.head) or len(body) == _HEAD:  # another epoch's, buffers...
        inbox.on_frames([peer, part])  # ... counted but absent, not ours: see decode
        return
    try:
        entries = _loads(body[_HEAD:])
    except BaseException as exc:  # wire.decode_body, inline; even SystemExit
        inbox.malformed(peer, wire.ProtocolError(f"body does not unpickle: {type(exc).__name__}"))
        return
    entry = entries[0] if type(entries) is list and len(entries) == 1 else None
    cell = fn = None  # every field's type at once: no bool, no subclass, no numpy
    if type(entry) is tuple and tuple(map(type, entry)) == _USUAL and entry[0] == _CALL:
        cell = actors.cells.get(entry[2])
        if cell is not None and not (cell.busy or cell.queue or entry[5] or actors.mailbox.stash):
            fn = None if inbox.recycling else cell.methods.get(entry[3])
    if fn is None:  # a tell, keywords, a first call of a method, a busy actor...
        inbox.dispatch(peer, entries, ())
        return
    _, msg_id, actor_id, method, payload, _ = entry  # type: ignore[misc]  # checked: _USUAL
    busy = actors.busy  # _call's step, inline: run it, reply at once if plain
    busy.start(method, actor_id)
    try:
        result = inbox.call_user(fn, payload, _NO_KWARGS)
    except BaseException as exc:  # as in Actors._execute: the caller gets it
        busy.end()
        actors.failed(cell, _request(peer, entry, ()), exc)  # type: ignore[arg-type]
    else:
        busy.end()
        if cell.stop_after is not False or AWAITABLE.get(type(result), True):  # type: ignore[union-attr]
            actors.returned(cell, _request(peer, entry, ()), result)  # type: ignore[arg-type]
        elif not actors.replies.lone(peer, msg_id, result):
            _queue_reply(actors, peer, entry, result)  # type: ignore[arg-type]
    actors.count()


def run_lone(actors: Actors, peer: bytes | None, entry: RawEntry) -> None:
    """A message of one call or tell with no buffers, well-formed, nothing stashed,
    or (``peer`` None) a call of this worker's own, due: run without a Batch (a
    lone entry starts at once, so no cancel can find it waiting), and its plain
    reply sent from here (``Replies.lone``)."""
    _, _, actor_id, method, payload, nbufs = entry
    cell = actors.cells.get(actor_id)
    fn = None if cell is None or cell.busy or cell.queue else cell.methods.get(method)
    raw = type(payload)  # raw arguments (see wire.dumps_call): args, or [args, kwargs]
    if fn is None or nbufs or (raw is not tuple and raw is not list) or actors.inbox.recycling:
        _slow(actors, peer, entry, (), 0)
    else:
        _call(actors, cell, fn, peer, entry, True)  # type: ignore[arg-type]  # fn: a cell


def _run(
    actors: Actors, peer: bytes | None, entries: Sequence[RawEntry], buffers: Sequence[Buffer],
    batch: Batch,
) -> None:  # fmt: skip
    cells, inbox = actors.cells, actors.inbox
    offset = 0
    for i, entry in enumerate(entries):
        kind, msg_id, actor_id, method, payload, nbufs = entry
        batch.next = i + 1
        if batch.cancelled and msg_id in batch.cancelled and kind == _CALL:
            offset += nbufs  # its verdict went out as CANCELLED: it never runs
            continue
        cell = cells.get(actor_id)
        fn = None if cell is None or cell.busy or cell.queue else cell.methods.get(method)
        raw = type(payload)
        if fn is None or nbufs or (raw is not tuple and raw is not list) or inbox.recycling:
            offset = _slow(actors, peer, entry, buffers, offset)
        else:
            _call(actors, cell, fn, peer, entry, False)  # type: ignore[arg-type]


def _call(
    actors: Actors, cell: Cell, fn: Callable[..., Any], peer: bytes | None, entry: RawEntry,
    lone: bool,
) -> None:  # fmt: skip
    """Run an idle actor's known method on raw arguments; its reply goes at once if
    ``lone`` and plain, else to the outbox, unnamed."""
    kind, msg_id, actor_id, method, payload, _ = entry
    busy, replies = actors.busy, actors.replies
    busy.start(method, actor_id)
    try:
        if type(payload) is tuple:
            result = actors.inbox.call_user(fn, payload, _NO_KWARGS)
        else:
            args, kwargs = payload
            result = actors.inbox.call_user(fn, args, kwargs)
    except BaseException as exc:  # as in Actors._execute: the caller gets it
        busy.end()
        actors.failed(cell, _request(peer, entry, ()), exc)
    else:
        busy.end()
        # a result of a type never seen, or awaitable, or a stop: the usual way
        if cell.stop_after is not False or AWAITABLE.get(type(result), True):
            actors.returned(cell, _request(peer, entry, ()), result)
        elif kind == _CALL and not (lone and replies.lone(peer, msg_id, result)):
            _queue_reply(actors, peer, entry, result)  # else a lone plain reply went now
    actors.count()


def _queue_reply(actors: Actors, peer: bytes | None, entry: RawEntry, result: Any) -> None:
    """A reply to the outbox, unnamed; named by its call if it does not pickle."""
    if actors.replies.ok(peer, entry[1], result) is not None:
        actors.replies.reply(_request(peer, entry, ()), result)  # the error names the call


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
