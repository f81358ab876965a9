"""A whole batch run from its entries (worker/_batch.py): the same outcomes, in the
same order, as message by message. Each batch is built and sent by hand on a
DEALER of the test's own, so that its entries surely arrive as one message."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors import Actor, ActorRef, ActorStoppedError, SerializationError
from runtime import ActorSystem
from runtime import net as _sockets
from runtime import wire as proto
from tests.helpers import hold_task, wait_for_path


class Journal(Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def note(self, x: Any) -> Any:
        self.seen.append(x)
        return x

    async def note_later(self, x: Any) -> Any:
        await asyncio.sleep(0)
        self.seen.append(x)
        return x

    def boom(self, x: Any) -> Any:
        self.seen.append(x)
        raise ValueError(f"boom {x}")

    def lock(self, _: Any = None) -> Any:
        return threading.Lock()

    def quit(self, _: Any = None) -> str:
        self.ref.stop()
        return "bye"

    def log(self) -> list[Any]:
        return self.seen

    def hold(self, paths: tuple[str, str]) -> str:
        self.seen.append("held")
        hold_task(*paths)
        return "held"


@pytest.fixture
def dealer(system: ActorSystem) -> Iterator[zmq.Socket[bytes]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(_sockets.worker_endpoint(system._run_dir, 0))
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def _send(sock: zmq.Socket[bytes], ref: ActorRef, calls: list[tuple[int, str, Any]]) -> None:
    """One batch: (kind, method, argument); a call's msg id is its index + 1."""
    entries = [
        (kind, i + 1 if kind == proto.CALL else 0, ref.actor_id, method, (arg,), 0)
        for i, (kind, method, arg) in enumerate(calls)
    ]
    sock.send_multipart(proto.encode_batch(entries, []))


def _replies(sock: zmq.Socket[bytes], count: int) -> dict[int, Any]:
    """msg id -> the value, the exception's type, or a cancel's verdict."""
    got: dict[int, Any] = {}
    while len(got) < count:
        assert sock.poll(10_000), f"only {sorted(got)} were answered"
        _, body, _, _ = proto.unpack(sock.recv_multipart())
        for kind, msg_id, _, _, payload, nbufs in proto.decode_body(body):
            assert nbufs == 0
            if kind == proto.OK:
                got[msg_id] = proto.load_reply(payload, ())
            elif kind == proto.ERR:
                got[msg_id] = type(proto.decode_error(payload))
            else:
                got[msg_id] = "cancelled" if kind == proto.CANCELLED else "started"
    return got


def test_a_batch_runs_in_order_across_both_ways(
    system: ActorSystem, dealer: zmq.Socket[bytes]
) -> None:
    journal = system.spawn(Journal, worker=0)
    C, T = proto.CALL, proto.TELL
    # the first note() of the actor goes the usual way (its method is looked up),
    # the next ones from the batch; an async method and an error sit in between
    _send(
        dealer,
        journal,
        [
            *[(C, "note", 1), (T, "note", 2), (C, "note_later", 3), (C, "note", 4)],
            *[(C, "boom", 5), (C, "note", 6), (T, "boom", 7), (C, "note", 8)],
        ],
    )
    got = _replies(dealer, 6)
    assert got == {1: 1, 3: 3, 4: 4, 5: ValueError, 6: 6, 8: 8}
    assert journal.log().result(timeout=10) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_reply_that_does_not_pickle_fails_alone(
    system: ActorSystem, dealer: zmq.Socket[bytes]
) -> None:
    journal = system.spawn(Journal, worker=0)
    assert journal.lock().exception(timeout=10) is not None  # the method is known now
    C = proto.CALL
    _send(dealer, journal, [(C, "note", 1), (C, "lock", None), (C, "note", 2)])
    assert _replies(dealer, 3) == {1: 1, 2: SerializationError, 3: 2}


def test_a_stop_inside_a_batch_fails_what_follows_it(
    system: ActorSystem, dealer: zmq.Socket[bytes]
) -> None:
    journal = system.spawn(Journal, worker=0)
    assert journal.note(0).result(timeout=10) == 0
    C = proto.CALL
    _send(dealer, journal, [(C, "note", 1), (C, "quit", None), (C, "note", 2)])
    assert _replies(dealer, 3) == {1: 1, 2: "bye", 3: ActorStoppedError}


def test_a_batch_for_an_actor_not_there_is_answered(
    system: ActorSystem, dealer: zmq.Socket[bytes]
) -> None:
    journal = system.spawn(Journal, worker=0)
    assert journal.note(0).result(timeout=10) == 0
    ghost = ActorRef(journal.system_id, journal.actor_id + 1000, 0, "ghost")
    C = proto.CALL
    _send(dealer, ghost, [(C, "note", 1), (C, "note", 2)])
    assert _replies(dealer, 2) == {1: ActorStoppedError, 2: ActorStoppedError}
    assert journal.note(3).result(timeout=10) == 3  # and it serves on


def test_a_call_behind_a_long_one_in_its_batch_can_be_cancelled(
    tmp_path: Path, system: ActorSystem, dealer: zmq.Socket[bytes]
) -> None:
    journal = system.spawn(Journal, worker=0)
    assert journal.note(0).result(timeout=10) == 0
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    C = proto.CALL
    _send(dealer, journal, [(C, "hold", (started, release)), (C, "note", 1), (C, "note", 2)])
    wait_for_path(started)  # the first runs; the other two wait in the batch
    cancel = (proto.CANCEL, 2, journal.actor_id, "", b"", 0)
    dealer.send_multipart(proto.encode_batch([cancel], []))
    assert _replies(dealer, 1) == {2: "cancelled"}  # answered while the first still runs
    Path(release).touch()
    assert _replies(dealer, 2) == {1: "held", 3: 2}
    assert journal.log().result(timeout=10) == [0, "held", 2]
