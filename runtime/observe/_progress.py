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

_LOCK = threading.RLock()
_BARS: list[Bar] = []  # our own bars on the terminal now
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
    """A map's progress: ``update(done)`` with the items done so far, ``close()``."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self._bar: Any
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = Bar(total, stream)
            self._tqdm = False
        else:
            self._bar = tqdm(total=total, file=stream, unit="item", dynamic_ncols=True)
            self._tqdm = True

    def update(self, done: int) -> None:
        if self._tqdm:
            self._bar.update(done - self._bar.n)
        else:
            self._bar.update(done)

    def close(self) -> None:
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


@contextlib.contextmanager
def bars_paused(stream: TextIO) -> Iterator[None]:
    """Clear the bars while ``stream`` is written, then draw them again."""
    tqdm_module = sys.modules.get("tqdm")
    with contextlib.ExitStack() as stack:
        if tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None):
            stack.enter_context(tqdm_module.tqdm.external_write_mode(file=stream))
        with _LOCK:
            bars = list(_BARS)
            for bar in bars:
                bar.clear()
            yield
            for bar in bars:
                bar.draw()
