"""The driver's side of output forwarding: one thread that subscribes to
``dovecote.output`` with a socket of its own (the I/O token is never taken, so
forwarding costs the calls nothing) and alone writes the workers' output to
the terminal.

Text lines go to the driver's ``sys.stdout`` or ``sys.stderr`` (looked up at
each write, so a redirect or a test's capture sees them), prefixed with the
writer (``(Counter name=counter w1 pid=4711) text``), repeats folded, the
prefix coloured only on a terminal and without ``NO_COLOR``. Log records are
rebuilt with ``logging.makeLogRecord`` and handled by the driver's loggers,
with ``actor_id``, ``actor_class``, ``actor_name``, ``worker``, ``worker_pid``
and ``dovecote`` (the prefix) added; with no handler configured, those at
WARNING and above are printed like text, as Python's last-resort handler would.
Progress bars are cleared while lines are written, then redrawn.

The supervisor publishes ``end`` once every worker has exited and its pipes
are drained: ``close`` waits for it, so nothing printed before shutdown is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

import zmq

from runtime import net, wire
from runtime.net import Context
from runtime.observe._lines import Folder, Line, colour, prefix
from runtime.observe._pipes import OUTPUT_TOPIC
from runtime.observe._progress import bars_paused

__all__ = ["FOLD_WINDOW", "Printer", "fold_window", "rebuild_record", "use_colour"]

log = logging.getLogger("dovecote")

FOLD_WINDOW = 5.0  # seconds in which a repeated line is counted, not printed (as Ray)
SYNC_EVERY = 0.01  # seconds between handshake messages until the subscription is up


def fold_window() -> float:
    """``$DOVECOTE_FOLD_REPEATS`` seconds (0: print every line), else FOLD_WINDOW."""
    raw = os.environ.get("DOVECOTE_FOLD_REPEATS")
    try:
        return FOLD_WINDOW if raw is None else max(0.0, float(raw))
    except ValueError:
        return FOLD_WINDOW


def use_colour(stream: TextIO) -> bool:
    """Colour on a terminal only, and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def rebuild_record(entry: dict[str, Any]) -> logging.LogRecord:
    """The worker's record, with who wrote it."""
    data = dict(entry["rec"])
    data.pop("dovecote_extra", None)
    tag = entry.get("a")
    actor = tag if isinstance(tag, list) and len(tag) == 3 else [None, None, None]
    data.update(
        actor_id=actor[0],
        actor_class=actor[1],
        actor_name=actor[2],
        worker=entry.get("w"),
        worker_pid=entry.get("pid"),
        dovecote=prefix(entry),
    )
    return logging.makeLogRecord(data)


class Printer:
    """The output thread of one driver. Internal: ``ActorSystem`` starts it."""

    def __init__(self, ctx: Context, addresses: wire.Addresses, name: str, window: float) -> None:
        self.ctx = ctx
        self.addresses = addresses
        self.name = name
        self.folder = Folder(window)
        self.synced = threading.Event()
        self.ended = threading.Event()
        self.failed: BaseException | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="dovecote-output", daemon=True)
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once every line published from now on reaches this printer."""
        return self.synced.wait(timeout)

    def close(self, wait_end: float) -> None:
        """Wait up to ``wait_end`` seconds for the supervisor's last lines, print
        what is pending, and stop the thread."""
        if self.synced.is_set():
            self.ended.wait(wait_end)
        os.write(self._stop_w, b"\0")
        self._thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)

    # -- the thread ---------------------------------------------------------------
    def _run(self) -> None:
        bus = net.Bus(self.ctx, self.addresses, self.name, lambda sock, added: None)
        sub = net.Subscription(
            self.ctx, self.addresses, OUTPUT_TOPIC, self._on_event, _no_wait, bus.remove
        )
        bus.add(sub)
        poller = zmq.Poller()
        poller.register(sub.sock, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        try:
            self._loop(bus, sub, poller)
        except Exception as exc:  # the program goes on; its output is in the log files
            self.failed = exc
            log.exception("dovecote: the output thread failed")
        finally:
            self._print(self.folder.flush())
            bus.close()

    def _loop(self, bus: net.Bus, sub: net.Subscription, poller: zmq.Poller) -> None:
        while True:
            if not sub.synced:
                bus.handshake(time.monotonic())
                timeout: float | None = SYNC_EVERY
            else:
                self.synced.set()
                due = self.folder.next_due()
                timeout = None if due is None else max(0.0, due - time.monotonic())
            ready = dict(poller.poll(None if timeout is None else int(timeout * 1000) + 1))
            if sub.sock in ready:
                with contextlib.suppress(zmq.Again):
                    for _ in range(4096):
                        sub.deliver(sub.sock.recv(zmq.DONTWAIT))
            self._print(self.folder.due(time.monotonic()))
            if self._stop_r in ready:
                return

    def _on_event(self, topic: str, obj: Any) -> None:
        if obj.get("end"):
            self.ended.set()
            return
        now = time.monotonic()
        lines: list[Line] = []
        for entry in obj.get("entries", ()):
            if "rec" in entry:
                self._print(lines)
                lines = []
                self._record(entry)
            else:
                line = Line(entry["s"], entry.get("w"), prefix(entry), entry.get("text", ""))
                lines.extend(self.folder.feed(line, now))
        self._print(lines)

    def _record(self, entry: dict[str, Any]) -> None:
        record = rebuild_record(entry)
        name = record.name
        logger = logging.getLogger(None if name == "root" else name)
        if logger.hasHandlers():
            logger.handle(record)
        elif record.levelno >= logging.WARNING:
            text = record.getMessage()
            if record.exc_text:
                text = f"{text}\n{record.exc_text}"
            lines = text.split("\n")
            who = prefix(entry)
            self._print([Line("err", entry.get("w"), who, t) for t in lines])

    def _print(self, lines: list[Line]) -> None:
        if not lines:
            return
        for stream_name, target in (("out", sys.stdout), ("err", sys.stderr)):
            mine = [line for line in lines if line.stream == stream_name]
            if mine and target is not None:
                _write(target, mine)


def _write(stream: TextIO, lines: list[Line]) -> None:
    coloured = use_colour(stream)
    text = "".join(
        f"{colour(line.prefix, line.slot) if coloured else line.prefix} {line.text}\n"
        for line in lines
    )
    try:
        with bars_paused(stream):
            stream.write(text)
            stream.flush()
    except (OSError, ValueError):  # closed, or a broken pipe: the log files keep it
        pass


def _no_wait(done: object, deadline: object) -> None:
    raise RuntimeError("the output subscription is read by its thread only")
