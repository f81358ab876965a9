"""Progress of maps: callbacks for map and imap_unordered, our own bar's text, and
on a terminal tqdm's bar cleared and redrawn around forwarded lines."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator

import pytest

from runtime import ActorSystem, observe
from tests.terminal import run_on_a_terminal


def _double(x: int) -> int:
    return 2 * x


def _numbers(n: int) -> Iterator[int]:
    yield from range(n)  # no length


@pytest.mark.parametrize("ordered", [True, False])
def test_progress_callbacks_count_to_the_end(system: ActorSystem, ordered: bool) -> None:
    seen: list[tuple[int, int | None]] = []
    mapper = system.map if ordered else system.imap_unordered
    results = list(mapper(_double, range(10), 3, progress=lambda d, t: seen.append((d, t))))
    assert sorted(results) == [2 * x for x in range(10)]
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (10, 10) and {t for _, t in seen} == {10}
    seen.clear()
    assert (
        len(list(mapper(_double, _numbers(7), 2, progress=lambda d, t: seen.append((d, t))))) == 7
    )
    assert seen[-1] == (7, None)  # an input without a length


def test_no_bar_when_stderr_is_not_a_terminal(
    system: ActorSystem, capfd: pytest.CaptureFixture[str]
) -> None:
    assert list(system.map(_double, range(4), progress=True)) == [0, 2, 4, 6]
    assert capfd.readouterr().err == ""


def test_our_own_bar_shows_count_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = observe.Bar(100, stream)
    bar.started -= 10.0  # as if it had run ten seconds
    bar.update(25)
    assert re.search(r"\[#{7}\.{23}\] 25/100 \[10s<30s, 2\.5/s\]", bar.text(time.monotonic()))
    endless = observe.Bar(None, io.StringIO())
    endless.done = 5
    assert endless.text(endless.started + 2.0).startswith("5 done [2s, 2.5/s]")
    bar.close()
    endless.close()
    assert stream.getvalue().endswith("\n")  # it ends its line


def test_our_bar_is_cleared_and_redrawn_around_printed_lines() -> None:
    terminal = io.StringIO()
    bar = observe.Bar(10, terminal)
    bar.update(3)
    with observe.bars_paused(terminal):
        terminal.write("a line\n")
    bar.close()
    shown = terminal.getvalue()
    assert "\r\x1b[Ka line\n\r" in shown  # cleared, written, then the bar again
    assert shown.count("3/10") == 3  # drawn, redrawn after the line, and at close


_SCRIPT = """
from runtime import ActorSystem

def noisy(x):
    print(f"item-{x}")
    return x

with ActorSystem(workers=2) as system:
    assert sorted(system.imap_unordered(noisy, range(40), 1, progress=True)) == list(range(40))
print("after the map")  # once the system is down: no forwarded line can land in it
"""


def _on_a_terminal(deadline: float) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["DOVECOTE_FOLD_REPEATS"] = "0"
    # A new pty is 0x0, and tqdm fits its bar to the width: give it a real one.
    return run_on_a_terminal(_SCRIPT, env, deadline, size=(24, 120))


def test_forwarded_lines_and_a_tqdm_bar_share_the_terminal() -> None:
    shown = _on_a_terminal(time.monotonic() + 50)
    assert re.search(r"100%\|.*\| 40/40 \[", shown), shown[-500:]  # tqdm: rate and time
    pieces = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;]*m", "", shown))
    printed = [p for p in pieces if "item-" in p]
    assert len(printed) >= 40
    assert all(p.startswith("(task w") for p in printed), printed  # never glued to the bar
    assert {int(p.rsplit("-", 1)[1]) for p in printed} == set(range(40))
    assert "after the map" in shown
