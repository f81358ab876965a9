"""A worker's inbox: the mailbox ROUTER's reading side, and the I/O lock that lets
the keeper thread answer for the worker while an actor's code runs.

Every message goes through the stash: what the keeper read before a message
goes first, what it reads while that message runs goes after, and a cancel
finds the call it names wherever it waits (the batch being read, the stash, an
actor's queue). A call is cancellable until it starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from runtime import net, wire
from runtime.core import Mailbox
from runtime.net import Socket
from runtime.wire import Request
from runtime.worker._loop import MailboxReader, leave_if_forked
from runtime.worker._replies import REMOTE, Replies

__all__ = ["Inbox"]

log = logging.getLogger("dovecote")

_CANCEL = wire.CANCEL
BUDGET = 64  # messages the keeper takes from the mailbox in one turn


class Napper(Protocol):
    """The keeper thread, as the inbox sees it: woken when actor code runs."""

    asleep: bool
    wake: threading.Event


class Inbox:
    def __init__(
        self,
        sock: Socket,
        where: tuple[int, int],
        mailbox: Mailbox,
        replies: Replies,
    ) -> None:
        self.sock = sock
        self.slot, self.epoch = where
        self.head = wire.batch_head(self.epoch)  # of the usual message (see _batch.run_one)
        self.mailbox = mailbox
        self.replies = replies
        self.deliver: Callable[[Request], None] = lambda request: None  # to the actors
        # A batch with no cancel, nothing stashed: run from its entries (see _batch).
        self.run_batch: Callable[[bytes, list[wire.RawEntry], Sequence[Any]], None] | None = None
        self.keeper: Napper | None = None  # woken when actor code runs, if it naps
        self.reader: MailboxReader | None = None
        self.remote: MailboxReader | None = None  # in a cluster: the tcp mailbox's reader
        self.recycling: str | None = None  # past a limit: read nothing more
        # The loop thread holds the I/O lock (the mailbox socket, the replies, the
        # cells' queues) except while an actor's or a task's code runs.
        self.io_lock = threading.Lock()
        self.kept = False  # the keeper has worked since the loop thread last looked
        self._stash_scheduled = False

    def start(self, reader: MailboxReader) -> None:
        self.reader = reader
        self.io_lock.acquire()

    @property
    def paused(self) -> bool:
        return self.reader is None or self.reader.paused

    def pause(self) -> None:
        for reader in (self.reader, self.remote):
            if reader is not None:
                reader.paused = True  # the senders' pipes fill: backpressure

    def resume(self) -> None:
        """Read the mailbox again once the backlog has halved (not while recycling)."""
        reader = self.reader
        if reader is None or not reader.paused or self.recycling:
            return
        if self.mailbox.may_resume():
            for each in (reader, self.remote):
                if each is not None:
                    each.paused = False

    def on_remote(self, frames: list[Any]) -> None:
        """A batch from the tcp mailbox: its sender is marked, for the reply's way back."""
        frames[0] = REMOTE + bytes(frames[0])
        self.mailbox.stash.extend(self.parse(frames))
        self.deliver_stash()

    # -- reading -------------------------------------------------------------------
    def on_frames(self, frames: list[Any]) -> None:
        """A message from the mailbox, by its reader (one of one part: ``_batch.run_one``)."""
        batch = self.decode(frames)
        if batch is not None:
            self.dispatch(*batch)

    def dispatch(self, peer: bytes, entries: Any, buffers: Sequence[Any]) -> None:
        """A batch's entries, decoded. With nothing stashed before it, a batch of
        well-formed calls and tells runs from its entries (see ``_batch``)."""
        stash = self.mailbox.stash
        if not stash and self.run_batch is not None and wire.calls_only(entries):
            self.run_batch(peer, entries, buffers)
            return
        stash.extend(self.requests(peer, entries, buffers))
        self.deliver_stash()

    def parse(self, frames: list[Any]) -> list[Request]:
        """The calls and tells of one message. Cancels are answered here, at once. A
        malformed message, or entry, is logged and dropped alone. Loop thread or keeper."""
        batch = self.decode(frames)
        return [] if batch is None else self.requests(*batch)

    def decode(self, frames: list[Any]) -> tuple[bytes, Any, Any] | None:
        """A message's sender, entries and buffers; None if it is dropped (logged)."""
        peer = bytes(frames[0])
        try:
            if len(frames) == 2:  # the usual message: one frame, no buffers
                body = wire.plain_body(frames[1], self.epoch)
                if body is not None:
                    return peer, wire.decode_body(body), ()
            kind, body, buffers, epoch = wire.unpack(frames[1:])
            if buffers:  # views of shared memory, from a caller on this host only
                buffers = net.attach(buffers, near=peer[:1] != REMOTE)
            if epoch != self.epoch:
                self._stale(peer, epoch)
                return None
            if kind != wire.BATCH:
                raise wire.ProtocolError(f"kind {kind} is not a batch")
            return peer, wire.decode_body(body), buffers
        except wire.ProtocolError as exc:
            self.malformed(peer, exc)
            return None

    def requests(self, peer: bytes, entries: Any, buffers: Sequence[Any]) -> list[Request]:
        requests, errors, cancels = wire.parse_entries(peer, entries, buffers)
        for error in errors:
            self.malformed(peer, error)
        if cancels:
            return self._cancels(peer, requests)
        return requests

    def _cancels(self, peer: bytes, requests: list[Request]) -> list[Request]:
        """Answer each cancel; it may name a call of its own batch, before it."""
        kept: list[Request] = []
        for request in requests:
            if request.kind == _CANCEL:
                dropped = self.mailbox.withdraw(peer, request.msg_id, kept)
                self.replies.verdict(peer, request.msg_id, dropped)
            else:
                kept.append(request)
        return kept

    def _stale(self, peer: bytes, epoch: int) -> None:
        log.warning(
            "worker %d (epoch %d) dropped a batch sent to its predecessor (epoch %d) "
            "from %s: the asks in it fail at their caller as crashed, tells are lost",
            self.slot,
            self.epoch,
            epoch,
            wire.peer_name(peer),
        )

    def malformed(self, peer: bytes | None, exc: Exception) -> None:
        name = "this worker" if peer is None else wire.peer_name(peer)
        log.warning("worker %d dropped a malformed message from %s: %s", self.slot, name, exc)

    def deliver_stash(self) -> None:
        self._stash_scheduled = False
        stash = self.mailbox.stash
        while stash:
            self.deliver(stash.popleft())

    # -- the keeper's turn -------------------------------------------------------------
    def keep(self) -> None:
        """From the keeper thread, while an actor's code runs and the I/O lock is the
        keeper's: send the replies that are ready, and read what came meanwhile."""
        self.kept = True
        self.replies.send()
        if self.paused or self.recycling or self.sock.closed:
            return
        for _ in range(min(self.mailbox.room(), BUDGET)):
            if not net.readable(self.sock):
                break
            self.mailbox.stash.extend(self.parse(net.recv_routed(self.sock, net.DONTWAIT)))
        self.replies.send()  # cancel verdicts

    def call_user(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run an actor's or a task's code with the I/O lock released: the keeper
        answers for the worker meanwhile (see ``keep``)."""
        keeper = self.keeper
        if keeper is not None and keeper.asleep:
            keeper.asleep = False  # the next calls need not wake it again meanwhile
            keeper.wake.set()
        lock = self.io_lock
        lock.release()
        try:
            return fn(*args, **kwargs) if kwargs else fn(*args)
        finally:
            leave_if_forked()  # before the lock: a forked child may hold no keeper
            lock.acquire()
            if self.kept:
                self._after_user_code()

    def _after_user_code(self) -> None:
        """The keeper worked meanwhile: it may have stashed calls, which go before
        anything read later. The loop delivers them on its next turn."""
        self.kept = False
        if not self._stash_scheduled and self.reader is not None:
            self._stash_scheduled = True
            self.reader.loop.call_soon(self._after_keeper)

    def _after_keeper(self) -> None:
        """Deliver what the keeper read; this is not the mailbox reader's turn, so
        flush the replies here."""
        self.deliver_stash()
        self.replies.flush()
