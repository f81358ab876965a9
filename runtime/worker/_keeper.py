"""The keeper thread: it answers for a worker while an actor's code holds the loop."""

from __future__ import annotations

import logging
import threading
import time

from runtime.worker._health import Busy
from runtime.worker._inbox import Inbox

__all__ = ["Keeper"]

log = logging.getLogger("dovecote")

KEEP_AFTER = 0.002  # seconds an actor's code runs before the keeper answers for the worker
KEEPER_LOOKS = 0.02  # seconds between the keeper's looks for such code while none runs
KEEPER_WAITS_AT_MOST = 0.05  # seconds between its turns while the same code runs on
KEEPER_NAPS_AFTER = 0.1  # seconds without seeing actor code before it sleeps until woken


class Keeper(threading.Thread):
    """Answers for the worker while an actor's or a task's code holds the loop
    thread. Internal.

    Once that code has run for KEEP_AFTER (seen on two looks), the keeper takes
    the I/O lock (free only then: see ``Inbox.call_user``), sends the replies that
    are ready and reads the mailbox: cancels are answered at once, calls are
    stashed for the loop in arrival order. It looks every KEEPER_LOOKS while no
    code runs, and naps when none has run for a while, so that calls of
    microseconds pay for no thread wake-ups. So a long call delays no other
    call's reply by more than tens of milliseconds, and a caller soon learns
    whether its cancel came in time.
    """

    def __init__(self, inbox: Inbox, busy: Busy) -> None:
        super().__init__(name="dovecote-keeper", daemon=True)
        self.inbox = inbox
        self.busy = busy
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.asleep = False

    def run(self) -> None:
        busy = self.busy
        seen = time.monotonic()  # when actor code was last seen running
        suspect = 0.0  # the start of the call seen running long on the last look
        while not self.stopping.is_set():
            now = time.monotonic()
            if busy.what is None:
                if now - seen > KEEPER_NAPS_AFTER:
                    self.nap()
                    seen = time.monotonic()
                    continue
                wait = KEEPER_LOOKS  # short calls come and go unseen: nothing to do
            else:
                since = busy.since
                seen, running = now, now - since
                # Long on two looks: a loop thread that was only descheduled for a
                # moment, amid a burst of short calls, has moved on by the second.
                if running >= KEEP_AFTER and since == suspect:
                    self.keep()
                elif running >= KEEP_AFTER:
                    suspect, running = since, 0.0  # look again soon
                # soon after a call starts, then less often as it goes on
                wait = max(KEEP_AFTER - running, min(running / 2, KEEPER_WAITS_AT_MOST))
            self.stopping.wait(wait)

    def keep(self) -> None:
        inbox = self.inbox
        if inbox.io_lock.acquire(blocking=False):  # free only while actor code runs
            try:
                inbox.keep()
            except Exception:
                log.exception("worker %d: the keeper failed", inbox.slot)
            finally:
                inbox.io_lock.release()

    def nap(self) -> None:
        """Sleep until actor code runs again (``Inbox.call_user`` wakes it)."""
        self.wake.clear()
        self.asleep = True
        if self.busy.what is None:  # checked after the flag: no lost wake-up
            self.wake.wait()
        self.asleep = False

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=5)
