"""The sending side's state, sans-IO: calls waiting to be sent, per worker slot,
batched; calls sent and waiting for their replies; and the retry plan when a
worker dies. The transport holds its lock around every use and does the I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from runtime.wire import CALL, Buffer, RawEntry

__all__ = ["MAX_BATCH", "Calls", "Outbox", "Pending"]

MAX_BATCH = 1024  # entries in one message: bounds latency and the size of a frame


class Pending(Protocol):
    """A call waiting for its reply, as ``Calls`` keeps it: its future itself (the
    client's ``Call``), which knows its slot; a retryable one also what it sent and
    how many re-sends it has left: it is sent again if its worker dies."""

    slot: int
    entry: RawEntry | None
    bufs: Sequence[Buffer] | None
    retries: int


class Outbox:
    """Entries waiting for one peer, with their out-of-band buffers."""

    __slots__ = ("buffers", "entries")

    def __init__(self) -> None:
        self.entries: list[RawEntry] = []
        self.buffers: list[Buffer] = []

    def add(self, entry: RawEntry, bufs: Sequence[Buffer]) -> None:
        self.entries.append(entry)
        if bufs:
            self.buffers.extend(bufs)

    def take(self) -> tuple[list[RawEntry], list[Buffer]]:
        """Up to MAX_BATCH entries and exactly their buffers."""
        if len(self.entries) <= MAX_BATCH:
            entries, buffers = self.entries, self.buffers
            self.entries, self.buffers = [], []
            return entries, buffers
        entries = self.entries[:MAX_BATCH]
        del self.entries[:MAX_BATCH]
        if not self.buffers:  # the usual case: no entry has any (lock held: be quick)
            return entries, []
        nbufs = sum(count for *_, count in entries)
        buffers = self.buffers[:nbufs]
        del self.buffers[:nbufs]
        return entries, buffers

    def put_back(self, entries: list[RawEntry], buffers: list[Buffer]) -> None:
        self.entries[:0] = entries
        self.buffers[:0] = buffers

    def remove(self, msg_id: int) -> bool:
        """Withdraw the call ``msg_id`` if it has not been sent."""
        offset = 0
        for index, (kind, entry_id, _, _, _, nbufs) in enumerate(self.entries):
            if entry_id == msg_id and kind == CALL:
                del self.buffers[offset : offset + nbufs]
                del self.entries[index]
                return True
            offset += nbufs
        return False

    def clear(self) -> None:
        self.entries.clear()
        self.buffers.clear()


P = TypeVar("P", bound=Pending)


class Calls(Generic[P]):
    """Every call of one process: queued per slot, or sent and pending."""

    def __init__(self) -> None:
        self.pending: dict[int, P] = {}
        self.outboxes: dict[int, Outbox] = {}
        self.epochs: dict[int, int] = {}  # slot -> incarnation of its worker, as last told

    def outbox(self, slot: int) -> Outbox:
        outbox = self.outboxes.get(slot)
        if outbox is None:
            outbox = self.outboxes[slot] = Outbox()
        return outbox

    def queued(self, slot: int) -> int:
        outbox = self.outboxes.get(slot)
        return 0 if outbox is None else len(outbox.entries)

    def lone(self, msg_id: int) -> int | None:
        """The slot of call ``msg_id`` if it is the only call pending, sent or waiting
        in its outbox alone, and no other outbox holds anything (the direct path of
        the thread that waits for it: no other reply is expected); else None."""
        pending = self.pending.get(msg_id)
        if pending is None or len(self.pending) != 1:
            return None
        slot = pending.slot
        for each, outbox in self.outboxes.items():
            entries = outbox.entries
            if entries and (each != slot or len(entries) != 1 or entries[0][1] != msg_id):
                return None
        return slot

    def has_outgoing(self) -> bool:
        for outbox in self.outboxes.values():  # noqa: SIM110  # a generator is a call more
            if outbox.entries:
                return True
        return False

    def withdraw(self, msg_id: int) -> tuple[bool, int | None]:
        """Take a pending call out of its outbox if it is still there. Returns whether
        it was, and the slot it is for (None: it is no longer pending)."""
        pending = self.pending.get(msg_id)
        if pending is None:
            return False, None
        outbox = self.outboxes.get(pending.slot)
        if outbox is None or not outbox.remove(msg_id):
            return False, pending.slot
        del self.pending[msg_id]
        return True, pending.slot

    def fail_slot(self, slot: int, epoch: int) -> tuple[list[P], int]:
        """The worker in ``slot`` died and ``epoch`` is its successor's. Calls sent to it
        are re-sent if retryable with retries left, ahead of those queued after them
        (FIFO holds); the futures of the others are returned, to be failed. Calls
        not sent yet stay queued for the new worker. Returns (failed, re-sent)."""
        self.epochs[slot] = epoch
        outbox = self.outboxes.get(slot)
        unsent = {m for kind, m, *_ in outbox.entries if kind == CALL} if outbox else set()
        sent = sorted(m for m, p in self.pending.items() if p.slot == slot and m not in unsent)
        failed: list[P] = []
        entries: list[RawEntry] = []
        buffers: list[Buffer] = []
        for msg_id in sent:
            pending = self.pending[msg_id]
            if pending.entry is not None and pending.retries > 0:
                pending.retries -= 1
                entries.append(pending.entry)
                buffers.extend(pending.bufs or ())
            else:
                del self.pending[msg_id]
                failed.append(pending)
        if entries:
            self.outbox(slot).put_back(entries, buffers)
        return failed, len(entries)

    def fail_all(self) -> list[P]:
        """Forget everything; the futures of the pending calls, to be failed."""
        futures = list(self.pending.values())
        self.pending.clear()
        for outbox in self.outboxes.values():
            outbox.clear()
        return futures
