"""The sending side of a process: calls become batched frames, replies become results.

Both the driver and each worker own one :class:`Transport`. A call picks the
worker slot from its ref, gets a message id, and waits in that slot's outbox
until the process's I/O owner flushes it as one ``BATCH`` message on a DEALER
connected to the worker's mailbox. Replies come back on the same DEALER, in
batches, and complete the pending futures. Subclasses decide who does the I/O
(a waiting thread or a background thread in the driver; the event loop in a
worker) by implementing ``_kick`` and ``_waiter``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

import zmq

from actors._errors import (
    ActorCrashedError,
    ActorStoppedError,
    MailboxFullError,
    SerializationError,
)
from actors._future import ActorFuture
from actors._ref import ActorRef
from runtime import _protocol as proto
from runtime import _sockets

__all__ = ["BARRIER_ACTOR", "Transport", "TransportOptions"]

log = logging.getLogger("dovecote")

MAX_BATCH = 1024  # entries in one message: bounds latency and the size of a frame
BARRIER_ACTOR = 0  # no actor has this id: a call to it is answered by the worker itself


class TransportOptions:
    """Limits for outgoing traffic. Internal."""

    __slots__ = ("outbox_limit", "send_timeout")

    def __init__(self, outbox_limit: int = 20_000, send_timeout: float = 30.0) -> None:
        self.outbox_limit = outbox_limit
        self.send_timeout = send_timeout


class _Outbox:
    """Entries waiting for one slot, with their out-of-band buffers. Internal."""

    __slots__ = ("buffers", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []
        self.buffers: list[Any] = []

    def take(self) -> tuple[list[tuple[Any, ...]], list[Any]]:
        """Up to MAX_BATCH entries and exactly their buffers."""
        if len(self.entries) <= MAX_BATCH:
            entries, buffers = self.entries, self.buffers
            self.entries, self.buffers = [], []
            return entries, buffers
        entries = self.entries[:MAX_BATCH]
        del self.entries[:MAX_BATCH]
        nbufs = sum(e[5] for e in entries)
        buffers = self.buffers[:nbufs]
        del self.buffers[:nbufs]
        return entries, buffers

    def put_back(self, entries: list[tuple[Any, ...]], buffers: list[Any]) -> None:
        self.entries[:0] = entries
        self.buffers[:0] = buffers

    def remove(self, msg_id: int) -> bool:
        """Withdraw the call ``msg_id`` if it has not been sent."""
        offset = 0
        for index, entry in enumerate(self.entries):
            if entry[1] == msg_id and entry[0] == proto.CALL:
                del self.buffers[offset : offset + entry[5]]
                del self.entries[index]
                return True
            offset += entry[5]
        return False


class Transport:
    """Outgoing calls of one process and the futures waiting on their replies."""

    def __init__(
        self, ctx: zmq.Context, system_id: str, run_dir: str, options: TransportOptions
    ) -> None:
        self.ctx = ctx
        self.system_id = system_id
        self.run_dir = run_dir
        self.options = options
        self._lock: threading.Lock | threading.Condition = threading.Lock()
        self._ids = itertools.count(1)
        self._futures_condition = threading.Condition()
        # msg id -> (future, slot), or (future, slot, entry, buffers, retries left)
        # for a method marked @retryable: re-sent if its worker dies.
        self._pending: dict[int, tuple[Any, ...]] = {}
        self._watches: dict[int, tuple[ActorRef, Callable[[ActorRef, str], None]]] = {}
        self._outboxes: dict[int, _Outbox] = {}
        self.epochs: dict[int, int] = {}  # slot -> incarnation of its worker, as last told
        self._dealers: dict[int, zmq.Socket] = {}
        self._control_pending: dict[int, tuple[ActorFuture[Any], Callable[[Any], Any]]] = {}
        self._control_out: list[list[Any]] = []
        self.closed: str | None = None
        self._canceller = self.cancel_call  # bound once: every call's future holds it

    # -- the Engine protocol, used by refs --------------------------------
    def call(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        what: object = None,
    ) -> ActorFuture[Any]:
        """``what`` labels the call in errors; by default ``(ref, method)``."""
        what = what or (ref, method)
        blob, bufs = proto.dumps_call(what, args, kwargs)
        future: ActorFuture[Any] = ActorFuture(
            what, self._waiter, self._futures_condition, self._canceller
        )
        msg_id = future.call_id = next(self._ids)
        entry = (proto.CALL, msg_id, ref.actor_id, method, blob, len(bufs))
        pending: tuple[Any, ...] = (msg_id, future)
        for name, retries in ref.retry:  # a tuple of a few pairs: no dict per call
            if name == method:
                pending = (msg_id, future, entry, bufs, retries)
                break
        self._submit(ref.slot, entry, bufs, pending)
        return future

    def tell(
        self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        blob, bufs = proto.dumps_call((ref, method), args, kwargs)
        self._submit(ref.slot, (proto.TELL, 0, ref.actor_id, method, blob, len(bufs)), bufs, None)

    # -- cancellation ---------------------------------------------------------
    def cancel_call(self, future: ActorFuture[Any]) -> bool:
        """``future.cancel()`` of a pending call: True if it will not run.

        A call still in its outbox is withdrawn here. Once sent, only its worker
        knows whether it started: see ``_cancel_sent``."""
        withdrawn, slot = self._withdraw(future)
        if withdrawn:
            self._wake_waiters()
            return True
        if slot is None:
            return future.cancelled()  # its outcome is being set right now
        return self._cancel_sent(future, slot)

    def abandon(self, futures: list[ActorFuture[Any]]) -> None:
        """Nobody wants these any more: withdraw or cancel each, without waiting."""
        for future in futures:
            if not future.decided():
                withdrawn, slot = self._withdraw(future)
                if not withdrawn and slot is not None:
                    self._send_cancel(slot, future.call_id)

    def _withdraw(self, future: ActorFuture[Any]) -> tuple[bool, int | None]:
        """Take a call out of its outbox if it is still there, and mark it cancelled.
        Returns whether it was, and the slot it is for (None: no longer pending)."""
        with self._lock:
            pending = self._pending.get(future.call_id)
            if pending is None:
                return False, None
            outbox = self._outboxes.get(pending[1])
            if outbox is None or not outbox.remove(future.call_id):
                return False, pending[1]
            del self._pending[future.call_id]
        future.mark_cancelled()
        return True, pending[1]

    def _cancel_sent(self, future: ActorFuture[Any], slot: int) -> bool:
        """A sent call: where waiting is impossible, it may run; say so."""
        return False

    def _send_cancel(self, slot: int, msg_id: int) -> None:
        """Ask the worker to drop a call it has not started: behind the call on the
        same connection, so the worker has it by the time it reads this."""
        with self._lock:
            outbox = self._outboxes.setdefault(slot, _Outbox())
            outbox.entries.append((proto.CANCEL, msg_id, 0, "", b"", 0))
            self._kick()

    def _on_verdict(self, kind: int, msg_id: int) -> None:
        """The worker's answer to a cancel: dropped before it started, or started."""
        with self._lock:
            pending = self._pending.get(msg_id)
            if pending is not None and kind == proto.CANCELLED:
                del self._pending[msg_id]
        if pending is None:
            return  # its reply came first: the call had run
        if kind == proto.CANCELLED:
            pending[0].mark_cancelled(late=True)
        else:
            pending[0].mark_running()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """A future changed state without a reply: let the thread waiting on it see."""
        with self._lock:
            self._kick()

    # -- hooks for subclasses ----------------------------------------------
    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        raise NotImplementedError

    def publish(self, topic: str, obj: Any) -> None:
        raise NotImplementedError

    def subscribe_actor(
        self, prefix: str, on_event: Callable[[str, Any], None]
    ) -> ActorFuture[None]:
        raise NotImplementedError(f"subscribe({prefix!r}) from here: use the ActorSystem's")

    def wait_any(self, futures: list[ActorFuture[Any]], timeout: float | None) -> None:
        """Return once one of ``futures`` completes (or the timeout passes)."""
        raise NotImplementedError

    def _kick(self) -> None:
        """Make sure the I/O owner flushes soon. Called with ``_lock`` held."""
        raise NotImplementedError

    def _wait_for_room(self, outbox: _Outbox) -> None:
        """Block until ``outbox`` has room, or raise MailboxFullError."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------
    def _submit(
        self,
        slot: int,
        entry: tuple[Any, ...],
        bufs: list[Any],
        pending: tuple[Any, ...] | None,
    ) -> None:
        outbox = self._outboxes.get(slot)
        if outbox is not None and len(outbox.entries) >= self.options.outbox_limit:
            self._wait_for_room(outbox)
        with self._lock:
            self._check_open()
            if outbox is None:
                outbox = self._outboxes.setdefault(slot, _Outbox())
            if pending is not None:
                self._pending[pending[0]] = (pending[1], slot, *pending[2:])
            outbox.entries.append(entry)
            outbox.buffers.extend(bufs)
            self._kick()

    def _check_open(self) -> None:
        if self.closed is not None:
            raise ActorStoppedError(self.closed)

    def _full_error(self) -> MailboxFullError:
        return MailboxFullError(
            f"a worker did not accept messages for {self.options.send_timeout} s "
            f"({self.options.outbox_limit} waiting to be sent): the actor is not keeping up"
        )

    def _dealer(self, slot: int) -> zmq.Socket:
        sock = self._dealers.get(slot)
        if sock is None:
            sock = self._dealers[slot] = _sockets.dealer(
                self.ctx, _sockets.worker_endpoint(self.run_dir, slot)
            )
            self._on_new_dealer(slot, sock)
        return sock

    def _on_new_dealer(self, slot: int, sock: zmq.Socket) -> None:
        """Register a new DEALER with the I/O loop."""

    def _on_dealer_closed(self, sock: zmq.Socket) -> None:
        """Unregister a DEALER from the I/O loop."""

    def _reset_dealer(self, slot: int) -> None:
        """After a worker's death, talk to its successor on a new connection: a
        message sent on the old one just after the death would be lost with it."""
        sock = self._dealers.pop(slot, None)
        if sock is not None:
            self._on_dealer_closed(sock)
            sock.close(linger=0)

    def _flush_slot(self, slot: int) -> bool:
        """Send what the outbox of ``slot`` holds; False if the peer is full."""
        with self._lock:
            outbox = self._outboxes.get(slot)
            if outbox is None or not outbox.entries:
                return True
            entries, buffers = outbox.take()
        sock = self._dealer(slot)
        while entries:
            try:
                frames = proto.encode_batch(entries, buffers, self.epochs.get(slot, 0))
                _sockets.send(sock, frames, _sockets.DONTWAIT)
            except zmq.Again:
                with self._lock:
                    outbox.put_back(entries, buffers)
                return False
            if not outbox.entries:
                return True
            with self._lock:
                entries, buffers = outbox.take()
        return True

    def _control_socket(self) -> zmq.Socket:
        raise NotImplementedError

    def _flush_all(self) -> bool:
        """Flush every outbox, then control messages; False if some peer is full."""
        ok = True
        for slot, outbox in list(self._outboxes.items()):
            if outbox.entries:
                ok = self._flush_slot(slot) and ok
        while self._control_out:
            try:
                _sockets.send(self._control_socket(), self._control_out[0], _sockets.DONTWAIT)
            except zmq.Again:
                return False
            with self._lock:
                del self._control_out[0]
        return ok

    def _has_outgoing(self) -> bool:
        return bool(self._control_out) or any(o.entries for o in self._outboxes.values())

    def _on_data(self, frames: list[Any]) -> None:
        """A BATCH of replies from a worker."""
        try:
            kind, body, buffers, _ = proto.unpack(frames)
            entries = proto.decode_body(body) if kind == proto.BATCH else None
        except proto.ProtocolError as exc:
            log.warning("dropped a malformed reply: %s", exc)
            return
        if entries is None:
            log.warning("dropped a reply of kind %d", kind)
            return
        pending = self._pending
        if len(entries) == 1:  # the common case of a lone call: no lists, no zip
            kind, msg_id, _, _, blob, _ = entries[0]
            self._resolve(kind, msg_id, blob, buffers)
            return
        with self._lock:
            futures = [pending.pop(e[1], None) if e[0] <= proto.ERR else None for e in entries]
        offset = 0
        for entry, waiting in zip(entries, futures, strict=True):
            nbufs = entry[5]
            if waiting is not None:
                self._complete(waiting[0], entry[0], entry[4], buffers[offset : offset + nbufs])
            elif entry[0] > proto.ERR:
                self._on_verdict(entry[0], entry[1])
            offset += nbufs

    def _resolve(self, kind: int, msg_id: int, blob: Any, bufs: Any) -> None:
        if kind > proto.ERR:
            self._on_verdict(kind, msg_id)
            return
        with self._lock:
            pending = self._pending.pop(msg_id, None)
        if pending is not None:  # None: already failed by a crash notice
            self._complete(pending[0], kind, blob, bufs)

    def _complete(self, future: ActorFuture[Any], kind: int, blob: Any, bufs: Any) -> None:
        if kind == proto.OK:
            try:
                value = proto.loads(blob, bufs)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit from unpickling stays out of result()
                err = SerializationError(f"{future.label}: reply does not unpickle: {exc!r}")
                _set(future, exc=err)
                return
            _set(future, value=value)
        else:
            _set(future, exc=proto.decode_error(blob, bufs))

    def fail_slot(self, slot: int, cause: str, epoch: int) -> None:
        """The worker in ``slot`` died. Calls sent to it fail, or are re-sent to the
        restarted actor if their method is retryable and has retries left; calls
        not sent yet stay queued for the new worker. ``epoch`` is the new
        worker's: calls sent to the dead one are dropped if they reach it."""
        self._reset_dealer(slot)
        with self._lock:
            self.epochs[slot] = epoch
            outbox = self._outboxes.get(slot)
            unsent = {e[1] for e in outbox.entries if e[0] == proto.CALL} if outbox else set()
            sent = sorted(m for m, p in self._pending.items() if p[1] == slot and m not in unsent)
            failed, entries, buffers = [], [], []
            for msg_id in sent:
                future, _, *retry = self._pending.pop(msg_id)
                if retry and retry[2] > 0:
                    entry, bufs, left = retry
                    self._pending[msg_id] = (future, slot, entry, bufs, left - 1)
                    entries.append(entry)
                    buffers.extend(bufs)
                else:
                    failed.append(future)
            if entries:  # ahead of what was queued after them: FIFO holds
                self._outboxes.setdefault(slot, _Outbox()).put_back(entries, buffers)
                self._kick()
        log.debug(
            "worker %d is now epoch %d: %d calls failed, %d re-sent",
            slot,
            epoch,
            len(failed),
            len(entries),
        )
        for future in failed:
            msg = f"{future.label}: its worker died ({cause})"
            _set(future, exc=ActorCrashedError(msg, cause))

    def add_watch(self, ref: ActorRef, on_down: Callable[[ActorRef, str], None]) -> int:
        watch_id = next(self._ids)
        with self._lock:
            self._watches[watch_id] = (ref, on_down)
            self._kick()  # the driver's background thread now also looks for notices
        return watch_id

    def on_down(self, watch_id: int, actor_id: int, reason: str, final: bool) -> None:
        """A notice from the supervisor: a watched actor crashed or ended."""
        with self._lock:
            watch = self._watches.pop(watch_id, None) if final else self._watches.get(watch_id)
        if watch is None:
            return
        ref, on_down = watch
        try:
            on_down(ref, reason)
        except Exception:
            log.exception("the watch callback for %r raised", ref)

    def fail_all(self, reason: str, crashed: bool) -> None:
        """The system is gone: fail everything still pending."""
        with self._lock:
            self.closed = reason
            dead = [p[0] for p in self._pending.values()]
            dead += [f for f, _ in self._control_pending.values()]
            self._pending.clear()
            self._control_pending.clear()
            for outbox in self._outboxes.values():
                outbox.entries.clear()
                outbox.buffers.clear()
        for future in dead:
            err = (
                ActorCrashedError(f"{future.label}: {reason}", reason)
                if crashed
                else (ActorStoppedError(f"{future.label}: {reason}"))
            )
            _set(future, exc=err)

    def barrier(self) -> list[ActorFuture[Any]]:
        """One future per worker this process has sent to; each completes once the
        worker has taken in everything sent to it before."""
        futures = []
        for slot in list(self._outboxes):
            future: ActorFuture[Any] = ActorFuture(f"barrier on worker {slot}", self._waiter)
            msg_id = next(self._ids)
            entry = (proto.CALL, msg_id, BARRIER_ACTOR, "barrier", proto.dumps(((), {}))[0], 0)
            self._submit(slot, entry, [], (msg_id, future))
            futures.append(future)
        return futures

    # -- requests to the supervisor -----------------------------------------
    def request(
        self, label: str, decode: Callable[[Any], Any], op: str, *fields: Any
    ) -> ActorFuture[Any]:
        """Send ``(op, req_id, *fields)`` to the supervisor; its reply completes the future."""
        future: ActorFuture[Any] = ActorFuture(label, self._waiter)
        req_id = next(self._ids)
        with self._lock:
            self._check_open()
            self._control_pending[req_id] = (future, decode)
            self._control_out.append(proto.encode_control(op, req_id, *fields))
            self._kick()
        return future

    def notify(self, op: str, *fields: Any) -> None:
        """Send a control message that expects no reply."""
        with self._lock:
            self._control_out.append(proto.encode_control(op, *fields))
            self._kick()

    def _on_control_reply(self, req_id: int, ok: bool, payload: Any) -> None:
        with self._lock:
            pending = self._control_pending.pop(req_id, None)
        if pending is None:
            return
        future, decode = pending
        if not ok:
            _set(future, exc=proto.decode_error(payload))
            return
        try:
            _set(future, value=decode(payload))
        except Exception as exc:
            _set(future, exc=exc)

    def dispatch_control(self, frames: list[Any], handlers: dict[str, Callable[..., None]]) -> None:
        """Decode a control message and run its handler; log what goes wrong."""
        try:
            kind, body, buffers, _ = proto.unpack(frames)
            if kind != proto.CONTROL:
                raise proto.ProtocolError(f"kind {kind} on a control socket")
            op, fields = proto.decode_control(body, buffers)
            handler = handlers.get(op)
            if handler is None:
                raise proto.ProtocolError(f"{op!r} is not for this process")
        except proto.ProtocolError as exc:
            log.warning("dropped a malformed control message: %s", exc)
            return
        try:
            handler(*fields)
        except KeyboardInterrupt:
            raise
        except BaseException:  # SystemExit from an actor's hook, say: the process goes on
            log.exception("control message %r failed", op)

    def close_sockets(self) -> None:
        for sock in self._dealers.values():
            sock.close(linger=0)
        self._dealers.clear()


def _set(future: ActorFuture[Any], value: Any = None, exc: BaseException | None = None) -> None:
    """Complete a future unless a cancel got there first."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass  # cancelled by its caller: nobody wants the outcome
