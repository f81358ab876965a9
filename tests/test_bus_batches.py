"""The bus's batches without processes: frames, numbering, gaps, a dropped batch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from actors import SerializationError
from runtime import net, wire
from runtime.net import BATCH_MAX, Gaps, Publisher, Subscription, check_topic, decode, encode


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


def no_wait(done: Callable[[], bool], deadline: float | None) -> None:
    """Nothing to wait for: the test delivers the frames by hand."""


def subscription(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> Subscription:
    """A subscription whose socket is never read: frames are handed to ``deliver``."""
    endpoint = f"ipc://{tmp_path}/bus"
    addresses = wire.Addresses(endpoint, endpoint, endpoint, str(tmp_path), "host")
    sub = Subscription(ctx, addresses, "t", None, no_wait, lambda s: s.sock.close())
    return sub


def framed(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, events: list[tuple]) -> list[bytes]:
    """The frames a ready publisher makes of ``events`` published in one turn."""
    publisher = Publisher(ctx, f"ipc://{tmp_path}/in", "p")
    try:
        for topic, obj in events:
            publisher.publish(topic, obj)
        publisher._frame()
        return publisher.held
    finally:
        publisher.close()


def test_a_turn_of_one_topic_is_one_frame_numbered_as_a_range(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    frames = framed(ctx, tmp_path, [("t.a", i) for i in range(10)])
    assert [decode(f) for f in frames] == [("t.a", b"p", 1, list(range(10)))]


def test_runs_of_topics_keep_the_publishers_order(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    events = [("t.a", 1), ("t.a", 2), ("t.b", {"x": 1}), ("t.a", 3)]
    got = [decode(f) for f in framed(ctx, tmp_path, events)]
    assert got == [("t.a", b"p", 1, [1, 2]), ("t.b", b"p", 1, [{"x": 1}]), ("t.a", b"p", 3, [3])]


def test_a_long_run_is_split_at_batch_max(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    n = 2 * BATCH_MAX + 5
    got = [decode(f) for f in framed(ctx, tmp_path, [("t", i) for i in range(n)])]
    assert [(first, len(events)) for _, _, first, events in got] == [
        (1, BATCH_MAX),
        (BATCH_MAX + 1, BATCH_MAX),
        (2 * BATCH_MAX + 1, 5),
    ]
    assert [x for *_, events in got for x in events] == list(range(n))


def test_an_event_that_cannot_be_pickled_raises_in_the_publishers_call(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    publisher = Publisher(ctx, f"ipc://{tmp_path}/in", "p")
    try:
        publisher.publish("t", 1)
        with pytest.raises(SerializationError, match="publish\\('t'\\)"):
            publisher.publish("t", (x for x in ()))  # a generator
        publisher._frame()
        [frame] = publisher.held
        assert decode(frame)[3][0] == 1  # what was published before it goes out
    finally:
        publisher.close()


def test_gaps_count_what_lies_between_two_batches() -> None:
    gaps = Gaps()
    assert gaps.see("t", b"p", 1, 3) == 0
    assert gaps.see("t", b"p", 4, 3) == 0
    assert gaps.see("t", b"q", 50, 1) == 0  # another publisher: numbered on its own
    assert gaps.see("t", b"p", 10, 2) == 3  # events 7-9 never came
    assert gaps.see("u", b"p", 1, 1) == 0


def test_a_dropped_batch_is_counted_and_logged(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscription(ctx, tmp_path)
    try:
        frames = [encode("t.x", b"p", first, list(range(first, first + 4))) for first in (1, 5, 9)]
        with caplog.at_level(logging.WARNING, logger="dovecote"):
            sub.deliver(frames[0])
            sub.deliver(frames[2])  # the batch of events 5-8 was dropped
        assert sub.missed == 4
        assert "missed 4 events on 't.x'" in caplog.text
        assert [sub.get(timeout=0)[1] for _ in range(8)] == [1, 2, 3, 4, 9, 10, 11, 12]
    finally:
        sub.close()


def test_a_frame_that_lies_about_its_count_is_dropped(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscription(ctx, tmp_path)
    try:
        frame = encode("t.x", b"p", 1, [1, 2])
        head = frame.index(b"\0") + 1
        lying = frame[:head] + net._bus._RANGE.pack(1, 3) + frame[head + net._bus._RANGE.size :]
        with caplog.at_level(logging.WARNING, logger="dovecote"):
            sub.deliver(lying)
        assert "dropped a malformed event" in caplog.text
        assert sub.missed == 0
        with pytest.raises(TimeoutError):
            sub.get(timeout=0)
    finally:
        sub.close()


def test_valid_topics_are_remembered_and_bad_ones_still_refused() -> None:
    assert check_topic("orders.new") == "orders.new"
    assert check_topic("orders.new") == "orders.new"
    assert "orders.new" in net._bus._valid_topics
    for bad in ("", "dovecote.x", "a\0b", 3):
        with pytest.raises(ValueError):
            check_topic(bad)
