"""The sending side every process owns: calls become batched frames, replies
become results, and requests to the supervisor become futures.

One :class:`Transport` serves the driver and each worker alike. It is handed
what differs between them rather than subclassed: ``wake`` (make whoever owns
the sockets flush soon), ``wait`` (block until a condition holds, or return at
once where blocking is not allowed), ``waiter`` (what a future's ``result()``
does first), ``on_socket`` (a DEALER opened or closed, for the owner's poll),
a clock, and optionally ``local`` (calls to the process's own mailbox) and
``direct``: take the sockets, to send a lone call at once, if nothing waits to
be sent before it (an outbox, the control channel: the order holds), and give
them back. It holds no reference to its owner. Its state (outboxes, pending
calls, the retry plan) is ``core.Calls``; this module adds the lock, the sockets
and the codec.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import zmq

from actors._errors import (
    ActorCrashedError,
    ActorStoppedError,
    MailboxFullError,
)
from actors._future import ActorFuture, Waiter
from actors._ref import ActorRef
from runtime import net, wire
from runtime.client._call import Call
from runtime.client._cancel import Cancels, Local
from runtime.client._control import Control, settle
from runtime.client._results import Results
from runtime.core import Calls
from runtime.net import Context, Socket

__all__ = ["Transport", "settle"]

log = logging.getLogger("dovecote")


class Transport:
    """Outgoing calls of one process and the futures waiting on their replies."""

    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        identity: bytes,
        options: tuple[int, float],
        hooks: tuple[Callable[[], None], Callable[[Callable[[], bool], float], None], Waiter],
        on_socket: Callable[[Socket, bool], None],
        lock: threading.Lock,
        clock: Callable[[], float] = time.monotonic,
        local: Local | None = None,
        direct: tuple[Callable[[], object], Callable[[], None]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.addresses = addresses
        self.places: dict[int, wire.Place] = {}  # in a cluster: where each slot lives
        self._placed: list[int] = []  # of those, the slots on a node, sorted
        self.outbox_limit, self.send_timeout = options
        self._wake, self._wait, self._waiter = hooks
        self._on_socket = on_socket
        self._lock = lock
        self._clock = clock
        self._local = local
        self._direct = direct  # (take, release) the sockets, to send a lone call at once
        self._local_slot = -1 if local is None else local.slot  # never sent directly
        self._ids = itertools.count(1)
        self._futures_condition = threading.Condition()
        self.calls: Calls[Call] = Calls()
        self._dealers: dict[int, Socket] = {}
        self.sent: set[Socket] = set()  # sockets sent on, for an owner that must look again
        self.shm = net.Sharing(lambda slot: on_this_host(self, slot), net.Pool.open())
        self.control = Control(ctx, addresses, identity, lock, self._wake, self._waiter, self._ids)
        self.control.handlers[wire.WorkerDied] = self._on_worker_died
        self.control.handlers[wire.Placed] = self.on_placed
        self.control.handlers[wire.Epochs] = lambda message: self.set_epochs(message.epochs)
        self.cancels = Cancels(self.calls, lock, self._wake, self._wait, clock, local)
        results = Results(self.calls, lock, self.cancels, self._futures_condition)
        self.on_data = results.on_data  # a BATCH of replies from a worker
        self.resolve = results.resolve  # one reply, from this process's own worker
        self._canceller = self.cancels.cancel  # bound once: every call's future holds it

    def set_epochs(self, epochs: Iterable[tuple[int, int]]) -> None:
        """The incarnation of each worker, as this process starts: (slot, epoch)."""
        self.calls.epochs.update(epochs)

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
        blob, bufs = wire.dumps_call(what or (ref, method), args, kwargs)
        msg_id = next(self._ids)
        slot = ref.slot
        entry = (wire.CALL, msg_id, ref.actor_id, method, blob, len(bufs))
        direct = self._direct  # a call behind others, or with buffers, is batched
        took = (
            direct is not None
            and not bufs
            and not self.calls.pending
            and slot != self._local_slot
            and bool(direct[0]())
        )
        try:  # a lone call goes before its future is made: sooner, the reply too
            sent = took and self._send(self._reachable(slot), slot, [entry], ())
            call = Call(
                what or ref,
                self._waiter,
                self._futures_condition,
                self._canceller,
                None if what else method,
            )
            call.call_id, call.slot = msg_id, slot
            for name, retries in ref.retry:  # a tuple of a few pairs: no dict per call
                if name == method:
                    call.entry, call.bufs, call.retries = entry, bufs, retries
                    break
            self._submit(slot, entry, bufs, call, sent)
        finally:
            if took:
                direct[1]()  # type: ignore[index]  # took: there is a hook
        return call

    def tell(
        self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        blob, bufs = wire.dumps_call((ref, method), args, kwargs)
        entry = (wire.TELL, 0, ref.actor_id, method, blob, len(bufs))
        self._submit(ref.slot, entry, bufs, None)

    def _submit(
        self,
        slot: int,
        entry: wire.RawEntry,
        bufs: Sequence[Any],
        call: Call | None,
        sent: bool = False,  # the call went out directly: only its reply is awaited
    ) -> None:
        local = self._local
        if local is not None and slot == local.slot:
            self._submit_local(local, entry, bufs, call)
            return
        calls = self.calls
        outbox = calls.outboxes.get(slot)
        if outbox is not None and len(outbox.entries) >= self.outbox_limit and not sent:
            self._wait_for_room(slot)
        with self._lock:
            if self.control.closed is not None:
                self._check_open()
            if call is not None:
                calls.pending[call.call_id] = call
            if outbox is None:
                outbox = calls.outbox(slot)  # made for a call sent directly too: see barrier
            if sent:
                return
            entries = outbox.entries
            entries.append(entry)
            if bufs:
                outbox.buffers.extend(bufs)
            if len(entries) == 1:  # else the wake-up for the first is still to come
                self._wake()

    def _submit_local(
        self, local: Local, entry: wire.RawEntry, bufs: Sequence[Any], call: Call | None
    ) -> None:
        self._check_open()
        if not local.submit(entry, bufs, call):
            settle(call, value=None)  # a self-stop: awaiting it must not deadlock
        elif call is not None:
            call.entry = None  # never re-sent: its worker is this process
            self.calls.pending[call.call_id] = call

    def _wait_for_room(self, slot: int) -> None:
        """Block until the outbox of ``slot`` has room, or raise MailboxFullError."""

        def room() -> bool:
            return self.calls.queued(slot) < self.outbox_limit or self.control.closed is not None

        self._wait(room, self._clock() + self.send_timeout)
        if not room():
            raise MailboxFullError(
                f"a worker did not accept messages for {self.send_timeout} s "
                f"({self.outbox_limit} waiting to be sent): the actor is not keeping up"
            )

    def _check_open(self) -> None:
        closed = self.control.closed  # one state for the process: calls and requests alike
        if closed is not None:
            raise ActorStoppedError(closed)

    # -- sockets, by whoever owns them now -------------------------------------
    def _dealer(self, slot: int) -> Socket:
        sock = self._dealers.get(slot)
        if sock is None:
            endpoint = mailbox(self.places.get(slot), self.addresses, slot)
            sock = self._dealers[slot] = net.dealer(self.ctx, endpoint)
            self._on_socket(sock, True)
        return sock

    def slots(self) -> list[int]:  # a cluster's, placed on a node (one host's: none)
        return self._placed

    def on_placed(self, message: wire.Placed) -> None:
        """Workers started somewhere (the head's replica, kept in order on the control
        channel): a slot that moved is reached on a new connection."""
        for place in message.places:
            old = self.places.get(place.slot)
            self.places[place.slot] = place
            if old is not None and (old.ipc, old.tcp) != (place.ipc, place.tcp):
                self._reset_dealer(place.slot)
        self._placed = sorted(slot for slot, place in self.places.items() if place.ipc)

    def _reset_dealer(self, slot: int) -> None:
        """After a worker's death, talk to its successor on a new connection: a
        message sent on the old one just after the death would be lost with it."""
        sock = self._dealers.pop(slot, None)
        if sock is not None:
            self.sent.discard(sock)  # else the driver, which never reads it, keeps it
            self._on_socket(sock, False)
            sock.close(linger=0)

    def flush(self) -> bool:
        """Send every outbox, then the control messages; False if a peer is full."""
        ok = True
        for slot, outbox in list(self.calls.outboxes.items()):
            if outbox.entries:
                ok = self.flush_slot(slot) is not None and ok
        if self.control.has_outgoing():
            self.sent.add(self.control.sock)
        return self.control.flush() and ok

    def flush_slot(self, slot: int) -> Socket | None:  # its DEALER; None: the worker is full
        outbox = self.calls.outboxes[slot]
        if not outbox.entries:  # a lone call went out directly, on the DEALER it made
            return self._dealers.get(slot) or self._reachable(slot)
        sock = self._reachable(slot)
        while sock is not None:
            with self._lock:
                entries, buffers = outbox.take()
            if not self._send(sock, slot, entries, buffers):
                with self._lock:
                    outbox.put_back(entries, buffers)
                return None
            if not outbox.entries:
                return sock
        return None

    def _reachable(self, slot: int) -> Socket | None:
        """The DEALER to ``slot``, marked sent on; None for a cluster's slot with no
        node to run on (its calls are held until one joins)."""
        place = self.places.get(slot)
        if place is not None and not place.ipc:
            return None
        sock = self._dealers.get(slot) or self._dealer(slot)  # made once, looked up inline
        self.sent.add(sock)
        return sock

    def _send(
        self, sock: Socket | None, slot: int, entries: list[wire.RawEntry], buffers: Sequence[Any]
    ) -> bool:
        """Send a batch; False, nothing sent, if there is no way or the worker is full."""
        if sock is None:
            return False
        try:
            frames = wire.encode_batch(entries, buffers, self.calls.epochs.get(slot, 0))
            if buffers:  # large ones go through shared memory on this host
                self.shm.send(sock, frames, slot)
            else:  # one frame: sent as net.send would, two calls less
                net.send_part(sock, frames[0], net.DONTWAIT)
        except zmq.Again:
            return False
        return True

    def has_outgoing(self) -> bool:
        return self.control.has_outgoing() or self.calls.has_outgoing()

    def has_pending(self) -> bool:
        return bool(self.calls.pending) or self.control.has_pending()

    # -- deaths ---------------------------------------------------------------------
    def _on_worker_died(self, notice: wire.WorkerDied) -> None:
        self.fail_slot(notice.slot, notice.cause, notice.epoch)

    def fail_slot(self, slot: int, cause: str, epoch: int) -> None:
        """The worker in ``slot`` died; ``epoch`` is the new worker's (see ``Calls``)."""
        self._reset_dealer(slot)
        self.shm.lost(slot)  # its segments that it had not let go of
        with self._lock:
            failed, resent = self.calls.fail_slot(slot, epoch)
            if resent:
                self._wake()
        log.debug(
            "worker %d is now epoch %d: %d failed, %d re-sent", slot, epoch, len(failed), resent
        )
        for future in failed:
            msg = f"{future.label}: its worker died ({cause})"
            settle(future, exc=ActorCrashedError(msg, cause))

    def fail_all(self, reason: str, crashed: bool) -> None:
        """The system is gone: fail everything still pending."""
        with self._lock:
            self.control.closed = reason
            dead = self.calls.fail_all() + self.control.forget()
        for future in dead:
            label = f"{future.label}: {reason}"
            err = ActorCrashedError(label, reason) if crashed else ActorStoppedError(label)
            settle(future, exc=err)

    def barrier(self) -> list[ActorFuture[Any]]:
        """One future per worker this process has sent to; each completes once the
        worker has taken in everything sent to it before."""
        futures: list[ActorFuture[Any]] = []
        for slot in list(self.calls.outboxes):
            call = Call(f"barrier on worker {slot}", self._waiter)
            msg_id = call.call_id = next(self._ids)
            call.slot = slot
            entry: wire.RawEntry = (wire.CALL, msg_id, wire.BARRIER_ACTOR, "barrier", (), 0)
            self._submit(slot, entry, [], call)
            futures.append(call)
        return futures

    def close_sockets(self) -> None:
        for sock in self._dealers.values():
            sock.close(linger=0)
        self._dealers.clear()
        self.sent.clear()
        self.control.close()
        self.shm.close()


def on_this_host(transport: Transport, slot: int) -> bool:
    """Is ``slot`` reached over ipc? Its large buffers may go through shared memory."""
    return mailbox(transport.places.get(slot), transport.addresses, slot).startswith("ipc:")


def mailbox(place: wire.Place | None, addresses: wire.Addresses, slot: int) -> str:
    """A slot's mailbox: ipc on this host (or in a one-host system), else tcp."""
    if place is None:
        return net.worker_endpoint(addresses.run_dir, slot)
    if place.tcp is None or place.host == addresses.host:
        return place.ipc
    return place.tcp
