"""Progress bars for maps, and how forwarded output gets past them.

A bar is ``tqdm`` when it is installed (the ``progress`` extra), else a small
bar of our own; either shows the count, the rate and, with a known total, the
ETA, and ends its line when the map ends. While the driver prints forwarded
lines, the bars on the terminal are cleared, the lines written, and the bars
redrawn (``bars_paused``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["Bar", "Progress", "bars_paused", "progress_for"]

Report = Callable[[int, "int | None"], None]

_LOCK = threading.RLock()  # bars drawn, updated and closed, and lines printed: one at a time
_BARS: list[Bar | Progress] = []  # our bars on the terminal now
_WIDTH = 30


class Bar:
    """The bar of our own, for when tqdm is not installed. Internal."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.started = time.monotonic()
        self.done = 0
        with _LOCK:
            _BARS.append(self)

    def text(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if not self.total:
            return f"{self.done} done [{elapsed:.0f}s, {rate:.1f}/s]"
        filled = _WIDTH * min(self.done, self.total) // self.total
        left = (self.total - self.done) / rate if rate else 0.0
        return (
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done}/{self.total} "
            f"[{elapsed:.0f}s<{left:.0f}s, {rate:.1f}/s]"
        )

    def update(self, done: int) -> None:
        with _LOCK:
            self.done = done
            self.draw()

    def draw(self) -> None:
        self.stream.write(f"\r{self.text(time.monotonic())}\x1b[K")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")

    def close(self) -> None:
        with _LOCK:
            if self in _BARS:
                _BARS.remove(self)
                self.draw()
                self.stream.write("\n")
                self.stream.flush()


class Progress:
    """A map's progress: ``update(done)`` with the items done so far, ``close()``.
    A tqdm bar, under our lock: a line printed meanwhile never lands on it."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self._bar: Any
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = Bar(total, stream)
            self._tqdm = False
        else:
            with _LOCK:
                self._bar = tqdm(total=total, file=stream, unit="item", dynamic_ncols=True)
                _BARS.append(self)
            self._tqdm = True

    def update(self, done: int) -> None:
        if not self._tqdm:
            self._bar.update(done)
            return
        with _LOCK:
            self._bar.update(done - self._bar.n)

    def clear(self) -> None:
        self._bar.clear()
        self._bar.fp.flush()  # tqdm leaves the end of its clearing in the buffer

    def draw(self) -> None:
        self._bar.refresh()

    def close(self) -> None:
        if not self._tqdm:
            self._bar.close()
            return
        with _LOCK:
            if self in _BARS:
                _BARS.remove(self)
                self._bar.close()


class _Callback:
    def __init__(self, report: Report, total: int | None) -> None:
        self.report = report
        self.total = total

    def update(self, done: int) -> None:
        self.report(done, self.total)

    def close(self) -> None:
        pass


class _Silent:
    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_for(progress: bool | Report, total: int | None) -> Progress | _Callback | _Silent:
    """What a map reports its progress to: the user's ``callback(done, total)``,
    a bar on stderr when it is a terminal, or nothing."""
    if callable(progress):
        return _Callback(progress, total)
    if progress and sys.stderr.isatty():
        return Progress(total, sys.stderr)
    return _Silent()


def _flush_terminal() -> None:
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


@contextlib.contextmanager
def bars_paused(stream: TextIO) -> Iterator[None]:
    """Clear the bars while ``stream`` is written, then draw them again."""
    tqdm_class: Any = getattr(sys.modules.get("tqdm"), "tqdm", None)
    with _LOCK, contextlib.ExitStack() as stack:
        bars = list(_BARS)
        others = getattr(tqdm_class, "_instances", None) or ()
        ours = sum(isinstance(bar, Progress) for bar in bars)
        if len(others) > ours:  # the program's own tqdm bars: tqdm's way
            stack.enter_context(tqdm_class.external_write_mode(file=stream))
            _flush_terminal()  # tqdm leaves the end of its clearing in a buffer
        for bar in bars:
            bar.clear()
        yield
        for bar in bars:
            bar.draw()
