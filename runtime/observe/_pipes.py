"""The supervisor's side of output forwarding: every worker's stdout and stderr
are pipes it reads line by line, in its own loop (the pipes sit in its poll
beside the control socket). Each batch of entries is appended to the worker
slot's log file in the run directory (``logs/worker-N.jsonl``, JSON lines) and
published on the bus topic ``dovecote.output`` for the driver to print.

A worker's death is seen through its pidfd, perhaps before its last lines are
read: ``remove`` drains what the pipes still hold, so output written before a
SIGKILL is kept. It does not wait for the pipes' end: a child the worker forked
may hold them open.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any

from runtime.observe._lines import StreamSplitter

__all__ = ["OUTPUT_TOPIC", "OutputPipes", "log_dir", "log_file"]

log = logging.getLogger("dovecote")

OUTPUT_TOPIC = "dovecote.output"
READ_SIZE = 65536  # bytes read from one pipe per turn of the loop: control messages go on
DRAIN_LIMIT = 16 * READ_SIZE  # bytes read from a dead worker's pipes, at most

Publish = Callable[[list[dict[str, Any]]], None]
Register = Callable[[int, bool], None]  # (fd, added): the loop's poll


def log_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "logs")


def log_file(run_dir: str, slot: int) -> str:
    return os.path.join(log_dir(run_dir), f"worker-{slot}.jsonl")


class _Pipe:
    __slots__ = ("file", "polled", "slot", "splitter")

    def __init__(self, slot: int, splitter: StreamSplitter, file: IO[bytes]) -> None:
        self.slot = slot
        self.splitter = splitter
        self.file = file
        self.polled = True  # until its end is read


class OutputPipes:
    """The output pipes of every worker, their log files, and what is published."""

    def __init__(self, run_dir: str, register: Register, publish: Publish | None) -> None:
        self.run_dir = run_dir
        os.makedirs(log_dir(run_dir), mode=0o700, exist_ok=True)
        self.register = register
        self.publish = publish
        self.pipes: dict[int, _Pipe] = {}  # fd -> pipe
        self.files: dict[int, IO[bytes]] = {}  # slot -> its log file, opened for append

    @staticmethod
    def popen() -> dict[str, Any]:
        """How a worker is started: its stdout and stderr are pipes to us."""
        return {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}

    def add(self, slot: int, proc: subprocess.Popen[bytes]) -> None:
        base = {"w": slot, "pid": proc.pid}
        for stream, file in (("out", proc.stdout), ("err", proc.stderr)):
            if file is None:
                continue
            fd = file.fileno()
            os.set_blocking(fd, False)
            self.pipes[fd] = _Pipe(slot, StreamSplitter(stream, base), file)
            self.register(fd, True)

    def handle(self, ready: Any) -> None:
        """Read the pipes that the poll found readable (``ready``: fd -> events)."""
        for fd in [fd for fd, pipe in self.pipes.items() if pipe.polled and fd in ready]:
            self._read(fd, READ_SIZE)

    def remove(self, proc: subprocess.Popen[bytes]) -> None:
        """A worker ended: read what its pipes hold, then close them."""
        for file in (proc.stdout, proc.stderr):
            if file is None or file.closed:
                continue
            fd = file.fileno()
            if fd in self.pipes:
                self._read(fd, DRAIN_LIMIT)
                pipe = self.pipes.pop(fd)
                self._emit(pipe.slot, pipe.splitter.end(time.time()))
                if pipe.polled:
                    self.register(fd, False)
            file.close()

    def _read(self, fd: int, limit: int) -> None:
        pipe = self.pipes[fd]
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:  # its end: every writer is gone; ``remove`` closes it
                if pipe.polled:
                    pipe.polled = False
                    self.register(fd, False)
                break
            chunks.append(chunk)
            size += len(chunk)
        if chunks:
            self._emit(pipe.slot, pipe.splitter.feed(b"".join(chunks), time.time()))

    def _emit(self, slot: int, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        file = self.files.get(slot)
        if file is None:
            file = self.files[slot] = open(log_file(self.run_dir, slot), "ab")  # noqa: SIM115
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
        try:
            file.write(text.encode())
            file.flush()
        except OSError as exc:
            log.warning("supervisor: cannot write the log of worker %d: %s", slot, exc)
        if self.publish is not None:
            self.publish(entries)

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.file.close()
        self.pipes.clear()
        for file in self.files.values():
            file.close()
        self.files.clear()
