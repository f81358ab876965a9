"""A worker's replies: collected per caller and sent back through the mailbox
ROUTER once per loop turn, so a burst of calls costs one message back. With
ROUTER_MANDATORY an unreachable caller is an error, logged, not a silent drop."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from actors._errors import ActorStoppedError, SerializationError
from actors._future import ActorFuture
from runtime import net, wire
from runtime.core import Outbox
from runtime.net import Socket
from runtime.wire import Request
from runtime.worker._loop import WorkerLoop

__all__ = ["REMOTE", "Replies", "unpickling_error", "what"]

log = logging.getLogger("dovecote")

_SNDMORE_DONTWAIT = int(zmq.SNDMORE) | net.DONTWAIT

REMOTE = b"T"  # the mark of a peer of the tcp mailbox (ROUTER ids start with 0x00)
_REMOTE = REMOTE[0]
_send_part = net.send_part
_PLAIN, _REPLY_HEAD, _OK, _dumps = wire.PLAIN, wire.REPLY_HEAD, wire.OK, pickle.dumps

Resolve = Callable[[int, int, Any, Any], None]


class Replies:
    def __init__(self, loop: WorkerLoop, sock: Socket, slot: int, resolve_local: Resolve) -> None:
        self.loop = loop
        self.sock = sock
        self.remote: Socket | None = None  # in a cluster: the tcp mailbox
        self.slot = slot
        self.resolve_local = resolve_local  # a call from this worker to itself
        # Large buffers for callers on this host (the ipc mailbox's): shared memory,
        # through the worker's pool (set by the worker).
        self.shm = net.Sharing(_near, None)
        self._outboxes: dict[bytes, Outbox] = {}
        self._scheduled = False

    def reply(self, request: Request, value: Any) -> None:
        if request.kind != wire.CALL:
            return
        exc = self.ok(request.peer, request.msg_id, value)
        if exc is not None:  # SystemExit from a __reduce__ goes to the caller too
            self.reply_error(request, _pickling_error(request, exc))

    def ok(self, peer: bytes | None, msg_id: int, value: Any) -> BaseException | None:
        """Queue the reply ``value`` to call ``msg_id``; if it does not pickle, the
        error, and nothing queued."""
        try:
            blob, bufs = wire.dumps_reply(value)
        except BaseException as exc:
            return exc
        self.queue(peer, (wire.OK, msg_id, 0, "", blob, len(bufs)), bufs)
        return None

    def lone(self, peer: bytes | None, msg_id: int, value: Any) -> bool:
        """Send the reply of a lone call at once, from its handler, with no outbox:
        True if it went (or its caller is gone: logged). False, and nothing sent, if
        it is to go the usual way: its value is not plain, other replies wait to go
        first (the order per caller holds), the caller's pipe is full, or the
        caller is this worker (``peer`` None: resolved in place)."""
        kind = type(value)  # plain (as wire.dumps_reply says): pickled with its batch
        if peer is None or self._outboxes or kind not in _PLAIN:
            return False
        if kind is bytes and len(value) >= wire.OUT_OF_BAND_MIN:
            return False
        # encode_batch's frame and _route, inline: as calls, +4% worker CPU per ask
        frame = _REPLY_HEAD + _dumps([(_OK, msg_id, 0, "", (value,), 0)], 5)
        sock, route = self.sock, peer
        if peer[0] == _REMOTE and self.remote is not None:  # _route, inline
            sock, route = self.remote, peer[1:]
        try:  # a full pipe or an unknown caller fails at the first part, sending nothing
            _send_part(sock, route, _SNDMORE_DONTWAIT)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            log.warning("worker %d: 1 reply undeliverable: %s", self.slot, wire.peer_name(peer))
            return True
        _send_part(sock, frame, 0)
        return True

    def reply_error(self, request: Request, exc: BaseException) -> None:
        if request.kind != wire.CALL:
            log.error(
                "worker %d: tell %r to actor #%d failed",
                self.slot,
                request.method,
                request.actor_id,
                exc_info=exc,
            )
            return
        entry = (wire.ERR, request.msg_id, 0, "", wire.encode_error(exc), 0)
        self.queue(request.peer, entry, [])

    def forward(self, request: Request, future: ActorFuture[Any]) -> None:
        """Reply with another call's outcome, and flush soon."""
        if future.cancelled():
            self.reply_error(request, ActorStoppedError(f"{future.label} was cancelled"))
        elif future.exception() is not None:
            self.reply_error(request, future.exception())  # type: ignore[arg-type]
        else:
            self.reply(request, future.result())
        self.schedule()

    def verdict(self, peer: bytes, msg_id: int, dropped: bool) -> None:
        """The answer to a cancel: the call will not run, or it has started."""
        kind = wire.CANCELLED if dropped else wire.STARTED
        self.queue(peer, (kind, msg_id, 0, "", b"", 0), [])

    def queue(self, peer: bytes | None, entry: wire.RawEntry, bufs: Sequence[Any]) -> None:
        if peer is None:  # a call from this worker to itself: no memory shared
            copies = [bytes(memoryview(b)) for b in bufs] if bufs else []
            kind, msg_id, _, _, blob, _ = entry
            self.resolve_local(kind, msg_id, blob, copies)
            return
        outbox = self._outboxes.get(peer)
        if outbox is None:
            outbox = self._outboxes[peer] = Outbox()
        outbox.entries.append(entry)  # Outbox.add, inline: once per reply
        if bufs:
            outbox.buffers.extend(bufs)

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.at_turn_end(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._outboxes:
            return  # nothing sent: no wake-up edge taken
        if not self.send():
            # a caller is not reading yet: keep its replies, try again soon
            self._scheduled = True
            self.loop.call_later(0.001, self.flush)

    def send(self) -> bool:
        """Send every caller its replies; False if one of them is not reading. Loop
        thread, or the keeper while actor code runs."""
        return all([self._send_to(peer) for peer in list(self._outboxes)])

    def _route(self, peer: bytes) -> tuple[Socket, bytes]:
        """The socket a caller's replies go out on, and its routing id there."""
        if peer[:1] == REMOTE and self.remote is not None:
            return self.remote, peer[1:]
        return self.sock, peer

    def _send_to(self, peer: bytes) -> bool:
        outbox = self._outboxes[peer]
        sock, route = self._route(peer)
        while outbox.entries:
            entries, buffers = outbox.take()
            try:
                self.shm.send(sock, [route, *wire.encode_batch(entries, buffers)], peer, 1)
            except zmq.Again:
                outbox.put_back(entries, buffers)
                return False  # the caller is not reading yet: keep the replies
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                count = len(entries) + len(outbox.entries)
                name = wire.peer_name(peer)
                log.warning("worker %d: %d replies undeliverable: %s", self.slot, count, name)
                break
        del self._outboxes[peer]
        return True


def _near(peer: bytes) -> bool:
    """A caller of the ipc mailbox is on this host."""
    return peer[:1] != REMOTE


def what(request: Request) -> str:
    """A request as errors name it."""
    return "the task" if request.actor_id == wire.TASK_ACTOR else f"{request.method}()"


def unpickling_error(request: Request, exc: BaseException) -> SerializationError:
    """A request's arguments do not unpickle (even SystemExit from a __setstate__)."""
    return SerializationError(f"{what(request)}: cannot unpickle its arguments: {exc!r}")


def _pickling_error(request: Request, exc: BaseException) -> BaseException:
    if not isinstance(exc, Exception):
        return exc  # SystemExit raised while pickling: the caller gets it as it is
    return SerializationError(f"{what(request)} returned a value that does not pickle: {exc}")
