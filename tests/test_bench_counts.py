"""The bench's counts metric: what a thread runs, counted the same on any machine."""

from __future__ import annotations

from bench._actors import Tally


def _leaf(x: int) -> int:
    return x + 1


def _branch(x: int) -> int:
    return _leaf(x) + _leaf(x)


def test_a_tally_counts_the_python_calls_and_bytecodes_of_its_thread() -> None:
    with Tally() as empty:  # what counting costs itself: the tally's own exit
        pass
    with Tally() as one:
        _branch(1)
    with Tally() as two:
        _branch(1)
        _branch(2)
    assert one.calls - empty.calls == 3  # _branch and its two _leaf; builtins are not counted
    assert two.calls - empty.calls == 6
    per_branch = one.bytecodes - empty.bytecodes
    assert per_branch > 0 and two.bytecodes - empty.bytecodes == 2 * per_branch
