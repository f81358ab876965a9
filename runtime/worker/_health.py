"""A worker's health thread: heartbeats, the memory limit, and hang diagnosis.

The heartbeats come from Python code on purpose: libzmq answers its own pings
without the GIL, so only a Python thread that gets to run proves the
interpreter is alive. A method that runs long Python code still lets this
thread run (the GIL changes hands every few milliseconds), so it is not taken
for a hang; a process frozen by SIGSTOP, or stuck in C code holding the GIL,
sends nothing, and the supervisor replaces it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

import psutil
import zmq

from runtime import net, wire
from runtime.core import Cell
from runtime.net import Context

__all__ = ["ASYNC_ACTOR", "Busy", "Counters", "HealthThread", "log_async_hangs"]

log = logging.getLogger("dovecote")

STACK_AFTER = 1.0  # seconds a method runs before heartbeats carry the loop's stack
STACK_LIMIT = 40  # frames of it, the innermost
# The actor whose async method an asyncio task runs: each task has its own value.
ASYNC_ACTOR: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "dovecote_actor", default=None
)
Counters = Callable[[], tuple[int, int, int, list[list[int]]]]  # handled, tasks, queued, queues


class Busy:
    """What the worker's loop thread is running now. Written by it, read by the
    health thread: plain attribute stores are atomic under the GIL. Internal."""

    __slots__ = ("actor_id", "reported", "since", "what")

    def __init__(self) -> None:
        self.what: str | None = None  # the method name
        self.actor_id = 0
        self.since = 0.0
        self.reported = False

    def start(self, what: str, actor_id: int) -> None:
        self.since = time.monotonic()
        self.what = what
        self.actor_id = actor_id
        self.reported = False

    def end(self) -> None:
        self.what = None

    def current_actor(self) -> int | None:
        """The actor whose code runs now: a sync method on the loop, else the
        async method of the running task, else None (the worker itself)."""
        if self.what is not None:
            return self.actor_id
        return ASYNC_ACTOR.get()


class HealthThread(threading.Thread):
    def __init__(
        self,
        ctx: Context,
        addresses: wire.Addresses,
        name: str,
        slot: int,
        interval: float,
        busy: Busy,
        hang_threshold: float,
        max_memory: int | None,
        on_memory_limit: Callable[[str], object],
        counters: Counters = lambda: (0, 0, 0, []),
    ) -> None:
        super().__init__(name="dovecote-health", daemon=True)
        self.slot = slot
        self.interval = interval
        self.busy = busy
        self.hang_threshold = hang_threshold
        self.max_memory = max_memory
        self.on_memory_limit = on_memory_limit
        self.counters = counters
        self.loop_thread = threading.get_ident()
        self.stopping = threading.Event()
        self.sock = net.dealer(ctx, addresses.control, b"h" + name.encode(), 100)
        self.process = psutil.Process()
        self.limit_reported = False

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                self.beat()
        finally:
            self.sock.close(linger=0)

    def beat(self) -> None:
        # If the supervisor is not reading, it is its own problem to notice.
        with contextlib.suppress(zmq.Again):
            beat = wire.Heartbeat(self.slot, self.stats())
            net.send(self.sock, wire.encode_control(beat), net.DONTWAIT)
        self.check_memory()
        self.check_hang()

    def stats(self) -> wire.WorkerStats:
        """The numbers of this worker now: what runs, for how long, its counters."""
        busy = self.busy
        what, since, actor_id = busy.what, busy.since, busy.actor_id
        busy_for = time.monotonic() - since if what is not None else 0.0
        long = what is not None and busy_for >= STACK_AFTER
        stack = self.loop_stack(STACK_LIMIT) if long else None
        handled, tasks, queued, queues = self.counters()
        try:
            rss, cpu = self.process.memory_info().rss, self.process.cpu_percent(None)
        except psutil.Error:
            rss, cpu = 0, 0.0
        return wire.WorkerStats(
            handled, tasks, queued, what, actor_id if what else 0, busy_for, rss, cpu, stack, queues
        )

    def loop_stack(self, limit: int | None = None) -> str:
        frame = sys._current_frames().get(self.loop_thread)
        if frame is None:
            return "(no stack)"
        return "".join(traceback.format_stack(frame, limit))

    def check_memory(self) -> None:
        if self.max_memory is None or self.limit_reported:
            return
        rss = self.process.memory_info().rss
        if rss > self.max_memory:
            self.limit_reported = True
            self.on_memory_limit(
                f"memory limit: resident {rss} bytes > max_memory {self.max_memory}"
            )

    def check_hang(self) -> None:
        busy = self.busy
        what, since = busy.what, busy.since
        if what is None or busy.reported or time.monotonic() - since < self.hang_threshold:
            return
        busy.reported = True
        stack = self.loop_stack()
        log.warning(
            "worker %d: %s() of actor #%d has run for %.1f s (hang_threshold %.1f s); "
            "its stack:\n%s",
            self.slot,
            what,
            busy.actor_id,
            time.monotonic() - since,
            self.hang_threshold,
            stack,
        )

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def log_async_hangs(cells: Iterable[Cell], threshold: float, slot: int) -> None:
    """Log the stack of an async method that has held its actor too long, once."""
    now = time.monotonic()
    for cell in cells:
        if not cell.tasks:
            continue
        for task, since in list(cell.tasks.items()):  # those of a concurrent actor: each
            if not since or now - since < threshold:
                continue
            cell.tasks[task] = 0.0  # once per message
            stack = io.StringIO()
            task.print_stack(limit=20, file=stack)  # where the coroutine waits now
            log.warning(
                "worker %d: an async method of %r has run for %.1f s; at:\n%s",
                slot,
                cell.actor and cell.actor.ref,
                now - since,
                stack.getvalue(),
            )
