"""A worker's side of output forwarding: its ``sys.stdout`` and ``sys.stderr``
line-buffered and tagged with the actor that writes, and its Python logging
sent as JSON records on stderr. The supervisor reads both pipes (``_pipes``).

Line buffering is what keeps output written just before a SIGKILL: each line
is in the pipe once ``print`` returns, and the supervisor reads the pipe after
the worker's death. Output from C code and ``os.write(1, ...)`` reaches the same
pipes untagged: it is attributed to the last writer the stream was tagged with.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from runtime.observe._lines import Tag, log_line, tag_line

__all__ = ["JsonLogHandler", "TaggedStream", "apply_levels", "capture_output", "record_dict"]

Current = Callable[[], Tag]  # the writer now: [actor_id, class, name], or None


class TaggedStream(io.TextIOBase):
    """A text stream that writes a tag marker before text from another writer.
    Internal: it stands in for ``sys.stdout``/``sys.stderr`` in a worker."""

    def __init__(self, inner: TextIO, current: Current) -> None:
        super().__init__()
        self.inner = inner
        self.current = current
        self.last: Tag = None
        self.lock = threading.Lock()  # a tag and its text stay together

    def write(self, text: str) -> int:
        tag = self.current()
        with self.lock:
            if tag != self.last:
                self.last = tag
                self.inner.write(tag_line(tag))
            return self.inner.write(text)

    def write_marker(self, line: str) -> None:
        """A whole marker line, written at once."""
        with self.lock:
            self.inner.write(line)
            self.inner.flush()

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.inner.errors

    @property
    def buffer(self) -> Any:
        return self.inner.buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def record_dict(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """A record as JSON-ready fields: the message formatted, the traceback as text,
    the caller's ``extra`` fields kept (``repr`` of what JSON cannot hold)."""
    data = {k: v for k, v in record.__dict__.items() if k not in ("args", "exc_info", "msg")}
    data["msg"] = record.getMessage()
    data["args"] = None
    if record.exc_info and not record.exc_text:
        data["exc_text"] = formatter.formatException(record.exc_info)
    data["dovecote_extra"] = sorted(k for k in data if k not in _STANDARD)
    return data


class JsonLogHandler(logging.Handler):
    """Sends each record as a JSON marker line on the worker's stderr, tagged
    with the actor that logged it."""

    def __init__(self, stream: TaggedStream, current: Current) -> None:
        super().__init__()
        self.stream = stream
        self.current = current
        self.plain = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = record_dict(record, self.plain)
            data["dovecote_actor"] = self.current()
            self.stream.write_marker(log_line(data).decode())
        except Exception:
            self.handleError(record)


def apply_levels(levels: dict[str, int], runtime_level: str) -> None:
    """The driver's logger levels in this process; the runtime's own logger at
    ``runtime_level`` (the ``log_level`` option)."""
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    logging.getLogger("dovecote").setLevel(runtime_level)


def capture_output(current: Current, levels: dict[str, int], runtime_level: str) -> None:
    """Make this worker's output forwardable: streams tagged and line-buffered,
    logging as JSON records. Called once, first thing in the worker."""
    streams = []
    for name in ("stdout", "stderr"):
        inner = getattr(sys, name)
        if isinstance(inner, io.TextIOWrapper):
            inner.reconfigure(line_buffering=True)
        stream = TaggedStream(inner, current)
        setattr(sys, name, stream)
        streams.append(stream)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JsonLogHandler(streams[1], current))
    apply_levels(levels, runtime_level)
