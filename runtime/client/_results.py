"""The replies to a process's calls: each completes its call's future."""

from __future__ import annotations

import logging
import pickle
import threading
from concurrent.futures import InvalidStateError
from typing import Any

from actors._errors import SerializationError
from actors._future import ActorFuture, complete_all
from runtime import net, wire
from runtime.client._call import Call
from runtime.client._cancel import Cancels
from runtime.client._control import settle
from runtime.core import Calls

__all__ = ["Results"]

log = logging.getLogger("dovecote")

_REPLY_HEAD = wire.REPLY_HEAD  # a batch of replies without buffers starts with it
_HEAD = wire.HEADER.size
_loads = pickle.loads


class Results:
    """Replies in, futures completed: the receiving half of a ``Transport``."""

    def __init__(
        self,
        calls: Calls[Call],
        lock: threading.Lock,
        cancels: Cancels,
        condition: threading.Condition,
    ) -> None:
        self.calls = calls
        self._lock = lock
        self.cancels = cancels
        self._futures_condition = condition  # the one the engine's futures share

    def on_data(self, frames: list[Any]) -> None:
        """A BATCH of replies from a worker. The usual one, a lone call's plain value
        in one small frame, is read here as ``plain_body``, ``decode_body`` and
        ``replies_only`` would read it, then resolved: on a blocking ``result()``'s
        path, just after a wake-up, each call costs several times what it does in a
        warm loop (calling them: +0.8% to +1.2% on the ask's p50, quiet and with a
        core busy, the two versions swapped ask by ask in random order)."""
        frame = frames[0] if len(frames) == 1 else None
        if type(frame) is not bytes or not frame.startswith(_REPLY_HEAD):
            self._on_batch(frames)
            return
        try:
            entries = _loads(frame[_HEAD:])
        except BaseException as exc:  # wire.decode_body, inline; even SystemExit
            log.warning("dropped a malformed reply: body does not unpickle: %s", type(exc).__name__)
            return
        entry = entries[0] if type(entries) is list and len(entries) == 1 else None
        if type(entry) is not tuple or len(entry) != 6:
            self._on_entries(entries, ())
            return
        kind, msg_id, _, _, blob, _ = entry
        if type(kind) is int and type(msg_id) is int:  # replies_only, inline
            self.resolve(kind, msg_id, blob, ())
        else:
            self._on_entries(entries, ())

    def _on_batch(self, frames: list[Any]) -> None:
        """Any other BATCH of replies, as it came: with buffers, or not one frame."""
        try:
            kind, body, buffers, _ = wire.unpack(frames)
            buffers = net.attach(buffers)  # views of shared memory, if any came in it
            if kind != wire.BATCH:
                raise wire.ProtocolError(f"a reply of kind {kind}")
            entries = wire.decode_body(body)
        except wire.ProtocolError as exc:
            log.warning("dropped a malformed reply: %s", exc)
            return
        self._on_entries(entries, buffers)

    def _on_entries(self, entries: Any, buffers: Any) -> None:
        """A batch's entries, as unpickled: each completes its call, or is dropped."""
        if not wire.replies_only(entries):
            try:
                entries = _readable(entries, buffers)
            except wire.ProtocolError as exc:
                log.warning("dropped a malformed reply: %s", exc)
                return
        if len(entries) == 1:  # the common case of a lone call: no lists, no zip
            kind, msg_id, _, _, blob, _ = entries[0]
            self.resolve(kind, msg_id, blob, buffers)
            return
        self._resolve_batch(entries, buffers)

    def _resolve_batch(self, entries: list[tuple[Any, ...]], buffers: Any) -> None:
        """The replies of one batch: their futures taken under one lock, not one each
        (the threads that send calls want it too)."""
        pending = self.calls.pending
        with self._lock:
            waiting = [pending.pop(e[1], None) if e[0] <= wire.ERR else None for e in entries]
        offset = 0
        plain: list[tuple[ActorFuture[Any], Any]] = []  # values, set under one lock
        condition = self._futures_condition
        for (kind, msg_id, _, _, blob, nbufs), call in zip(entries, waiting, strict=True):
            if call is None:
                if kind > wire.ERR:
                    self.cancels.on_verdict(kind, msg_id)
            elif kind == wire.OK and type(blob) is tuple and len(blob) == 1:
                plain.append((call, blob[0]))  # a plain value: no buffers
            else:
                complete_all(condition, plain)  # first the earlier ones: in order
                plain = []
                bufs = buffers[offset : offset + nbufs] if nbufs else ()
                self._complete(call, kind, blob, bufs)
            offset += nbufs
        complete_all(condition, plain)

    def resolve(self, kind: int, msg_id: int, blob: Any, bufs: Any) -> None:
        """One reply (or cancel verdict) for the call ``msg_id``."""
        if kind > wire.ERR:
            self.cancels.on_verdict(kind, msg_id)
            return
        with self._lock:
            pending = self.calls.pending.pop(msg_id, None)
        if pending is None:  # already failed by a crash notice
            return
        if kind == wire.OK and type(blob) is tuple and len(blob) == 1:  # a plain value
            try:  # noqa: SIM105  # contextlib.suppress costs three Python calls
                pending.set_result(blob[0])
            except InvalidStateError:  # cancelled: nobody wants it (settle, inline)
                pass
        else:
            self._complete(pending, kind, blob, bufs)

    def _complete(self, future: ActorFuture[Any], kind: int, blob: Any, bufs: Any) -> None:
        if kind == wire.ERR:
            settle(future, exc=wire.decode_error(blob, bufs))
            return
        try:
            value = wire.load_reply(blob, bufs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit from unpickling stays out of result()
            err = SerializationError(f"{future.label}: reply does not unpickle: {exc!r}")
            settle(future, exc=err)
            return
        settle(future, value=value)


def _readable(entries: Any, buffers: Any) -> list[Any]:
    """The entries of a batch of replies that can be read; each other one is logged
    and dropped alone, as a worker drops a malformed call (the whole batch if it
    has buffers: which are whose is then unknown)."""
    if type(entries) is not list:
        raise wire.ProtocolError(f"a batch body of type {type(entries).__name__}")
    good = [entry for entry in entries if wire.replies_only([entry])]
    if buffers and len(good) < len(entries):
        raise wire.ProtocolError("a malformed entry among replies with buffers")
    for _ in range(len(entries) - len(good)):
        log.warning("dropped a malformed reply: an entry that is not a reply")
    return good
