"""Worker output as entries, sans-IO: the markers a worker writes into its own
stdout/stderr, the supervisor's line splitter, the prefix the driver prints, and
the folding of repeated lines. No clock and no I/O: time is passed in.

A worker's streams are pipes read by the supervisor. Two kinds of marker line,
each starting with ``MARK``, travel in them beside the user's text:

* ``MARK tag [actor_id, class, name]`` (or ``null``): the lines that follow on
  this stream were written while that actor ran (the worker writes a tag only
  when the writer changes, so printing costs one comparison);
* ``MARK log {record}``: one Python ``LogRecord`` as JSON (see ``_capture``).

An entry (what the supervisor keeps in the worker's log file and publishes to
the driver) is a JSON object, for example::

    {"t": 1700000000.5, "w": 1, "pid": 4711, "s": "out",
     "a": [3, "Counter", "counter"], "text": "hello"}

with ``"s": "log"`` and ``"rec": {...}`` instead of ``"text"`` for a record.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = [
    "MARK",
    "MAX_LINE",
    "Folder",
    "Line",
    "StreamSplitter",
    "colour",
    "log_line",
    "prefix",
    "tag_line",
]

MARK = b"\x1edovecote:"  # ASCII record separator: never in text a user means to print
MAX_LINE = 64 * 1024  # a longer line (no newline in sight) is cut and sent in pieces
_TAG = MARK + b"tag "
_LOG = MARK + b"log "

Tag = list[Any] | None  # [actor_id, class, name], or None: the worker itself


def tag_line(tag: Tag) -> str:
    """The marker a worker writes before the lines of another writer."""
    return (_TAG + json.dumps(tag).encode() + b"\n").decode()


def log_line(record: dict[str, Any]) -> bytes:
    """The marker line that carries one log record."""
    return _LOG + json.dumps(record, default=repr, separators=(",", ":")).encode() + b"\n"


class StreamSplitter:
    """One stream of one worker: bytes in, entries out, the partial line kept.

    ``stream`` is ``"out"`` or ``"err"``; ``base`` is the fields every entry of
    this stream carries (worker slot, pid).
    """

    __slots__ = ("base", "partial", "stream", "tag")

    def __init__(self, stream: str, base: dict[str, Any]) -> None:
        self.stream = stream
        self.base = base
        self.partial = b""
        self.tag: Tag = None

    def feed(self, data: bytes, now: float) -> list[dict[str, Any]]:
        """The entries of the complete lines in ``partial + data``."""
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        out: list[dict[str, Any]] = []
        for line in lines:
            self._line(line, now, out)
        return out

    def end(self, now: float) -> list[dict[str, Any]]:
        """The stream closed: what is left is a last line without its newline."""
        out: list[dict[str, Any]] = []
        if self.partial:
            self._line(self.partial, now, out)
            self.partial = b""
        return out

    def _line(self, line: bytes, now: float, out: list[dict[str, Any]]) -> None:
        cut = line.find(MARK, 1)
        if cut > 0:  # a marker after a partial line of text: two lines
            self._line(line[:cut], now, out)
            self._line(line[cut:], now, out)
        elif line.startswith(_TAG):
            self.tag = _parse_tag(line[len(_TAG) :])
        elif line.startswith(_LOG):
            record = _parse_json(line[len(_LOG) :])
            if isinstance(record, dict):
                tag = record.pop("dovecote_actor", self.tag)
                out.append({"t": now, **self.base, "s": "log", "a": tag, "rec": record})
        else:
            text = line.decode("utf-8", "replace").removesuffix("\r")
            out.append({"t": now, **self.base, "s": self.stream, "a": self.tag, "text": text})


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _parse_tag(raw: bytes) -> Tag:
    tag = _parse_json(raw)
    if isinstance(tag, list) and len(tag) == 3:
        return tag
    return None


def prefix(entry: dict[str, Any]) -> str:
    """``(Counter name=counter w1 pid=4711)``: who wrote the entry."""
    parts = []
    tag = entry.get("a")
    if isinstance(tag, list) and len(tag) == 3:
        parts.append(str(tag[1]))
        if tag[2] is not None:
            parts.append(f"name={tag[2]}")
    parts.append(f"w{entry.get('w')}")
    parts.append(f"pid={entry.get('pid')}")
    return f"({' '.join(parts)})"


_PALETTE = (36, 32, 33, 34, 35, 96, 92, 93)  # ANSI foreground colours, one per worker


def colour(text: str, slot: object) -> str:
    """``text`` in the colour of worker ``slot``, for a terminal."""
    code = _PALETTE[slot % len(_PALETTE)] if isinstance(slot, int) else 36
    return f"\x1b[{code}m{text}\x1b[0m"


class Line(NamedTuple):
    """One line for the driver to print: ``prefix text`` on ``stream``."""

    stream: str
    slot: object
    prefix: str
    text: str


class _Fold:
    __slots__ = ("count", "line", "since")

    def __init__(self, line: Line, since: float) -> None:
        self.line = line
        self.since = since
        self.count = 0


class Folder:
    """Repeats folded, as Ray does: the first occurrence of a line is printed at
    once; the same text again (from any worker, on the same stream) within
    ``window`` seconds is only counted, and once the window ends one line says
    ``text [repeated 12x]``. A window of 0 folds nothing."""

    MAX_KEYS = 10_000  # texts remembered at once; the oldest is let go first

    def __init__(self, window: float) -> None:
        self.window = window
        self._folds: dict[tuple[str, str], _Fold] = {}

    def feed(self, line: Line, now: float) -> list[Line]:
        """What to print now for ``line``."""
        if self.window <= 0:
            return [line]
        out = self.due(now)
        key = (line.stream, line.text)
        fold = self._folds.get(key)
        if fold is not None:
            fold.count += 1
            return out
        if len(self._folds) >= self.MAX_KEYS:
            oldest = next(iter(self._folds))
            out.extend(_summary(self._folds.pop(oldest)))
        self._folds[key] = _Fold(line, now)
        out.append(line)
        return out

    def due(self, now: float) -> list[Line]:
        """The summaries of the windows that have ended by ``now``."""
        out: list[Line] = []
        for key, fold in list(self._folds.items()):
            if now - fold.since >= self.window:
                del self._folds[key]
                out.extend(_summary(fold))
        return out

    def next_due(self) -> float | None:
        """When the oldest window ends, if any is open."""
        return min((f.since + self.window for f in self._folds.values()), default=None)

    def flush(self) -> list[Line]:
        """Every pending summary, now (at the end)."""
        folds, self._folds = self._folds, {}
        return [line for fold in folds.values() for line in _summary(fold)]


def _summary(fold: _Fold) -> list[Line]:
    if not fold.count:
        return []
    line = fold.line
    return [line._replace(text=f"{line.text} [repeated {fold.count}x]")]
